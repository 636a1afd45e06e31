"""A standard fuzzer against a real server finds nothing: the API description is exact.

Schemathesis (its CLI, as anyone would run it) reads the server's `/openapi.json` and runs
every check through all its phases: examples (the description has none, so it is skipped),
coverage (boundaries and every kind of wrong value), fuzzing, and stateful (chains of calls
along the description's `links`: a purchase or an order to the sandbox provider's confirmation
and the payment, a new session to its routes, a product to its pin and checkout).
It runs twice, as a user and as a creator, each with a fixed seed and a bounded number of
examples, writing a JUnit report; both runs must exit 0 with no failure and no error.

tests/schemathesis.toml holds what the fuzzer cannot know: the sign-out operations are left
out (they would revoke the run's own token; tests/test_runtime_auth.py covers them), the
webhook refuses every unsigned body, and which refusals depend on the server's state. It turns
every check on, as `--checks all` would, for every operation it runs. The user's run gifts
into a live session of another creator and checks out that creator's product
(CREATOR_ECON_FUZZ_SESSION, CREATOR_ECON_FUZZ_PRODUCT), with coins bought first.

What the server accepts depends on its policy (coin packs, qualities, the largest gift, price
and quantity), so the description it serves is filled in from the policy it runs; under the
shipped policy that is live_runtime/server/openapi.json byte for byte.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import schemathesis as st
from runtime_server import SHIPPED_POLICY, Api, RuntimeProcess
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from live_runtime.policy import Quality, load_policy
from live_runtime.server.service_routes import OPENAPI, described, served

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")  # the CLI beside this Python
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20_261_202
# Test cases per operation and phase: the two runs take about 40 s together on two busy cores.
MAX_EXAMPLES = 25
RUN_TIMEOUT = 300  # seconds; a hung run fails the test instead of hanging the suite
PHASES = ("examples", "coverage", "fuzzing", "stateful")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("schemathesis")).start()
    yield runtime
    runtime.stop()
    log = runtime.log_text()
    assert "Traceback" not in log and "request failed" not in log, log[-4000:]


@pytest.fixture(scope="module")
def resources(server: RuntimeProcess) -> dict[str, str]:
    """Another creator's live session and product, for the user's gifts and checkouts."""
    api = Api(server.url)
    other = api.account("creator")
    live = api.call("POST", "/v1/sessions", other, json={})
    assert live.status_code == 201, live.text
    product = api.call("POST", "/v1/products", other, json={"name": "poster", "price_minor": 500})
    assert product.status_code == 201, product.text
    api.http.close()
    return {
        "CREATOR_ECON_FUZZ_SESSION": live.json()["session_id"],
        "CREATOR_ECON_FUZZ_PRODUCT": product.json()["product_id"],
    }


def schemathesis(server: RuntimeProcess, token: str, env: dict[str, str], out: Path):
    """The CLI's run against the server with `token`; its output, and its JUnit report."""
    report = out / "junit.xml"
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
        "--phases", ",".join(PHASES), "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
        "--generation-database", "none",  # no examples replayed from an earlier run
        "-H", f"Authorization: Bearer {token}", "--no-color",
        "--report", "junit", "--report-junit-path", str(report),
    ]  # fmt: skip
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=out, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=RUN_TIMEOUT,
    )  # fmt: skip
    output = f"{run.stdout}\n{run.stderr}\n({time.monotonic() - started:.1f} s)"
    return run.returncode, output, report


@pytest.mark.parametrize("kind", ["user", "creator"])
def test_schemathesis_finds_no_failure(
    server: RuntimeProcess, resources: dict[str, str], kind: str, tmp_path: Path
):
    api = Api(server.url)
    who = api.account(kind)
    if kind == "user":  # coins to give, so gifts reach the ledger (and some exceed them: 402)
        for _ in range(2):
            api.buy(who, 17_500)
    api.http.close()
    code, output, report = schemathesis(server, who["token"], resources, tmp_path)
    print(output)  # shown by pytest when the test fails
    assert code == 0, f"schemathesis exited with {code}:\n{output}"
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    assert summary and summary[1] == summary[2] and int(summary[1]) > 0, output
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # examples: none in the description
        assert re.search(rf"✅\s+{phase}", output), f"{phase} did not pass:\n{output}"
    suites = ET.parse(report).getroot()
    cases = suites.iter("testcase")
    assert sum(1 for _ in cases) >= 20, output  # one per operation tested
    totals = {k: int(suites.get(k, 0)) for k in ("failures", "errors")}
    assert totals == {"failures": 0, "errors": 0}, output


def test_the_config_runs_every_check(monkeypatch: pytest.MonkeyPatch):
    """As `--checks all`: no check is off for any operation."""
    monkeypatch.setenv("CREATOR_ECON_FUZZ_SESSION", "s_any")
    monkeypatch.setenv("CREATOR_ECON_FUZZ_PRODUCT", "p_any")
    load_all_checks()
    checks = set(CHECKS.get_all_names())
    assert {"positive_data_acceptance", "negative_data_rejection", "use_after_free"} <= checks
    schema = st.openapi.from_path(OPENAPI, config=SchemathesisConfig.from_path(CONFIG))
    off, tested = set(), set()
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.add(operation.label)
        for phase in PHASES:
            config = schema.config.checks_config_for(operation=operation, phase=phase)
            off |= {(operation.label, n) for n in checks if not config.get_by_name(name=n).enabled}
    assert off == set()
    assert "DELETE /v1/tokens/current" not in tested and "POST /v1/tokens/revoke-all" not in tested
    assert len(tested) == sum(len(ops) for ops in described(load_policy())["paths"].values()) - 2


# The served description follows the running policy -----------------------------------------


