"""The live WebSocket against one real server, and the media metering it drives.

The server runs with a one-second metering interval, so a session a few seconds long is
reported in several `media_usage` intervals whose usage can be checked against what the
test did: when hosts came and went, and how long a viewer watched.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from runtime_server import Api, RuntimeProcess
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from live_runtime.policy import DEFAULT_POLICY, Policy, load_policy
from telemetry.events import TIME_FORMAT
from telemetry.files import list_sealed

SPEC = json.loads(
    (Path(__file__).parents[1] / "live_runtime" / "server" / "openapi.json").read_text()
)
SPEC_URI = "urn:creator-econ:runtime-openapi"
LIVE_MESSAGE = Draft202012Validator(
    {"$ref": f"{SPEC_URI}#{quote('/components/schemas/LiveMessage')}"},
    registry=Registry().with_resource(
        SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
    ),
)
LIVE = "/v1/sessions/{}/live"
TIMING = 0.25  # seconds of slack between the event loop's clock and the ledger's


# Fixtures --------------------------------------------------------------------------------


def fast_metering_policy(root: Path) -> Path:
    """The shipped policy with a one-second metering interval."""
    text, count = re.subn(
        r"(?m)^interval_seconds = .*$", "interval_seconds = 1", DEFAULT_POLICY.read_text()
    )
    assert count == 1
    path = root / "policy.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    root = tmp_path_factory.mktemp("live")
    runtime = RuntimeProcess(root, ["--policy", str(fast_metering_policy(root))]).start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def policy(server: RuntimeProcess) -> Policy:
    return load_policy(server.root / "policy.toml")


@pytest.fixture(scope="module")
def api(server: RuntimeProcess) -> Api:
    return Api(server.url)


@pytest.fixture(scope="module")
def viewers() -> Counter:
    """(event type, session, user) of every viewer event the tests should leave."""
    return Counter()


# A viewer ----------------------------------------------------------------------------------


@contextmanager
def watch(
    server: RuntimeProcess, session_id: str, who: dict, seen: Counter
) -> Iterator[ClientConnection]:
    """A viewer's socket, remembered as one viewer_joined and one viewer_left."""
    url = server.url.replace("http://", "ws://") + LIVE.format(session_id)
    headers = {"Authorization": f"Bearer {who['token']}"}
    with connect(url, additional_headers=headers, open_timeout=5) as socket:
        seen[("viewer_joined", session_id, who["id"])] += 1
        seen[("viewer_left", session_id, who["id"])] += 1
        yield socket


def receive(socket: ClientConnection, skip: tuple[str, ...] = ("viewers",)) -> dict[str, Any]:
    """The next message not of a skipped type, checked against the documented `LiveMessage`."""
    while True:
        message = json.loads(socket.recv(timeout=5))
        errors = [e.message for e in LIVE_MESSAGE.iter_errors(message)]
        assert not errors, (message, errors)
        if message["type"] not in skip:
            return message


def refused(server: RuntimeProcess, session_id: str, headers: dict[str, str]) -> int:
    """The HTTP status of a refused handshake."""
    url = server.url.replace("http://", "ws://") + LIVE.format(session_id)
    with pytest.raises(InvalidStatus) as refusal:
        connect(url, additional_headers=headers, open_timeout=5).close()
    return refusal.value.response.status_code


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def start(api: Api, owner: dict, **settings: Any) -> str:
    return ok(api.call("POST", "/v1/sessions", owner, json=settings), 201)["session_id"]


def host(api: Api, owner: dict, guest: dict, session_id: str, action: str) -> dict:
    """Invites the guest if needed, then has them join or leave."""
    path = f"/v1/sessions/{session_id}"
    if action == "join":
        ok(api.call("POST", f"{path}/cohosts", owner, json={"creator_id": guest["id"]}), 201)
    return ok(api.call("POST", f"{path}/{action}", guest))


# Messages ----------------------------------------------------------------------------------


