"""Reconciliation end to end: a real runtime's ledger against the warehouse its telemetry filled.

Every command that opens the warehouse runs as its own process: the embedded warehouse admits
one data path per process, and the session's pipeline fixture holds another.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from runtime_server import Api, RuntimeProcess

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Books:
    """What a stopped runtime left: its ledger, its sealed telemetry, and the run's warehouse."""

    root: Path
    db: Path
    telemetry: Path

    @property
    def warehouse(self) -> str:
        return f"chdb://{self.root / 'data' / 'warehouse'}"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "creator_econ.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_pipeline(telemetry: Path, data: Path, ledger: Path) -> subprocess.CompletedProcess:
    return cli(  # --verbose: Dagster's log names the checks that ran
        "run", "--telemetry", telemetry, "--marts", data / "marts", "--data", data,
        "--ledger", ledger, "--verbose",
    )  # fmt: skip


def drive(api: Api) -> None:
    """Purchases and orders paid through the sandbox provider, gifts in a two-host session
    (one too small to give the guest a share), a refunded order, a disputed coin purchase and
    a payout, plus a refused gift and a declined payment: telemetry that moves no money."""

    def ok(response) -> dict:
        assert response.is_success, response.text
        return response.json()

    def paid(pending: dict) -> dict:
        confirmed = ok(api.pay(pending))
        assert confirmed["notification"]["outcome"] == "applied", confirmed
        return pending

    fan, regular = api.account("user"), api.account("user")
    owner, guest = api.account("creator"), api.account("creator")
    api.buy(fan, 17500, "ios", key="p1")
    buy = {"coins": 70, "channel": "web"}
    first = api.call("POST", "/v1/wallet/purchases", regular, "p2", json=buy)
    again = api.call("POST", "/v1/wallet/purchases", regular, "p2", json=buy)  # a retry
    assert ok(again) == ok(first)  # the same pending payment,
    paid(first.json())
    assert api.pay(again.json()).status_code == 409  # confirmed once: it buys once
    declined = ok(api.call("POST", "/v1/wallet/purchases", regular, "p3", json=buy))
    assert ok(api.pay(declined, "decline"))["notification"]["outcome"] == "applied"
    disputed = api.buy(fan, 350, "web", key="p4")
    session = ok(api.call("POST", "/v1/sessions", owner, json={"quality": "480p"}))["session_id"]
    live = f"/v1/sessions/{session}"
    invited = ok(api.call("POST", f"{live}/cohosts", owner, json={"creator_id": guest["id"]}))
    ok(api.call("POST", f"{live}/join", guest, json={"accept_split": invited["split"]}))
    ok(api.call("PUT", f"{live}/split", owner, json={"weights": {owner["id"]: 2, guest["id"]: 1}}))
    for key, who, coins in [("g1", fan, 11_000), ("g2", regular, 69), ("g3", regular, 1)]:
        ok(api.call("POST", f"{live}/gifts", who, key, json={"coins": coins}))
    assert api.call("POST", f"{live}/gifts", regular, "g4", json={"coins": 5}).status_code == 402
    ok(api.pay(disputed, "dispute"))  # takes back the coins the fan still holds
    product = ok(api.call("POST", "/v1/products", owner, json={"name": "mug", "price_minor": 2500}))
    order = {"product_id": product["product_id"], "session_id": session}
    paid(ok(api.call("POST", "/v1/orders", fan, "o1", json=order | {"quantity": 2})))
    refunded = paid(ok(api.call("POST", "/v1/orders", regular, "o2", json=order | {"quantity": 1})))
    ok(api.call("POST", f"/v1/orders/{refunded['order_id']}/refund", owner))
    ok(api.call("POST", "/v1/payouts", owner, "po1"))
    ok(api.call("POST", f"{live}/end", owner))


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Books:
    """A real runtime driven over HTTP, stopped gracefully, then run through the pipeline."""
    root = tmp_path_factory.mktemp("reconcile")
    runtime = RuntimeProcess(root / "runtime").start()
    try:
        drive(Api(runtime.url))
    finally:
        runtime.stop()
    assert not list((runtime.telemetry / "open").iterdir()), "a graceful stop seals every file"
    books = Books(root, runtime.db, runtime.telemetry)
    run = run_pipeline(books.telemetry, root / "data", books.db)
    assert run.returncode == 0, run.stderr
    assert re.search(r"ingest done .* lines: \d+ loaded, 0 duplicates, 0 quarantined", run.stderr)
    assert "matches_runtime_ledger" in run.stderr
    return books


def test_ledger_and_warehouse_agree_after_a_run(books: Books):
    result = cli("reconcile", "--db", books.db, "--warehouse", books.warehouse)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"ledger and warehouse agree on \d+ days?", lines[-1]), result.stdout
    totals = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("total")}
    assert totals["gifts"] == ["3", "3", "0"]
    assert totals["coin_purchases"] == ["3", "3", "0"]  # confirmed; not the declined one
    assert totals["coin_refunds"] == ["1", "1", "0"]
    assert totals["orders"] == ["2", "2", "0"]
    assert totals["refunds"] == ["1", "1", "0"]
    assert totals["payouts"] == ["1", "1", "0"]
    assert totals["gift_value"] == ["11,070", "11,070", "0"]