def request_field(spec: dict, schema: str, name: str) -> dict:
    return spec["components"]["schemas"][schema]["properties"][name]


def test_the_description_on_disk_is_the_one_served_under_the_shipped_policy():
    """tests/test_runtime_api.py checks answers against the file: it must be what is served."""
    assert served(load_policy()) == OPENAPI.read_bytes()
    shipped = tomllib.loads(SHIPPED_POLICY.read_text())
    spec = described(load_policy())
    packs = sorted(p["coins"] for p in shipped["coin_packs"])
    assert request_field(spec, "PurchaseRequest", "coins")["enum"] == packs
    qualities = list(shipped["metering"]["qualities"])
    assert request_field(spec, "SessionRequest", "quality")["enum"] == qualities
    assert request_field(spec, "GiftRequest", "coins")["maximum"] == shipped["max_gift_coins"]
    commerce = shipped["commerce"]
    price = request_field(spec, "ProductRequest", "price_minor")
    assert price["maximum"] == commerce["max_price_minor"]
    assert request_field(spec, "OrderRequest", "quantity")["maximum"] == commerce["max_quantity"]


def test_the_served_description_follows_the_running_policy(tmp_path: Path):
    """A server running another policy serves that policy's packs, qualities and maxima."""
    text = SHIPPED_POLICY.read_text()
    packs = text[text.index("coin_packs = [") : text.index("]\n", text.index("coin_packs = ["))]
    for shipped, other in [
        (packs, "coin_packs = [\n  { coins = 100, price_minor = 150 },\n"),
        ("max_gift_coins = 1_000_000", "max_gift_coins = 5_000"),
        ("max_price_minor = 1_000_000", "max_price_minor = 20_000"),
        ("max_quantity = 100", "max_quantity = 7"),
        ('"720p" = { bitrate_bps = 2_500_000, renditions = 3 }\n', ""),
    ]:
        assert text.count(shipped) == 1, f"the shipped policy changed: {shipped!r}"
        text = text.replace(shipped, other)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text)
    runtime = RuntimeProcess(tmp_path / "runtime", ["--policy", str(policy_file)]).start()
    try:
        api = Api(runtime.url)
        spec = api.http.get("/openapi.json").json()
        user, creator = api.account("user"), api.account("creator")
        unknown_quality = api.call("POST", "/v1/sessions", creator, json={"quality": "720p"})
        product = api.call("POST", "/v1/products", creator, json={"name": "x", "price_minor": 100})
        order = {"product_id": product.json()["product_id"], "quantity": 8}
        too_many = api.call("POST", "/v1/orders", user, "k", json=order)
        api.http.close()
    finally:
        runtime.stop()
    assert request_field(spec, "PurchaseRequest", "coins")["enum"] == [100]
    quality = request_field(spec, "SessionRequest", "quality")
    assert quality["enum"] == ["480p", "1080p"] and "default" not in quality  # 720p is gone
    assert unknown_quality.status_code == 422  # as described: 720p is not in the enum
    assert request_field(spec, "GiftRequest", "coins")["maximum"] == 5_000
    assert request_field(spec, "ProductRequest", "price_minor")["maximum"] == 20_000
    assert request_field(spec, "OrderRequest", "quantity")["maximum"] == 7
    assert (too_many.status_code, too_many.json()["error"]) == (422, "out_of_range")  # 8 > 7
    # Everything else is the file's.
    expected = described(
        replace(
            load_policy(),
            coin_packs={100: 150},
            max_gift_coins=5_000,
            max_price_minor=20_000,
            max_quantity=7,
            qualities={
                "480p": Quality(bitrate_bps=1_000_000, renditions=2),
                "1080p": Quality(bitrate_bps=4_500_000, renditions=4),
            },
        )
    )
    assert spec == expected


# Numbers: JSON has one number type ------------------------------------------------------------


def test_integral_numbers_are_integers(server: RuntimeProcess):
    """`70.0` is the integer 70, in a body or a query (JSON Schema says so, and the fuzzer
    sends them); `70.5`, or an integral number past a field's range, is refused."""
    api = Api(server.url)
    user, creator = api.account("user"), api.account("creator")
    pending = api.call(
        "POST", "/v1/wallet/purchases", user, "float", json={"coins": 70.0, "channel": "web"}
    )
    assert pending.status_code == 202 and pending.json()["coins"] == 70, pending.text
    product = api.call("POST", "/v1/products", creator, json={"name": "x", "price_minor": 5584.0})
    assert product.status_code == 201 and product.json()["price_minor"] == 5584, product.text
    token = api.call("POST", "/v1/tokens", user, json={"ttl_seconds": 16777216.0})
    assert token.status_code == 201, token.text
    page = api.call("GET", f"/v1/creators/{creator['id']}/products?limit=5.0", user)
    assert page.status_code == 200 and len(page.json()["products"]) == 1, page.text
    refused = [
        ("POST", "/v1/products", {"name": "x", "price_minor": 99.5}, "invalid_field"),
        ("POST", "/v1/products", {"name": "x", "price_minor": 1e300}, "out_of_range"),
        ("POST", "/v1/tokens", {"ttl_seconds": -0.0}, "out_of_range"),
    ]
    for method, path, body, code in refused:
        answer = api.call(method, path, creator, json=body)
        assert (answer.status_code, answer.json()["error"]) == (422, code), (body, answer.text)
    for limit in ("5.5", "1e400", "²", "٣", "+5", "0x5"):  # "²".isdigit(), but int("²") fails
        answer = api.call("GET", f"/v1/creators/{creator['id']}/products", user,
                          params={"limit": limit})  # fmt: skip
        assert (answer.status_code, answer.json()["error"]) == (422, "out_of_range"), limit
    api.http.close()