def test_a_viewer_gets_the_state_then_viewer_counts(
    server: RuntimeProcess, api: Api, viewers: Counter
):
    owner, first, second = api.account("creator"), api.account("user"), api.account("user")
    session = start(api, owner, quality="480p")
    with watch(server, session, first, viewers) as one:
        state = receive(one, skip=())
        assert state["type"] == "state" and state["session_id"] == session
        assert (state["status"], state["owner_id"], state["viewers"]) == ("live", owner["id"], 1)
        assert receive(one, skip=()) == {"type": "viewers", "count": 1}
        with watch(server, session, second, viewers) as two:
            assert receive(two, skip=())["viewers"] == 2
            assert receive(two, skip=()) == {"type": "viewers", "count": 2}
            assert receive(one, skip=()) == {"type": "viewers", "count": 2}
        assert receive(one, skip=()) == {"type": "viewers", "count": 1}
    ok(api.call("POST", f"/v1/sessions/{session}/end", owner))


def test_gifts_hosts_pins_and_the_end_are_pushed(
    server: RuntimeProcess, api: Api, viewers: Counter
):
    owner, cohost, fan = api.account("creator"), api.account("creator"), api.account("user")
    ok(
        api.call("POST", "/v1/wallet/purchases", fan, "buy", json={"coins": 700, "channel": "ios"}),
        201,
    )
    session = start(api, owner)
    with watch(server, session, fan, viewers) as socket:
        assert receive(socket)["type"] == "state"
        host(api, owner, cohost, session, "join")
        assert receive(socket) == {"type": "hosts", "creator_ids": [owner["id"], cohost["id"]]}
        gift_path = f"/v1/sessions/{session}/gifts"
        gift = ok(api.call("POST", gift_path, fan, "gift", json={"coins": 101}), 201)
        assert receive(socket) == {
            "type": "gift",
            "gift_id": gift["gift_id"],
            "sender_id": fan["id"],
            "coins": 101,
            "value_minor": gift["value_minor"],
            "splits": gift["splits"],
            "platform_fee_minor": gift["platform_fee_minor"],
        }
        assert [s["creator_id"] for s in gift["splits"]] == [owner["id"], cohost["id"]]
        replay = api.call("POST", gift_path, fan, "gift", json={"coins": 101})
        assert replay.headers["idempotent-replayed"] == "true"  # and pushes nothing
        host(api, owner, cohost, session, "leave")
        assert receive(socket) == {"type": "hosts", "creator_ids": [owner["id"]]}
        product = ok(
            api.call("POST", "/v1/products", owner, json={"name": "cap", "price_minor": 1500}), 201
        )
        pin = {"product_id": product["product_id"]}
        ok(api.call("POST", f"/v1/sessions/{session}/pin", owner, json=pin))
        assert receive(socket) == {"type": "pinned", "product": product}
        ok(api.call("POST", f"/v1/sessions/{session}/end", owner))
        assert receive(socket) == {"type": "ended", "reason": "host_ended"}
        with pytest.raises(ConnectionClosedOK) as closed:
            socket.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_bad_tokens_and_sessions_not_live_are_refused(server: RuntimeProcess, api: Api):
    owner, fan = api.account("creator"), api.account("user")
    short = ok(api.call("POST", "/v1/tokens", fan, json={"ttl_seconds": 1}), 201)
    live, ended = start(api, owner), start(api, owner)
    ok(api.call("POST", f"/v1/sessions/{ended}/end", owner))
    bearer = {"Authorization": f"Bearer {fan['token']}"}
    assert refused(server, live, {}) == 403
    assert refused(server, live, {"Authorization": "Bearer ce_forged"}) == 403
    assert refused(server, live, {"Authorization": f"Basic {fan['token']}"}) == 403
    assert refused(server, ended, bearer) == 403
    assert refused(server, "s_none", bearer) == 403
    time.sleep(max(0.0, short["expires_at"] - time.time()) + 0.05)
    assert refused(server, live, {"Authorization": f"Bearer {short['token']}"}) == 403
    ok(api.call("POST", f"/v1/sessions/{live}/end", owner))


# Metering ----------------------------------------------------------------------------------


def epoch(text: str) -> float:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC).timestamp()


def presence(events: list[dict], session_id: str, came: str, went: str) -> list[tuple[float, int]]:
    """(time, +1 or -1) each time someone of a kind comes to or leaves the session."""
    steps = {came: 1, went: -1}
    return sorted(
        (epoch(e["occurred_at"]), steps[e["event_type"]])
        for e in events
        if e["event_type"] in steps and e["session_id"] == session_id
    )


