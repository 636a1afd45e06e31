"""The ledger without HTTP: group commit, savepoints, idempotency, the relay's recovery."""

from __future__ import annotations

import json
import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest

from live_runtime.ledger import accounts, books, sessions, wallets
from live_runtime.ledger.writer import Idempotency, LedgerWriter
from live_runtime.policy import load_policy
from live_runtime.relay import OutboxRelay, recover
from telemetry.files import list_sealed

POLICY = load_policy()


@pytest.fixture
def writer(tmp_path: Path):
    writer = LedgerWriter(tmp_path / "ledger.db", "test")
    writer.start()
    writer.run_now(lambda tx: (books.open_platform_books(tx.conn, POLICY.currency), (200, {}))[1])
    yield writer
    writer.stop()


def _account(writer: LedgerWriter, kind: str) -> str:
    return writer.run_now(
        partial(accounts.create_principal, policy=POLICY, kind=kind, display_name=kind)
    ).body["id"]


def _buy(writer: LedgerWriter, user: str, coins: int = 700) -> None:
    outcome = writer.run_now(
        partial(wallets.purchase_coins, policy=POLICY, user_id=user, coins=coins, channel="web")
    )
    assert outcome.status == 201


def _balances(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT id, balance FROM accounts"))


def test_split_adds_up_and_follows_weights():
    for value in (1, 2, 3, 101, 999_999):
        fee, shares = POLICY.split_gift(value, {"a": 1, "b": 1, "c": 1})
        assert fee + sum(shares.values()) == value
        assert max(shares.values()) - min(shares.values()) <= 1
        assert shares["a"] >= shares["b"] >= shares["c"]  # leftover goes to the owner first
    fee, shares = POLICY.split_gift(1000, {"a": 3, "b": 1})
    assert (fee, shares) == (500, {"a": 375, "b": 125})


def test_fees_never_exceed_the_amount():
    for channel in POLICY.channels.values():
        for amount in (1, 30, 31, 99, 24_999):
            payment, store = channel.fees(amount)
            assert 0 <= payment + store <= amount
    for gross in (1, 31, 1500, 1_000_000):
        payment, commission = POLICY.order_fees(gross)
        assert 0 <= payment + commission <= gross


def test_group_commit_batches_and_a_refusal_rolls_back_only_itself(tmp_path, writer):
    user = _account(writer, "user")
    creator = _account(writer, "creator")
    _buy(writer, user, 70)
    session = writer.run_now(
        partial(
            sessions.start_session,
            policy=POLICY,
            creator_id=creator,
            region="eu-west",
            quality="720p",
            record=False,
        )
    )
    session_id = session.body["session_id"]
    commits_before = writer.commits
    # 10 gifts of 10 coins from a wallet of 70: 7 succeed, 3 are refused, in any batching.
    futures = [
        writer.submit(
            partial(wallets.send_gift, policy=POLICY, user_id=user, session_id=session_id, coins=10)
        )
        for _ in range(10)
    ]
    statuses = sorted(f.result().status for f in futures)
    assert statuses == [201] * 7 + [402] * 3
    assert writer.commits - commits_before < 10  # waiting operations shared commits
    balances = _balances(tmp_path / "ledger.db")
    assert balances[books.wallet(user)] == 0
    assert balances[books.earnings(creator)] == 7 * 5
    assert (
        sum(
            v
            for k, v in balances.items()
            if k != books.COINS_ISSUED and not k.startswith("wallet:")
        )
        == 0
    )
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        failed = conn.execute(
            "SELECT count(*) FROM outbox WHERE event_type = 'gift_failed'"
        ).fetchone()[0]
        sent = conn.execute("SELECT count(*) FROM outbox WHERE event_type = 'gift_sent'")
        assert (failed, sent.fetchone()[0]) == (3, 7)


def test_idempotency_key_replays_and_rejects_a_different_request(tmp_path, writer):
    user = _account(writer, "user")
    key = Idempotency(user, "k-1", "hash-a")
    buy = partial(wallets.purchase_coins, policy=POLICY, user_id=user, coins=70, channel="ios")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(writer.submit(buy, key).result()))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.body["purchase_id"] for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert _balances(tmp_path / "ledger.db")[books.wallet(user)] == 70
    other = writer.submit(buy, Idempotency(user, "k-1", "hash-b")).result()
    assert (other.status, other.body["error"]) == (422, "idempotency_key_reused")


def _outbox(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT event_id, relayed FROM outbox ORDER BY seq").fetchall()


def _sealed_ids(telemetry: Path) -> list[str]:
    return [
        json.loads(line)["event_id"]
        for path in list_sealed(telemetry)
        for line in path.read_text().splitlines()
    ]


def test_relay_recovers_a_torn_open_file_without_losing_or_doubling(tmp_path, writer):
    user = _account(writer, "user")
    for _ in range(4):
        _buy(writer, user)
    db, telemetry = tmp_path / "ledger.db", tmp_path / "telemetry"
    lines = []
    with sqlite3.connect(db) as conn:
        lines = [r[0] for r in conn.execute("SELECT line FROM outbox ORDER BY seq")]
    # A relay that died mid-write: three whole lines and half of the fourth, none marked.
    (telemetry / "open").mkdir(parents=True)
    (telemetry / "sealed").mkdir()
    torn = "".join(line + "\n" for line in lines[:3]) + lines[3][:40]
    (telemetry / "open" / "test-000000000001.jsonl").write_text(torn)

    relay = OutboxRelay(db, telemetry, "test")
    assert relay.recovered == 3
    assert [r for _, r in _outbox(db)] == [1, 1, 1, 0]
    relay.start()
    relay.stop()
    assert sorted(_sealed_ids(telemetry)) == sorted(e for e, _ in _outbox(db))
    assert len(_sealed_ids(telemetry)) == 4
    assert not list((telemetry / "open").iterdir())


def test_recover_ignores_other_sources_and_empty_files(tmp_path, writer):
    telemetry = tmp_path / "telemetry"
    (telemetry / "open").mkdir(parents=True)
    (telemetry / "open" / "other-000000000001.jsonl").write_text("{}\n")
    (telemetry / "open" / "test-000000000001.jsonl").write_text('{"event_id": "x"')
    with sqlite3.connect(tmp_path / "ledger.db", isolation_level=None) as conn:
        assert recover(conn, telemetry, "test") == 0
    assert [p.name for p in (telemetry / "open").iterdir()] == ["other-000000000001.jsonl"]
