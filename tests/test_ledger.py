"""The ledger without HTTP: group commit, savepoints, idempotency, the database's own balance
check, the relay's recovery.

No server: each test gets its own ledger writer on its own database (`writer` fixture), so
no test depends on another. Expected amounts are worked out by hand from
live_runtime/policy_default.toml; the comments show the sums.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from contextlib import closing
from fractions import Fraction
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live_runtime.ledger import accounts, books, earnings, payments, sessions, wallets
from live_runtime.ledger.writer import Idempotency, LedgerWriter
from live_runtime.policy import DEFAULT_POLICY, PolicyError, load_policy
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


def _paid_purchase(user: str, coins: int, channel: str):
    """One operation: a coin purchase and the provider's confirmation of its payment."""

    def operation(tx):
        _, pending = payments.open_purchase(tx, POLICY, user, coins, channel)
        charge = {"id": pending["payment_id"], "amount": pending["amount_minor"], "currency": "usd"}
        event = {"id": f"evt_{pending['payment_id']}", "type": "payment_intent.succeeded",
                 "data": {"object": charge}}  # fmt: skip
        assert payments.apply_notification(tx, POLICY, event)[1]["outcome"] == "applied"
        return 201, pending

    return operation


def _buy(writer: LedgerWriter, user: str, coins: int = 700) -> None:
    assert writer.run_now(_paid_purchase(user, coins, "web")).status == 201