def seconds_present(
    changes: list[tuple[float, int]], start: float, end: float, base: int = 0, at_least: int = 1
) -> float:
    """∫ count dt over [start, end], counting only while at least `at_least` are present."""
    cuts = sorted({start, end, *(t for t, _ in changes if start < t < end)})
    total = 0.0
    for left, right in zip(cuts, cuts[1:], strict=False):
        count = base + sum(step for t, step in changes if t <= left)
        total += count * (right - left) if count >= at_least else 0.0
    return total


def check_interval(usage: dict, policy: Policy, quality: str, hosts, watchers) -> None:
    start, end = epoch(usage["interval_start"]), epoch(usage["interval_end"])
    seconds = end - start
    ladder = policy.qualities[quality]
    byte_rate = ladder.bitrate_bps // 8
    assert 0 < seconds <= policy.metering_interval_seconds + TIMING, usage
    assert usage["transcode_seconds"] == pytest.approx(seconds * ladder.renditions, abs=0.002)
    assert usage["recording_bytes"] == pytest.approx(seconds * byte_rate, abs=2)
    rounding = byte_rate * 0.0005 + 1  # viewer_seconds is reported to the millisecond
    assert usage["egress_bytes"] == pytest.approx(usage["viewer_seconds"] * byte_rate, abs=rounding)
    published = seconds_present(hosts, start, end, base=1)
    relayed = seconds_present(hosts, start, end, base=1, at_least=policy.relay_when_hosts_at_least)
    assert usage["publisher_seconds"] == pytest.approx(published, abs=0.002), usage
    assert usage["relay_seconds"] == pytest.approx(relayed, abs=0.002), usage
    assert (usage["relay_seconds"] > 0) == (relayed > 0.002), usage
    watched = seconds_present(watchers, start, end)
    assert usage["viewer_seconds"] == pytest.approx(watched, abs=TIMING), usage


def run_a_metered_session(server: RuntimeProcess, api: Api, viewers: Counter) -> str:
    """About 2.8 s live: a viewer for most of it, a co-host for the middle second."""
    owner, cohost, fan = api.account("creator"), api.account("creator"), api.account("user")
    session = start(api, owner, quality="1080p", record=True)
    time.sleep(0.3)
    with watch(server, session, fan, viewers) as socket:
        assert receive(socket)["type"] == "state"
        time.sleep(0.9)
        host(api, owner, cohost, session, "join")
        time.sleep(0.8)
        host(api, owner, cohost, session, "leave")
        time.sleep(0.6)
    time.sleep(0.2)
    ok(api.call("POST", f"/v1/sessions/{session}/end", owner))
    return session


def test_metering_and_viewer_telemetry(
    server: RuntimeProcess, api: Api, policy: Policy, viewers: Counter
):
    """Last: a metered session, then a graceful stop and the sealed telemetry."""
    session = run_a_metered_session(server, api, viewers)
    server.stop()
    events = [json.loads(line) for path in list_sealed(server.telemetry) for line in path.open()]
    seen = Counter(
        (e["event_type"], e["session_id"], e["user_id"])
        for e in events
        if e["event_type"] in ("viewer_joined", "viewer_left")
    )
    assert seen == viewers
    mine = [e for e in events if e.get("session_id") == session]
    (started,) = [e for e in mine if e["event_type"] == "session_started"]
    (ended,) = [e for e in mine if e["event_type"] == "session_ended"]
    usage = sorted(
        (e for e in mine if e["event_type"] == "media_usage"), key=lambda e: e["interval_start"]
    )
    assert usage[0]["interval_start"] == started["occurred_at"]
    assert usage[-1]["interval_end"] == ended["occurred_at"]
    for before, after in zip(usage, usage[1:], strict=False):
        assert before["interval_end"] == after["interval_start"]
    assert len(usage) >= 2, f"a {len(usage)}-interval report of a 2.8 s session metered each 1 s"
    hosts = presence(mine, session, "host_joined", "host_left")
    watchers = presence(mine, session, "viewer_joined", "viewer_left")
    for interval in usage:
        check_interval(interval, policy, started["quality"], hosts, watchers)
    total = sum(u["viewer_seconds"] for u in usage)
    assert total == pytest.approx(
        seconds_present(watchers, 0, epoch(ended["occurred_at"])), abs=TIMING
    )