def test_an_extra_ledger_movement_is_named_by_metric_and_day(books: Books, tmp_path: Path):
    copy = tmp_path / "ledger.db"
    original = sqlite3.connect(f"{books.db.as_uri()}?mode=ro", uri=True)
    with closing(original) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    with closing(sqlite3.connect(copy)) as conn, conn:
        day = conn.execute("SELECT max(day) FROM movements").fetchone()[0]
        conn.execute(
            "INSERT INTO movements (id, kind, principal_id, occurred_at, day) "
            "VALUES ('po_extra', 'payout', 'cr_x', ?, ?)",
            (f"{day}T12:00:00.000000Z", day),
        )
        conn.executemany(
            "INSERT INTO postings (movement_id, account_id, amount) VALUES ('po_extra', ?, ?)",
            [("creator:cr_x", -700), ("external:payouts", 700)],
        )
    result = cli("reconcile", "--db", copy, "--warehouse", books.warehouse)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(rf"^{day}\s+payouts\s+2\s+1\s+-1$", result.stdout, re.M), result.stdout
    assert re.search(rf"^{day}\s+payout_amount\s+\S+\s+\S+\s+-700$", result.stdout, re.M)
    assert result.stdout.splitlines()[-1].startswith("2 differences between ledger and warehouse")


def test_a_lost_gift_event_fails_the_blocking_check_and_the_reconcile(books: Books, tmp_path):
    telemetry = tmp_path / "telemetry"
    shutil.copytree(books.telemetry, telemetry)
    copy_as_another_source(telemetry, "sim")  # not the ledger's: never compared
    day = drop_first_event(telemetry, "gift_sent")
    data = tmp_path / "data"
    run = run_pipeline(telemetry, data, books.db)
    assert run.returncode != 0, run.stderr
    assert re.search(r"ingest done .* 2 files, (\d+) lines: \1 loaded", run.stderr), run.stderr
    assert "matches_runtime_ledger" in run.stderr and "gifts on" in run.stderr, run.stderr
    assert not (data / "marts" / "platform_daily.parquet").exists(), "blocked before publishing"
    result = cli("reconcile", "--db", books.db, "--warehouse", f"chdb://{data / 'warehouse'}")
    assert result.returncode == 1, result.stdout + result.stderr
    differing = re.findall(rf"^{day}\s+(\w+)\s.*\s-[\d,]+$", result.stdout, re.M)
    assert differing == ["gifts", "gift_value", "creator_earnings", "platform_fees"], result.stdout
    assert result.stdout.splitlines()[-1] == "4 differences between ledger and warehouse on 1 day"


def test_clear_errors_without_a_ledger_or_raw_tables(books: Books, tmp_path: Path):
    missing = cli("reconcile", "--db", tmp_path / "none.db", "--warehouse", books.warehouse)
    assert missing.returncode == 2 and "no ledger database at" in missing.stderr
    (tmp_path / "junk.db").write_text("not a database, just text that is long enough " * 20)
    junk = cli("reconcile", "--db", tmp_path / "junk.db", "--warehouse", books.warehouse)
    assert junk.returncode == 2 and "is not a runtime ledger database" in junk.stderr
    empty = cli("reconcile", "--db", books.db, "--warehouse", f"chdb://{tmp_path / 'empty'}")
    assert empty.returncode == 2 and "has no raw tables yet" in empty.stderr, empty.stderr


def copy_as_another_source(telemetry: Path, source: str) -> None:
    """The same events again under another source name and new ids, as a second instance
    (its gifts, purchases, orders and payouts get ids of their own, as another instance's do)."""
    ids = ("purchase_id", "gift_id", "order_id", "payout_id")
    for number, path in enumerate(sorted((telemetry / "sealed").iterdir()), 1):
        events = [json.loads(line) for line in path.read_text().splitlines()]
        lines = [
            json.dumps(
                e
                | {"event_id": str(uuid.uuid4()), "source": source}
                | {k: f"{source}-{e[k]}" for k in ids if k in e}
            )
            + "\n"
            for e in events
        ]
        (telemetry / "sealed" / f"{source}-{number:012d}.jsonl").write_text("".join(lines))


def drop_first_event(telemetry: Path, event_type: str) -> str:
    """Removes one event from a copy of sealed telemetry; returns the UTC day it happened."""
    for path in sorted((telemetry / "sealed").iterdir()):
        lines = path.read_text().splitlines(keepends=True)
        for number, line in enumerate(lines):
            event = json.loads(line)
            if event["event_type"] == event_type:
                path.write_text("".join(lines[:number] + lines[number + 1 :]))
                return event["occurred_at"][:10]
    raise AssertionError(f"no {event_type} event in {telemetry}")