def _balances(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT id, balance FROM accounts"))


def _split(value: int, weights: dict[str, int], carries=None) -> tuple[int, dict[str, int]]:
    split = POLICY.split_gift(value, weights, carries or {})
    return split.platform_fee, split.shares


def test_split_adds_up_and_follows_weights():
    for value in (1, 2, 3, 101, 999_999):
        fee, shares = _split(value, {"a": 1, "b": 1, "c": 1})
        assert fee + sum(shares.values()) == value
        assert max(shares.values()) - min(shares.values()) <= 1
    # Creators get 50% (platform fee 5000 bps). 1,000: 500 for the hosts; 3 : 1 -> 375 and 125.
    assert _split(1000, {"a": 3, "b": 1}) == (500, {"a": 375, "b": 125})
    # 101: the hosts are owed 50.5, 50.5 / 3 = 16.83 each: 16 now, 0.83 carried; fee 101 - 48.
    assert _split(101, {"a": 1, "b": 1, "c": 1}) == (53, {"a": 16, "b": 16, "c": 16})
    # 1: the single host is owed half a unit: nothing now, the whole unit to the platform.
    assert _split(1, {"a": 1}) == (1, {"a": 0})


def test_fractions_are_carried_so_earnings_never_exceed_the_rate():
    """70 one-coin gifts (one 70-coin web pack) earn the creator 35, as one 70-coin gift does:
    the half unit of each gift is carried and credited every second gift."""
    carries, earned, shares = {}, 0, []
    for _ in range(70):
        split = POLICY.split_gift(1, {"a": 1}, carries)
        carries = split.carries
        shares.append(split.shares["a"])
        earned += split.shares["a"]
    assert earned == 35 == _split(70, {"a": 1})[1]["a"]
    assert shares[:4] == [0, 1, 0, 1]
    assert carries == {"a": 0}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(8, 10_000),  # gift value, at least twice the hosts (below)
            # weights of hosts h0..h3, at least 3/24 = 12.5% each: above the policy's 10% floor
            st.lists(st.integers(3, 7), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_over_any_gifts_earnings_are_the_rate_less_under_one_unit(gifts):
    """Each host's earnings lie in (owed - 1, owed], owed = sum of value / 2 x weight / total,
    worked out here with exact fractions; value = shares + fee on every gift, fee >= 0."""
    carries: dict = {}
    earned: dict[str, int] = {}
    owed: dict[str, Fraction] = {}
    for value, weights in gifts:
        hosts = {f"h{i}": w for i, w in enumerate(weights)}
        split = POLICY.split_gift(value, hosts, carries)
        carries = {**carries, **split.carries}
        assert split.platform_fee >= 0 and min(split.shares.values()) >= 0
        assert split.platform_fee + sum(split.shares.values()) == value
        for host, weight in hosts.items():
            earned[host] = earned.get(host, 0) + split.shares[host]
            owed[host] = owed.get(host, Fraction(0)) + Fraction(value, 2) * weight / sum(weights)
    for host in owed:
        assert owed[host] - 1 < earned[host] <= owed[host]


def test_a_gift_too_small_for_the_carried_units_pays_them_at_the_next_gift():
    """Two hosts each carry 0.9. A 1-coin gift owes each 0.25 more: 1.15 each, 2 units in
    all, more than the gift's 1: the first host gets it, the second carries 1.15 (the one case
    where a host lags by a unit or more). The next gift, 10, owes each 2.5: the first host
    1.15 - 1 + 2.5 = 2.65 -> 2, the second 1.15 + 2.5 = 3.65 -> 3; fee 10 - 5 = 5."""
    nine = Fraction(9, 10)
    small = POLICY.split_gift(1, {"a": 1, "b": 1}, {"a": nine, "b": nine})
    assert (small.platform_fee, small.shares) == (0, {"a": 1, "b": 0})
    assert small.carries == {"a": Fraction(3, 20), "b": Fraction(23, 20)}
    after = POLICY.split_gift(10, {"a": 1, "b": 1}, small.carries)
    assert (after.platform_fee, after.shares) == (5, {"a": 2, "b": 3})
    assert after.carries == {"a": Fraction(13, 20), "b": Fraction(13, 20)}


def test_held_earnings_become_payable_on_their_day_and_repay_a_debt_first(tmp_path, writer):
    """A 1,000-coin gift earns its host 500, held 7 days. A refund that took 200 more than the
    host had leaves a debt of 200; on release day the 500 repay it and 300 become available."""
    user, creator = _account(writer, "user"), _account(writer, "creator")
    _buy(writer, user, 1400)
    session = writer.run_now(
        partial(sessions.start_session, policy=POLICY, creator_id=creator, region="eu-west",
                quality="720p", record=False)
    ).body["session_id"]  # fmt: skip
    gift = partial(wallets.send_gift, policy=POLICY, user_id=user, session_id=session, coins=1000)
    assert writer.run_now(gift).status == 201

    def debt(tx):
        books.open_accounts(tx.conn, [books.owed(creator)], POLICY.currency, negative=True)
        tx.move("debt", "refund", creator, {books.owed(creator): -200, books.PAYMENTS: 200})
        return 200, {}

    writer.run_now(debt)

    def release_on(days: int):
        def operation(tx):
            later = books.Tx(tx.conn, tx.source, tx.now + dt.timedelta(days=days))
            return 200, {"released": earnings.release_due(later, creator)}

        return operation

    assert writer.run_now(release_on(6)).body == {"released": 0}
    assert _balances(tmp_path / "ledger.db")[books.pending(creator)] == 500
    assert writer.run_now(release_on(7)).body == {"released": 1}
    balances = _balances(tmp_path / "ledger.db")
    assert (balances[books.pending(creator)], balances[books.owed(creator)]) == (0, 0)
    assert balances[books.earnings(creator)] == 300


def test_a_policy_whose_pack_loses_money_per_coin_is_refused(tmp_path: Path):
    """A 100-coin pack for 60 on web nets 60 - (2.9% of 60 = 1.74 -> 2) - 30 = 28, 0.28 per
    coin, against 0.5 per coin paid to creators: refused, naming the pack and the channel."""
    text = DEFAULT_POLICY.read_text().replace(
        "{ coins = 70, price_minor = 99 },", "{ coins = 100, price_minor = 60 },"
    )
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=r"100 coins for 60 on web nets 28 \(0\.2800 per coin\)"):
        load_policy(path)
    assert load_policy(path, allow_unprofitable_packs=True).coin_packs[100] == 60


def test_fees_never_exceed_the_amount():
    for channel in POLICY.channels.values():
        for amount in (1, 30, 31, 99, 24_999):
            payment, store = channel.fees(amount)
            assert 0 <= payment + store <= amount
    for gross in (1, 31, 1500, 1_000_000):
        payment, commission = POLICY.order_fees(gross)
        assert 0 <= payment + commission <= gross
    web, ios = POLICY.channels["web"], POLICY.channels["ios"]
    assert web.fees(1) == (1, 0)  # 2.9% of 1 = 0.029 -> 0, + 30 fixed = 30, capped at 1
    assert web.fees(30) == (30, 0)  # 2.9% of 30 = 0.87 -> 1, + 30 = 31, capped at 30
    assert web.fees(99) == (33, 0)  # 2.9% of 99 = 2.871 -> 3, + 30 = 33
    assert ios.fees(1) == (0, 0)  # 30% of 1 = 0.3 -> 0; no processor fee in-app
    assert ios.fees(99) == (0, 30)  # 30% of 99 = 29.7 -> 30
    # Orders: payment 2.9% + 30 (at most the gross), then commission 8% (at most what is left).
    assert POLICY.order_fees(1) == (1, 0)  # 0 + 30, capped at 1; nothing left for commission
    assert POLICY.order_fees(31) == (31, 0)  # 0.899 -> 1, + 30 = 31; 8% = 2.48 -> 2, capped at 0
    assert POLICY.order_fees(1500) == (74, 120)  # 43.5, exactly half, up -> 44, + 30; 8% = 120
    assert POLICY.order_fees(1_000_000) == (29_030, 80_000)  # 29,000 + 30; 80,000


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
    # 7 gifts of 10 coins = 10 each (coin_value_minor 1); fee 50% = 5; one host gets 5,
    # held for the policy's 7 days.
    assert balances[books.pending(creator)] == 35
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
    buy = _paid_purchase(user, 70, "ios")
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


def _ledger_rows(db: Path) -> dict[str, list]:
    """Everything a money operation may write, read on a connection of its own."""
    tables = {
        "accounts": "SELECT id, balance FROM accounts",
        "movements": "SELECT id FROM movements",
        "postings": "SELECT movement_id, account_id, amount FROM postings",
        "outbox": "SELECT event_id, line FROM outbox",
    }
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {name: sorted(conn.execute(sql).fetchall()) for name, sql in tables.items()}


def _overdraft(account: str, counter: str, amount: int, user: str):
    """An operation that skips every balance check of the ledger code: it records an event,
    then moves `amount` out of `account` straight through `Tx.move`."""

    def operation(tx: books.Tx) -> tuple[int, dict]:
        tx.emit("viewer_joined", session_id="s_overdraft", user_id=user)
        tx.move("mv_overdraft", "gift", user, {account: -amount, counter: amount})
        return 201, {}

    return operation


@pytest.mark.parametrize(
    ("holder", "balance", "amount"),
    [
        ("wallet", 0, 1),  # a new user's wallet
        ("wallet", 70, 71),  # after a 70-coin pack
        ("creator", 0, 1),  # a new creator
        ("creator", 35, 36),  # after a gift of 70: fee 50% = 35, the only host gets 35
    ],
)
def test_the_database_refuses_an_overdraft_the_code_did_not_check(
    tmp_path, writer, holder: str, balance: int, amount: int
):
    """accounts' CHECK (may_go_negative = 1 OR balance >= 0) holds on its own: a movement that
    would leave a wallet or a creator below zero fails in SQLite, and its savepoint (movement,
    postings, event) is rolled back, while the operations committed with it stand."""
    user, creator = _account(writer, "user"), _account(writer, "creator")
    if balance:
        _buy(writer, user, 70)
    if holder == "creator" and balance:
        session = writer.run_now(
            partial(
                sessions.start_session, policy=POLICY, creator_id=creator, region="eu-west",
                quality="720p", record=False,
            )
        ).body["session_id"]  # fmt: skip
        unheld = dataclasses.replace(POLICY, payout_hold_days=0)  # payable at once
        gift = partial(wallets.send_gift, policy=unheld, user_id=user, session_id=session)
        assert writer.run_now(partial(gift, coins=70)).status == 201
        assert writer.run_now(earnings.release_all).body == {"released": 1}
    if holder == "creator":
        account, counter = books.earnings(creator), books.PAYOUTS
    else:
        account, counter = books.wallet(user), books.COINS_ISSUED
    db = tmp_path / "ledger.db"
    before = _ledger_rows(db)
    assert dict(before["accounts"])[account] == balance  # so the move would leave -1

    # A blocker holds the writer while a purchase, the overdraft and another purchase queue
    # up behind it, so that the three are committed together.
    release = threading.Event()

    def blocker(tx):
        assert release.wait(10)
        return 200, {}

    other = _account(writer, "user")
    commits = writer.commits
    held = writer.submit(blocker)
    buy = _paid_purchase(other, 70, "web")
    first = writer.submit(buy)
    refused = writer.submit(_overdraft(account, counter, amount, user))
    last = writer.submit(buy)
    release.set()
    assert held.result(timeout=10).status == 200
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        refused.result(timeout=10)
    assert first.result(timeout=10).status == last.result(timeout=10).status == 201
    # The three were queued before the blocker returned, so they went into its batch or into
    # the next one together: either way the overdraft shared a commit with both purchases.
    assert writer.commits - commits in (1, 2)

    after = _ledger_rows(db)
    assert dict(after["accounts"])[account] == balance
    assert "mv_overdraft" not in {m for (m,) in after["movements"]}
    assert not [p for p in after["postings"] if p[0] == "mv_overdraft"]
    assert not [e for e in after["outbox"] if "s_overdraft" in e[1]]
    assert dict(after["accounts"])[books.wallet(other)] == 140  # both purchases of 70 stand
    new_movements = {m for (m,) in after["movements"]} - {m for (m,) in before["movements"]}
    assert len(new_movements) == 2


def test_the_check_constraint_is_in_the_schema_itself(tmp_path, writer):
    """Bypassing the writer too: a plain connection cannot overdraw a wallet or a creator."""
    user = _account(writer, "user")
    creator = _account(writer, "creator")
    with closing(sqlite3.connect(tmp_path / "ledger.db", timeout=30)) as conn:
        for account in (books.wallet(user), books.earnings(creator)):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                conn.execute("UPDATE accounts SET balance = -1 WHERE id = ?", (account,))
            conn.rollback()
        conn.execute(  # the platform's own books may go negative
            "UPDATE accounts SET balance = balance - 1 WHERE id = ?", (books.PAYOUTS,)
        )
        conn.rollback()
    assert _balances(tmp_path / "ledger.db")[books.wallet(user)] == 0


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
