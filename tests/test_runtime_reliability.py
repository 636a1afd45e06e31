"""The runtime under concurrent load and under kill -9, checked from its ledger and its files.

Money moves only on a confirmed payment: a purchase or an order is a pending payment until the
payer confirms it at the sandbox provider, whose signed notification the runtime applies.

A bank test: many clients send gifts at once, most with fresh idempotency keys, some with the
same key from several clients at once, many for more coins than the wallet holds; purchases
are confirmed (some twice at once, a double click) or declined, orders paid and refunded
(some refunds sent twice at once), purchases disputed. The ledger must still balance to zero
per unit, move money at most once per key and per payment, and leave every user with exactly
what the responses said.

A crash test: a mixed load (purchases and orders paid or declined at the sandbox, gifts,
refunds, disputes, payouts, sessions) is running when the server is killed with SIGKILL. After
a restart on the same files, every committed movement has exactly one telemetry event, every
outbox row is in exactly one file line, and every request the client was told succeeded is
in the ledger.

A provider's retry: the server is killed right after a payment's confirmation is sent, before
the provider hears back; after the restart the provider delivers the same signed notification
again, and the coins are credited exactly once.

`CREATOR_ECON_CRASH_TRIALS=N` runs N crash trials instead of 3, each killing at its own point.

Servers: each test starts its own (and a crash trial a second one on the same files), so no
test depends on another. Waits are on conditions with a deadline (answers counted, the relay
caught up), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from runtime_server import Api, RuntimeProcess, new_credentials, signed, wait_for
from telemetry_files import read_lines, telemetry_files

CRASH_TRIALS = int(os.environ.get("CREATOR_ECON_CRASH_TRIALS", "3"))
IN_FLIGHT = 24  # concurrent requests in the bank test
LOAD_THREADS = 10  # concurrent clients in the crash test

# Money movements, and the field of their telemetry event that carries the movement's id.
MONEY_EVENTS = {
    "purchase": ("coins_purchased", "purchase_id"),
    "gift": ("gift_sent", "gift_id"),
    "order": ("order_paid", "order_id"),
    "payout": ("payout_issued", "payout_id"),
}
# Reversals are matched through the outbox: their event names what they reverse (the order,
# the purchase), not the reversing movement.
REVERSAL_EVENTS = {
    "refund": ("order_refunded", "order_id"),
    "coin_refund": ("coins_refunded", "purchase_id"),
}
# Earnings leaving their hold for the available balance: a transfer within the creator's own
# accounts, with no telemetry event.
SILENT_MOVEMENTS = {"release"}
REVERSED = ("refunded", "disputed")  # the statuses of a payment a refund or dispute reversed
SANDBOX = "/sandbox/v1/payment_intents/{}/{}"
WEBHOOK = "/v1/webhooks/payments"
WEBHOOK_SECRET = "whsec_reliability_" + "r" * 32  # what the kill-after-confirm test signs with


# Reading the ledger and the telemetry ------------------------------------------------------------


@contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    """The ledger opened read-only, so a check can never change what it checks."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        yield conn


def assert_books_balance(db: Path) -> None:
    """Double entry holds: every unit sums to zero, and balances are the sums of postings."""
    with read_only(db) as conn:
        units = dict(conn.execute("SELECT unit, sum(balance) FROM accounts GROUP BY unit"))
        assert units and all(total == 0 for total in units.values()), units
        drift = conn.execute(
            "SELECT a.id, a.balance, coalesce(sum(p.amount), 0) FROM accounts a "
            "LEFT JOIN postings p ON p.account_id = a.id GROUP BY a.id "
            "HAVING a.balance != coalesce(sum(p.amount), 0)"
        ).fetchall()
        assert drift == [], f"balances that are not the sum of their postings: {drift[:5]}"
        unbalanced = conn.execute(
            "SELECT p.movement_id, a.unit, sum(p.amount) FROM postings p "
            "JOIN accounts a ON a.id = p.account_id GROUP BY p.movement_id, a.unit "
            "HAVING sum(p.amount) != 0"
        ).fetchall()
        assert unbalanced == [], f"movements whose postings do not sum to 0: {unbalanced[:5]}"
        empty = conn.execute(
            "SELECT id FROM movements m "
            "WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.movement_id = m.id)"
        ).fetchall()
        assert empty == [], f"movements without postings: {empty[:5]}"
        overdrawn = conn.execute(
            "SELECT id, balance FROM accounts WHERE may_go_negative = 0 AND balance < 0"
        ).fetchall()
        assert overdrawn == [], f"overdrawn accounts: {overdrawn[:5]}"


def balances(db: Path) -> dict[str, int]:
    with read_only(db) as conn:
        return dict(conn.execute("SELECT id, balance FROM accounts"))


def movements(db: Path) -> dict[str, set[str]]:
    """Movement ids by kind."""
    found: dict[str, set[str]] = defaultdict(set)
    with read_only(db) as conn:
        for movement_id, kind in conn.execute("SELECT id, kind FROM movements"):
            found[kind].add(movement_id)
    return found


def unrelayed(db: Path) -> int:
    with read_only(db) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE relayed = 0").fetchone()[0]


def wait_relayed(db: Path, timeout: float = 30.0) -> None:
    """Waits until the relay has written every committed outbox row to a file."""
    wait_for(lambda: unrelayed(db) == 0, "the relay to write every committed event", timeout)


def assert_relayed_exactly_once(db: Path, telemetry: Path) -> list[dict[str, Any]]:
    """After a graceful stop: every outbox row is in exactly one sealed line, byte for byte.

    Returns the sealed events. Reading raises on a torn or malformed line.
    """
    assert not telemetry_files(telemetry, ("open",)), "a file is left in open/ after the stop"
    lines = read_lines(telemetry, ("sealed",))
    with read_only(db) as conn:
        outbox = dict(conn.execute("SELECT event_id, line FROM outbox"))
        assert unrelayed(db) == 0
    copies = Counter(line.event["event_id"] for line in lines)
    doubled = [event_id for event_id, n in copies.items() if n > 1]
    assert doubled == [], f"{len(doubled)} events written more than once, e.g. {doubled[:3]}"
    missing = outbox.keys() - copies.keys()
    assert not missing, f"{len(missing)} outbox rows never reached a file, e.g. {list(missing)[:3]}"
    stray = copies.keys() - outbox.keys()
    assert not stray, f"{len(stray)} file events are not in the outbox, e.g. {list(stray)[:3]}"
    changed = [
        line.event["event_id"] for line in lines if outbox[line.event["event_id"]] != line.text
    ]
    assert changed == [], f"lines that differ from their outbox row: {changed[:3]}"
    return [line.event for line in lines]


def assert_money_events_match_movements(db: Path, events: list[dict[str, Any]]) -> None:
    """Each committed movement has exactly one money event, and each money event a movement;
    each reversed order or purchase exactly one reversal."""
    moved = movements(db)
    assert set(moved) <= set(MONEY_EVENTS) | set(REVERSAL_EVENTS) | SILENT_MOVEMENTS, set(moved)
    for kind, (event_type, id_field) in MONEY_EVENTS.items():
        told = Counter(e[id_field] for e in events if e["event_type"] == event_type)
        doubled = [i for i, n in told.items() if n > 1]
        assert doubled == [], f"{event_type} more than once for {doubled[:3]}"
        assert told.keys() - moved[kind] == set(), f"{event_type} without a {kind} movement"
        assert moved[kind] - told.keys() == set(), f"{kind} movements without {event_type}"
    with read_only(db) as conn:
        movement_of = dict(
            conn.execute("SELECT event_id, movement_id FROM outbox WHERE movement_id IS NOT NULL")
        )
        reversed_ = {
            "refund": {
                r[0] for r in conn.execute("SELECT id FROM orders WHERE status = 'refunded'")
            },
            "coin_refund": {
                r[0]
                for r in conn.execute(
                    "SELECT reference FROM payments WHERE kind = 'purchase' AND status IN (?, ?)",
                    REVERSED,
                )
            },
        }
        dangling = conn.execute(
            "SELECT o.event_id FROM outbox o WHERE o.movement_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM movements m WHERE m.id = o.movement_id)"
        ).fetchall()
    assert dangling == [], f"outbox events for movements not in the ledger: {dangling[:3]}"
    for kind, (event_type, subject) in REVERSAL_EVENTS.items():
        found = [e for e in events if e["event_type"] == event_type]
        by_movement = Counter(movement_of[e["event_id"]] for e in found)
        assert [i for i, n in by_movement.items() if n > 1] == [], f"{event_type} doubled"
        assert set(by_movement) == moved[kind], f"{kind} movements and {event_type} differ"
        by_subject = Counter(e[subject] for e in found)
        assert [i for i, n in by_subject.items() if n > 1] == [], f"a {subject} reversed twice"
        assert set(by_subject) == reversed_[kind], f"{event_type} and reversed payments differ"


def assert_payments_match_movements(db: Path) -> None:
    """A payment moved money exactly when the provider confirmed it: one purchase or order
    movement per succeeded (or later reversed) payment, none for a pending or failed one."""
    moved = movements(db)
    with read_only(db) as conn:
        paid = conn.execute(
            "SELECT kind, reference FROM payments WHERE status IN ('succeeded', ?, ?)", REVERSED
        ).fetchall()
    for kind in ("purchase", "order"):
        assert {ref for k, ref in paid if k == kind} == moved[kind], kind


def creator_totals(db: Path) -> Counter[str]:
    """Each creator's earnings in the books: their available, pending and owed accounts."""
    with read_only(db) as conn:
        rows = conn.execute("SELECT id, balance FROM accounts WHERE id LIKE 'creator:%'")
        totals: Counter[str] = Counter()
        for account, balance in rows:
            totals[account.split(":")[1]] += balance
    return totals


def payment_status(db: Path, payment_id: str) -> str | None:
    with read_only(db) as conn:
        row = conn.execute("SELECT status FROM payments WHERE id = ?", (payment_id,)).fetchone()
    return row[0] if row else None


# The bank test ----------------------------------------------------------------------------------


@dataclass
class Flight:
    """Counts requests in flight, to show the test really ran them concurrently."""

    now: int = 0
    peak: int = 0

    @contextmanager
    def one(self) -> Iterator[None]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            self.now -= 1


@dataclass(frozen=True)
class Ask:
    """One idempotent request as a user means it: the same key stands for the same ask."""

    user: str
    path: str
    body: tuple[tuple[str, Any], ...]
    key: str


@dataclass
class Answer:
    ask: Ask
    status: int
    body: dict[str, Any]
    replayed: bool  # the server said this is the stored answer to an earlier request


@dataclass
class Act:
    """A request that is not keyed: a payer at the sandbox provider, or a seller's refund."""

    subject: dict[str, Any]  # the pending payment (or paid order) it is about
    action: str  # confirm, decline, dispute, or refund
    status: int = 0
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        return self.status == 200 and self.body["notification"]["outcome"] == "applied"


@dataclass
class BankRun:
    users: dict[str, dict]
    creators: list[dict]
    sessions: list[str]
    purchases: list[Answer] = field(default_factory=list)
    payments: list[Act] = field(default_factory=list)  # confirmations and declines
    orders: list[Answer] = field(default_factory=list)
    refunds: list[Act] = field(default_factory=list)
    gifts: list[Answer] = field(default_factory=list)
    reused: list[Answer] = field(default_factory=list)  # same key, different body
    disputes: list[Act] = field(default_factory=list)
    coins_before_disputes: dict[str, int] = field(default_factory=dict)  # user -> coins
    peak_in_flight: int = 0


async def _send(
    http: httpx.AsyncClient, gate: asyncio.Semaphore, flight: Flight, run: BankRun, ask: Ask
) -> Answer:
    headers = {
        "Authorization": f"Bearer {run.users[ask.user]['token']}",
        "Idempotency-Key": ask.key,
    }
    async with gate:
        with flight.one():
            response = await http.post(ask.path, json=dict(ask.body), headers=headers)
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return Answer(ask, response.status_code, response.json(), replayed)


async def _act(
    http: httpx.AsyncClient, gate: asyncio.Semaphore, flight: Flight, act: Act, seller: dict
) -> Act:
    """The sandbox provider's action on a pending payment (by its client secret), or the
    seller's refund of a paid order (by their token)."""
    async with gate:
        with flight.one():
            if act.action == "refund":
                path = f"/v1/orders/{act.subject['order_id']}/refund"
                headers = {"Authorization": f"Bearer {seller['token']}"}
                response = await http.post(path, headers=headers)
            else:
                path = SANDBOX.format(act.subject["payment_id"], act.action)
                body = {"client_secret": act.subject["client_secret"]}
                response = await http.post(path, json=body)
    act.status, act.body = response.status_code, response.json()
    return act


async def _as_creator(
    http: httpx.AsyncClient, creator: dict, path: str, body: dict, expect: int
) -> dict:
    response = await http.post(
        path, json=body, headers={"Authorization": f"Bearer {creator['token']}"}
    )
    assert response.status_code == expect, response.text
    return response.json()


async def _invite(http: httpx.AsyncClient, owner: dict, guest: dict, session: str) -> None:
    """Invites a co-host, who joins accepting the split the invitation shows."""
    path = f"/v1/sessions/{session}"
    invited = await _as_creator(http, owner, f"{path}/cohosts", {"creator_id": guest["id"]}, 201)
    await _as_creator(http, guest, f"{path}/join", {"accept_split": invited["split"]}, 200)


async def _bank_sessions(http: httpx.AsyncClient, creators: list[dict]) -> list[str]:
    """A solo live, two multi-host lives (one with weights) and an ended one."""
    c0, c1, c2, c3 = creators
    solo = (await _as_creator(http, c0, "/v1/sessions", {}, 201))["session_id"]
    pair = (await _as_creator(http, c1, "/v1/sessions", {"quality": "1080p"}, 201))["session_id"]
    await _invite(http, c1, c2, pair)
    weighted = (await _as_creator(http, c3, "/v1/sessions", {}, 201))["session_id"]
    await _invite(http, c3, c0, weighted)
    split = {"weights": {c3["id"]: 3, c0["id"]: 1}}
    response = await http.put(
        f"/v1/sessions/{weighted}/split",
        json=split,
        headers={"Authorization": f"Bearer {c3['token']}"},
    )
    assert response.status_code == 200, response.text
    ended = (await _as_creator(http, c2, "/v1/sessions", {}, 201))["session_id"]
    await _as_creator(http, c2, f"/v1/sessions/{ended}/end", {}, 200)
    return [solo, pair, weighted, ended]


def _interleave(fresh: list[Ask], repeated: list[Ask], copies: int) -> list[Ask]:
    """Fresh asks with, every few, one repeated ask `copies` times side by side (concurrent)."""
    mixed: list[Ask] = []
    waiting = list(repeated)
    for i, ask in enumerate(fresh):
        mixed.append(ask)
        if i % 8 == 0 and waiting:
            mixed += [waiting.pop()] * copies
    return mixed + [a for a in waiting for _ in range(copies)]


def _gift_asks(rng: random.Random, run: BankRun) -> tuple[list[Ask], list[Ask]]:
    """(fresh asks, asks whose key is sent by several clients at once and retried later)."""
    users = list(run.users)
    live, ended = run.sessions[:3], run.sessions[3]

    def ask() -> Ask:
        session = ended if rng.random() < 0.04 else rng.choice(live)
        roll = rng.random()
        if roll < 0.02:
            coins = rng.choice([0, -5, 1_000_001])  # out of range: refused by the ledger
        elif roll < 0.25:
            coins = rng.randint(300, 3_000)  # often more than the wallet holds
        else:
            coins = rng.randint(1, 120)
        path = f"/v1/sessions/{session}/gifts"
        return Ask(rng.choice(users), path, (("coins", coins),), uuid.uuid4().hex)

    return [ask() for _ in range(480)], [ask() for _ in range(60)]


def _unique(answers: list[Answer], status: int, id_field: str) -> list[dict[str, Any]]:
    """The bodies of the answers of a status, once per id (a replayed answer is the same),
    with who asked (`payer`)."""
    found: dict[str, dict[str, Any]] = {}
    for a in answers:
        if a.status == status:
            found.setdefault(a.body[id_field], a.body | {"payer": a.ask.user})
    return list(found.values())


async def _bank_run(url: str, rng: random.Random) -> BankRun:
    limits = httpx.Limits(max_connections=IN_FLIGHT + 8, max_keepalive_connections=IN_FLIGHT + 8)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        accounts = [
            (await http.post("/v1/accounts", json={"kind": k, **new_credentials(k)})).json()
            for k in ["creator"] * 4 + ["user"] * 20
        ]
        creators, users = accounts[:4], {a["id"]: a for a in accounts[4:]}
        run = BankRun(users, creators, await _bank_sessions(http, creators))
        gate, flight = asyncio.Semaphore(IN_FLIGHT), Flight()
        seller = creators[1]  # the owner of the two-host live

        async def send_all(asks: list[Ask]) -> list[Answer]:
            return await asyncio.gather(*(_send(http, gate, flight, run, a) for a in asks))

        async def act_all(acts: list[Act]) -> list[Act]:
            return await asyncio.gather(*(_act(http, gate, flight, a, seller) for a in acts))

        buys = [
            Ask(
                u,
                "/v1/wallet/purchases",
                (
                    ("coins", rng.choice([70, 350, 700])),
                    ("channel", rng.choice(["web", "ios", "android"])),
                ),
                uuid.uuid4().hex,
            )
            for u in users
            for _ in range(rng.randint(1, 3))
        ]
        doubled_buys = [b for b in buys[:6] for _ in range(3)]  # the same purchase, three times
        run.purchases = await send_all(doubled_buys + buys[6:])
        # The payers pay: one in nine declines; the first six confirm twice at once.
        pending = _unique(run.purchases, 202, "payment_id")
        acts = [Act(p, "decline" if n % 9 == 4 else "confirm") for n, p in enumerate(pending)]
        run.payments = await act_all(acts + [Act(a.subject, a.action) for a in acts[:6]])
        # Orders of the seller's product in their live, paid; half refunded, a third of those
        # by two refund requests at once.
        product = await _as_creator(
            http, seller, "/v1/products", {"name": "print", "price_minor": 1_500}, 201
        )
        order = (("product_id", product["product_id"]), ("quantity", 2), ("session_id", None))
        live_order = order[:2] + (("session_id", run.sessions[1]),)
        run.orders = await send_all(
            [Ask(u, "/v1/orders", live_order if n % 2 else order, uuid.uuid4().hex)
             for n, u in enumerate(list(users)[:12])]
        )  # fmt: skip
        paying = [Act(p, "confirm") for p in _unique(run.orders, 202, "payment_id")]
        run.payments += await act_all(paying)
        refunding = [Act(p.subject, "refund") for p in paying[::2]]
        run.refunds = await act_all(refunding + [Act(a.subject, "refund") for a in refunding[:2]])
        fresh, repeated = _gift_asks(rng, run)
        run.gifts = await send_all(_interleave(fresh, repeated, copies=4))
        run.gifts += await send_all([a for a in repeated for _ in range(2)])  # retried later
        changed = [
            Ask(a.user, a.path, (("coins", dict(a.body)["coins"] + 1),), a.key)
            for a in repeated[:10]
        ]
        run.reused = await send_all(changed)
        # Five buyers dispute a confirmed purchase each, sent twice at once. The coins still
        # in their wallets now are what the disputes can take back.
        disputed: dict[str, dict] = {}
        for act in run.payments:
            confirmed = act.applied and act.action == "confirm"
            if confirmed and "purchase_id" in act.subject and len(disputed) < 5:
                disputed.setdefault(act.subject["payer"], act.subject)
        for user in disputed:
            me = await http.get(
                "/v1/me", headers={"Authorization": f"Bearer {users[user]['token']}"}
            )
            run.coins_before_disputes[user] = me.json()["coins"]
        disputes = [Act(s, "dispute") for s in disputed.values()]
        run.disputes = await act_all(disputes + [Act(a.subject, "dispute") for a in disputes])
        run.peak_in_flight = flight.peak
    return run


def test_bank_ledger_holds_under_concurrent_gifts(tmp_path: Path):
    server = RuntimeProcess(tmp_path / "bank").start()
    try:
        started = time.monotonic()
        run = asyncio.run(_bank_run(server.url, random.Random(7)))
        elapsed = time.monotonic() - started
        server.stop()
    finally:
        server.kill()
    assert run.peak_in_flight >= 16, f"only {run.peak_in_flight} requests were ever in flight"
    assert elapsed < 60

    # Every answer to one key is the same answer.
    for answers in (run.purchases, run.orders, run.gifts):
        by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
        for a in answers:
            by_key[(a.ask.user, a.ask.key)].add(repr((a.status, sorted(a.body.items()))))
        assert [k for k, seen in by_key.items() if len(seen) > 1] == []
        firsts = [a for a in answers if not a.replayed]
        assert len(firsts) == len(by_key), "exactly one answer per key is not a replay"
    assert {a.status for a in run.purchases + run.orders} == {202}  # pending payments
    assert {a.status for a in run.reused} == {422}
    assert {a.body["error"] for a in run.reused} == {"idempotency_key_reused"}
    statuses = Counter(a.status for a in run.gifts)
    assert statuses[201] and statuses[402] and statuses[409] and statuses[422], statuses

    # Each payment was settled once: one action applied; the same action sent again at once
    # was refused by the payment's state (409) or had no effect.
    acts: dict[tuple[str, str], list[Act]] = defaultdict(list)
    for act in run.payments + run.disputes:
        acts[(act.subject["payment_id"], act.action)].append(act)
    for (payment_id, action), same in acts.items():
        assert sum(a.applied for a in same) == 1, (payment_id, action, [a.body for a in same])
        for a in same:
            assert (
                a.applied
                or (a.status, a.body.get("error")) == (409, "invalid_state")
                or (a.status == 200 and a.body["notification"]["outcome"] == "no_effect")
            ), a.body
    refund_statuses: dict[str, list[int]] = defaultdict(list)
    for act in run.refunds:
        refund_statuses[act.subject["order_id"]].append(act.status)
    for order_id, got in refund_statuses.items():  # a second refund at once: 409, or told so
        assert 200 in got and set(got) <= {200, 409}, (order_id, got)

    # Money conserved, and each key and each payment moved money at most once.
    assert_books_balance(server.db)
    assert_payments_match_movements(server.db)
    moved = movements(server.db)
    applied = [a for a in run.payments if a.applied]
    bought = {a.subject["purchase_id"]: a.subject for a in applied if a.action == "confirm"
              and "purchase_id" in a.subject}  # fmt: skip
    ordered = {a.subject["order_id"]: a.subject for a in applied if "order_id" in a.subject}
    declined = {a.subject["payment_id"] for a in applied if a.action == "decline"}
    disputed = {a.subject["payer"]: a.subject for a in run.disputes if a.applied}
    sent = {a.body["gift_id"]: a for a in run.gifts if a.status == 201}
    assert declined and len(disputed) == 5 and len(refund_statuses) == 6
    assert moved["purchase"] == set(bought) and moved["gift"] == set(sent)
    assert moved["order"] == set(ordered) and len(ordered) == 12
    assert len(moved["refund"]) == len(refund_statuses) and len(moved["coin_refund"]) == 5
    assert len({(a.ask.user, a.ask.key) for a in sent.values()}) == len(sent)
    for payment_id in declined:
        assert payment_status(server.db, payment_id) == "failed"
    with read_only(server.db) as conn:
        rows = conn.execute("SELECT principal_id, idempotency_key, response FROM idempotency")
        stored = {(p, k): json.loads(r) for p, k, r in rows}
    answered = {(a.ask.user, a.ask.key): a.body for a in run.purchases + run.orders + run.gifts}
    assert stored == answered, "one stored answer per key, the one every client got"

    # Each wallet holds what was bought less what was gifted and what a dispute took back;
    # each creator what the splits and the orders said, less the refunded orders' net.
    expected: Counter[str] = Counter()
    for s in bought.values():
        expected[s["payer"]] += s["coins"]
    for a in sent.values():
        expected[a.ask.user] -= a.body["coins"]
        for split in a.body["splits"]:
            expected[split["creator_id"]] += split["share_minor"]
    assert {u: expected[u] for u in disputed} == run.coins_before_disputes
    taken = {u: min(run.coins_before_disputes[u], s["coins"]) for u, s in disputed.items()}
    expected.subtract(taken)
    for s in ordered.values():
        expected[s["creator_id"]] += s["creator_net_minor"]
    for order_id in refund_statuses:
        expected[ordered[order_id]["creator_id"]] -= ordered[order_id]["creator_net_minor"]
    held, earned = balances(server.db), creator_totals(server.db)
    for user in run.users:
        assert held[f"wallet:{user}"] == expected[user], user
    for creator in run.creators:
        assert earned[creator["id"]] == expected[creator["id"]], creator["id"]

    # Telemetry: one event per movement, one gift_failed per refused key (out-of-range coins
    # are bad input, not a failed gift), each line written once.
    events = assert_relayed_exactly_once(server.db, server.telemetry)
    assert_money_events_match_movements(server.db, events)
    refused_keys = {(a.ask.user, a.ask.key) for a in run.gifts if a.status in (402, 409)}
    failed = [e for e in events if e["event_type"] == "gift_failed"]
    assert len(failed) == len(refused_keys)
    reversals = [e for e in events if e["event_type"] == "coins_refunded"]
    assert {e["user_id"]: (e["coins_taken_back"], e["reason"]) for e in reversals} == {
        u: (n, "dispute") for u, n in taken.items()
    }
    refunds = [e for e in events if e["event_type"] == "order_refunded"]
    assert {e["order_id"]: e["reason"] for e in refunds} == dict.fromkeys(refund_statuses, "refund")
    print(
        f"bank: {len(run.purchases) + len(run.gifts) + len(run.reused)} keyed requests and "
        f"{len(run.payments) + len(run.refunds) + len(run.disputes)} payment actions in "
        f"{elapsed:.1f}s, peak {run.peak_in_flight} in flight, gift statuses {dict(statuses)}"
    )


# The crash test ---------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One request of the load; `status` None means no answer came (in flight at the kill)."""

    action: str
    who: dict
    path: str
    body: dict[str, Any]
    key: str | None
    pending: dict[str, Any] | None = None  # the payment a sandbox action is about
    status: int | None = None
    answer: dict[str, Any] | None = None
    retried: tuple[int, dict[str, Any]] | None = None  # the answer to the same ask after restart


@dataclass
class Crowd:
    """What the load's clients know of the world; shared by their threads."""

    users: list[dict]
    creators: list[dict]
    products: dict[str, list[str]]  # seller id -> product ids
    sessions: dict[str, str]  # live session id -> owner id
    unpaid: list[dict] = field(default_factory=list)  # pending payments, with kind and payer
    paid: list[tuple[str, dict]] = field(default_factory=list)  # (order id, seller)
    bought: list[dict] = field(default_factory=list)  # confirmed coin purchases
    attempts: list[Attempt] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # a client that broke, and why
    lock: threading.Lock = field(default_factory=threading.Lock)


# Unkeyed requests that are safe to send again after a kill: each is refused (409) once the
# payment or order is in the state it leads to.
RETRIED_UNKEYED = {"confirm", "decline", "dispute", "refund"}


def _crowd(api: Api, rng: random.Random) -> Crowd:
    creators = [api.account("creator") for _ in range(3)]
    users = [api.account("user") for _ in range(10)]
    products: dict[str, list[str]] = {}
    for creator in creators:
        made = api.call(
            "POST",
            "/v1/products",
            who=creator,
            json={"name": "print", "price_minor": rng.choice([900, 2500, 4000])},
        )
        assert made.status_code == 201, made.text
        products[creator["id"]] = [made.json()["product_id"]]
    sessions = {}
    for creator in creators:
        started = api.call("POST", "/v1/sessions", who=creator, json={})
        assert started.status_code == 201, started.text
        sessions[started.json()["session_id"]] = creator["id"]
    pair = next(iter(sessions))
    owner, guest = creators[0], creators[1]
    invited = api.call(
        "POST", f"/v1/sessions/{pair}/cohosts", who=owner, json={"creator_id": guest["id"]}
    )
    assert invited.status_code == 201, invited.text
    accept = {"accept_split": invited.json()["split"]}
    joined = api.call("POST", f"/v1/sessions/{pair}/join", who=guest, json=accept)
    assert joined.status_code == 200, joined.text
    for user in users:
        api.buy(user, 1400)  # asked for, then confirmed at the sandbox provider
    return Crowd(users, creators, products, sessions)


def _sandbox(action: str, pending: dict[str, Any]) -> Attempt:
    """The payer's action at the sandbox provider, with the payment's client secret."""
    path = SANDBOX.format(pending["payment_id"], action)
    body = {"client_secret": pending["client_secret"]}
    return Attempt(action, pending["payer"], path, body, None, pending=pending)


def _next_attempt(crowd: Crowd, rng: random.Random) -> Attempt:
    """A random request of the mix; ids come from what the clients have seen so far."""
    key = uuid.uuid4().hex
    roll = rng.random()
    with crowd.lock:
        live = list(crowd.sessions.items())
        if roll < 0.22 and crowd.unpaid:  # a payer pays (or their card is declined)
            pending = crowd.unpaid.pop(rng.randrange(len(crowd.unpaid)))
            return _sandbox("decline" if rng.random() < 0.1 else "confirm", pending)
        if roll < 0.27 and crowd.paid:
            order_id, seller = crowd.paid.pop(rng.randrange(len(crowd.paid)))
            return Attempt("refund", seller, f"/v1/orders/{order_id}/refund", {}, None)
        if roll < 0.29 and crowd.bought:  # a buyer disputes a coin purchase with their bank
            return _sandbox("dispute", crowd.bought.pop(rng.randrange(len(crowd.bought))))
        if roll < 0.33 and len(live) > 2:
            session_id, owner = live[rng.randrange(1, len(live))]  # the multi-host one stays
            del crowd.sessions[session_id]
            creator = next(c for c in crowd.creators if c["id"] == owner)
            return Attempt("end", creator, f"/v1/sessions/{session_id}/end", {}, None)
    if roll < 0.37:
        return Attempt("start", rng.choice(crowd.creators), "/v1/sessions", {"record": True}, None)
    if roll < 0.41:
        return Attempt("payout", rng.choice(crowd.creators), "/v1/payouts", {}, key)
    if roll < 0.55:
        body = {
            "coins": rng.choice([70, 350, 700]),
            "channel": rng.choice(["web", "ios", "android"]),
        }
        return Attempt("purchase", rng.choice(crowd.users), "/v1/wallet/purchases", body, key)
    if roll < 0.70:
        seller = rng.choice(crowd.creators)["id"]
        in_live = [s for s, owner in live if owner == seller]
        body = {
            "product_id": crowd.products[seller][0],
            "quantity": rng.randint(1, 3),
            "session_id": rng.choice(in_live) if in_live and rng.random() < 0.7 else None,
        }
        return Attempt("order", rng.choice(crowd.users), "/v1/orders", body, key)
    session_id = rng.choice(live)[0] if live else "s_none"
    body = {"coins": rng.randint(1, 300)}
    return Attempt("gift", rng.choice(crowd.users), f"/v1/sessions/{session_id}/gifts", body, key)


def _request(http: httpx.Client, attempt: Attempt) -> httpx.Response:
    headers = {}
    if attempt.pending is None:  # the sandbox provider takes the client secret, no token
        headers["Authorization"] = f"Bearer {attempt.who['token']}"
    if attempt.key is not None:
        headers["Idempotency-Key"] = attempt.key
    return http.post(attempt.path, json=attempt.body, headers=headers)


def _applied(attempt: Attempt, status: int | None, answer: dict[str, Any] | None) -> bool:
    """A sandbox action the runtime applied (not one that found it already done)."""
    return (
        attempt.pending is not None
        and status == 200
        and answer is not None
        and answer["notification"]["outcome"] == "applied"
    )


def _learn(crowd: Crowd, attempt: Attempt) -> None:
    if attempt.status is None or attempt.status >= 300:
        return
    with crowd.lock:
        if attempt.action in ("purchase", "order"):  # a pending payment, to pay
            pending = dict(attempt.answer, kind=attempt.action, payer=attempt.who)
            crowd.unpaid.append(pending)
        elif attempt.action == "confirm" and _applied(attempt, attempt.status, attempt.answer):
            pending = attempt.pending
            if pending["kind"] == "order":
                seller = next(c for c in crowd.creators if c["id"] == pending["creator_id"])
                crowd.paid.append((pending["order_id"], seller))
            else:
                crowd.bought.append(pending)
        elif attempt.action == "start":
            crowd.sessions[attempt.answer["session_id"]] = attempt.who["id"]


def _load_client(url: str, crowd: Crowd, seed: int, stop: threading.Event) -> None:
    """Sends requests until told to stop or until the server stops answering."""
    rng = random.Random(seed)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                attempt = _next_attempt(crowd, rng)
                with crowd.lock:
                    crowd.attempts.append(attempt)
                try:
                    response = _request(http, attempt)
                except httpx.TransportError:
                    return  # the server is gone: this attempt stays unanswered
                attempt.status = response.status_code
                attempt.answer = _json(response)
                _learn(crowd, attempt)
    except Exception as exc:  # reported by the test: a silent dead client would weaken it
        crowd.failures.append(f"{type(exc).__name__}: {exc}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        return response.json()
    except ValueError:
        return {"error": "not_json", "message": response.text[:200]}


def _told(crowd: Crowd) -> dict[str, set[str]]:
    """What the clients were told happened, from first answers and retries: movement ids of
    the purchases and orders whose payment was confirmed, of gifts and payouts; the orders
    refunded, and the payments declined or disputed."""
    told: dict[str, set[str]] = defaultdict(set)
    for attempt in crowd.attempts:
        for status, answer in [(attempt.status, attempt.answer), attempt.retried or (None, None)]:
            if status is None or not 200 <= status < 300:
                continue
            if attempt.action in ("gift", "payout"):
                told[attempt.action].add(answer[f"{attempt.action}_id"])
            elif attempt.action == "refund":
                told["refunded orders"].add(answer["order_id"])
            elif _applied(attempt, status, answer):
                pending = attempt.pending
                if attempt.action == "confirm":
                    told[pending["kind"]].add(pending[f"{pending['kind']}_id"])
                else:
                    told[f"{attempt.action}d payments"].add(pending["payment_id"])
    return told


def _retry_unanswered(url: str, crowd: Crowd) -> int:
    """Sends every unanswered keyed request again with its key, and every unanswered payment
    action and refund again as it was; pays what a retried purchase or order answers. Returns
    how many requests were retried."""
    retried = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for attempt in list(crowd.attempts):
            if attempt.status is not None:
                continue
            if attempt.key is None and attempt.action not in RETRIED_UNKEYED:
                continue  # starting or ending a session is not retried
            response = _request(http, attempt)
            attempt.retried = (response.status_code, _json(response))
            retried += 1
            if attempt.action in ("purchase", "order") and response.status_code == 202:
                paying = _sandbox(
                    "confirm", dict(response.json(), kind=attempt.action, payer=attempt.who)
                )
                answer = _request(http, paying)
                paying.status, paying.answer = answer.status_code, _json(answer)
                crowd.attempts.append(paying)
    return retried


def _relay_state(db: Path, telemetry: Path) -> tuple[int, int]:
    """(rows not marked relayed, how many of them a file in open/ already holds) after a kill."""
    with read_only(db) as conn:
        pending = {r[0] for r in conn.execute("SELECT event_id FROM outbox WHERE relayed = 0")}
    written = set()
    for path in telemetry_files(telemetry, ("open",)):
        data = path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]  # the relay's recovery drops a torn last line
        written |= {json.loads(line)["event_id"] for line in whole.splitlines()}
    return len(pending), len(pending & written)


@dataclass
class Trial:
    """One crash trial: the load's record and what the ledger and relay held at the kill."""

    crowd: Crowd
    db: Path
    telemetry: Path
    killed_after: float  # seconds of load
    left_live: set[str]  # sessions the clients still saw live at the kill
    pending_at_kill: int  # committed rows not yet marked relayed
    written_unmarked: int  # of those, rows the open file already held
    retried: int = 0

    def summary(self, events: int) -> str:
        unanswered = sum(1 for a in self.crowd.attempts if a.status is None)
        answered = Counter(a.action for a in self.crowd.attempts if 200 <= (a.status or 0) < 300)
        return (
            f"killed after {self.killed_after:.2f}s and {len(self.crowd.attempts)} requests, "
            f"{unanswered} unanswered, {self.retried} retried; {self.pending_at_kill} rows "
            f"unrelayed at the kill, {self.written_unmarked} of them already in the open file; "
            f"{events} events; answered 2xx: {dict(sorted(answered.items()))}"
        )


def _wait_for_answers(crowd: Crowd, count: int, timeout: float = 60.0) -> None:
    """Waits until the load has `count` answers: a kill point that holds on a slow machine.

    Stops waiting early if a client broke (the test reports `crowd.failures`).
    """

    def answered() -> bool:
        with crowd.lock:
            done = sum(1 for a in crowd.attempts if a.status is not None)
        return done >= count or bool(crowd.failures)

    wait_for(answered, f"{count} answered requests before the kill", timeout, every=0.005)


def _crash_trial(root: Path, trial: int) -> Trial:
    """Load, kill -9 at a random point, restart on the same files, retry, stop gracefully."""
    rng = random.Random(1_000 + trial)
    kill_at = rng.randint(30, 600)  # answered requests before the kill
    args = ["--no-group-commit"] if trial % 2 else []
    server = RuntimeProcess(root, args).start()
    stop = threading.Event()
    try:
        crowd = _crowd(Api(server.url), rng)
        clients = [
            threading.Thread(
                target=_load_client, args=(server.url, crowd, rng.random(), stop), daemon=True
            )
            for _ in range(LOAD_THREADS)
        ]
        began = time.monotonic()
        for client in clients:
            client.start()
        _wait_for_answers(crowd, kill_at)
        # Not a wait for anything: a random delay, so the kill lands anywhere within a request
        # rather than just after an answer.
        time.sleep(rng.uniform(0, 0.05))
        server.kill()
        killed_after = time.monotonic() - began
        stop.set()
        for client in clients:
            client.join(timeout=30)
        result = Trial(
            crowd,
            server.db,
            server.telemetry,
            killed_after,
            set(crowd.sessions),
            *_relay_state(server.db, server.telemetry),
        )
        server = RuntimeProcess(root, args).start()  # same ledger and telemetry, new port
        result.retried = _retry_unanswered(server.url, crowd)
        wait_relayed(server.db)
        server.stop()
    finally:
        stop.set()
        server.kill()
    return result


@pytest.mark.parametrize("trial", range(CRASH_TRIALS))
def test_kill_9_loses_and_doubles_nothing(tmp_path: Path, trial: int):
    result = _crash_trial(tmp_path / "crash", trial)
    crowd, db = result.crowd, result.db
    assert crowd.failures == []
    server_errors = [
        (a.action, a.status, a.answer) for a in crowd.attempts if (a.status or 0) >= 500
    ]
    assert server_errors == [], f"the server failed requests: {server_errors[:3]}"
    assert sum(1 for a in crowd.attempts if a.status is not None) >= 30, "no load before the kill"

    assert_books_balance(db)
    events = assert_relayed_exactly_once(db, result.telemetry)
    assert_money_events_match_movements(db, events)
    assert_payments_match_movements(db)  # each confirmed payment moved money once

    # What a client was told succeeded is in the ledger.
    moved = movements(db)
    told = _told(crowd)
    for kind in ("purchase", "order", "gift", "payout"):
        missing = told[kind] - moved[kind]
        assert not missing, f"{kind}: answered 2xx but not in the ledger: {missing}"
    with read_only(db) as conn:
        status_of = dict(conn.execute("SELECT id, status FROM payments"))
        refunded = {r[0] for r in conn.execute("SELECT id FROM orders WHERE status = 'refunded'")}
    assert told["refunded orders"] <= refunded
    assert {status_of[p] for p in told["declined payments"]} <= {"failed"}
    assert {status_of[p] for p in told["disputed payments"]} <= {"disputed"}

    # Every movement made under a key is the one answer stored for that key. A purchase or an
    # order is a pending payment under its key; it moved money if its payment was confirmed.
    with read_only(db) as conn:
        stored = conn.execute("SELECT status, response FROM idempotency").fetchall()
    named: dict[str, Counter[str]] = {k: Counter() for k in ("purchase", "order", "gift", "payout")}
    for status, response in stored:
        body = json.loads(response)
        for kind, ids in named.items():
            if 200 <= status < 300 and f"{kind}_id" in body:
                ids[body[f"{kind}_id"]] += 1
    assert all(n == 1 for ids in named.values() for n in ids.values())
    assert set(named["gift"]) == moved["gift"] and set(named["payout"]) == moved["payout"]
    assert moved["purchase"] <= set(named["purchase"]) and moved["order"] <= set(named["order"])

    # Every session that started ended exactly once; those left live by the kill as an error.
    started = Counter(e["session_id"] for e in events if e["event_type"] == "session_started")
    ended = Counter(e["session_id"] for e in events if e["event_type"] == "session_ended")
    assert started == ended and set(ended.values()) == {1}
    reasons = {e["session_id"]: e["reason"] for e in events if e["event_type"] == "session_ended"}
    assert {reasons[s] for s in result.left_live} == {"error"}
    print(f"trial {trial}: {result.summary(len(events))}")


# The provider's retry after a kill ----------------------------------------------------------------


def _signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Signed with the secret the server was started with."""
    return signed(event, WEBHOOK_SECRET)


def _send_unread(url: str, path: str, body: bytes, headers: dict[str, str]) -> socket.socket:
    """Sends a whole POST and reads nothing: the provider never hears the answer."""
    where = urlsplit(url)
    conn = socket.create_connection((where.hostname, where.port), timeout=10)
    head = [f"POST {path} HTTP/1.1", f"Host: {where.netloc}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    conn.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + body)
    return conn


def test_a_confirmation_cut_by_kill_9_credits_once_when_the_provider_retries(tmp_path: Path):
    """The provider's `payment_intent.succeeded` is sent and the server killed before it can
    answer: once just after the ledger committed it, once at once. After each restart the
    provider delivers the same signed notification again (Stripe retries what got no 2xx):
    the coins are credited exactly once either way."""
    root = tmp_path / "confirm"

    def start() -> tuple[RuntimeProcess, Api]:
        server = RuntimeProcess(root)
        server.env["CREATOR_ECON_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        server.start()
        return server, Api(server.url)

    server, api = start()
    db = server.db  # the same ledger across restarts
    try:
        user = api.account("user")
        outcomes: dict[str, str] = {}
        purchases = []
        for case in ("after the commit", "at once"):
            pending = api.call(
                "POST", "/v1/wallet/purchases", user, uuid.uuid4().hex,
                json={"coins": 350, "channel": "web"},
            )  # fmt: skip
            assert pending.status_code == 202, pending.text
            payment = pending.json()
            purchases.append(payment["purchase_id"])
            intent = {"id": payment["payment_id"], "object": "payment_intent",
                      "amount": payment["amount_minor"], "currency": "usd"}  # fmt: skip
            event = {"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded",
                     "data": {"object": intent}}  # fmt: skip
            body, headers = _signed(event)
            cut = _send_unread(server.url, WEBHOOK, body, headers)
            if case == "after the commit":
                paid = payment["payment_id"]
                wait_for(lambda p=paid: payment_status(db, p) == "succeeded", "the commit")
            server.kill()
            cut.close()
            api.http.close()
            server, api = start()
            retried = api.http.post(WEBHOOK, content=body, headers=headers)  # the same bytes
            assert retried.status_code == 200, retried.text
            outcomes[case] = retried.json()["outcome"]
            if case == "after the commit":
                assert retried.json() == {
                    "event_id": event["id"], "outcome": "replayed", "first_outcome": "applied"
                }  # fmt: skip
            else:  # applied now, unless the kill came after the commit after all
                assert outcomes[case] in ("applied", "replayed"), retried.json()
            again = api.http.post(WEBHOOK, content=body, headers=headers)
            assert again.json()["outcome"] == "replayed"
            assert payment_status(server.db, payment["payment_id"]) == "succeeded"
            assert api.call("GET", "/v1/me", user).json()["coins"] == 350 * len(purchases)
        api.http.close()
        wait_relayed(server.db)
        server.stop()
    finally:
        server.kill()
    assert_books_balance(server.db)
    assert_payments_match_movements(server.db)
    events = assert_relayed_exactly_once(server.db, server.telemetry)
    assert_money_events_match_movements(server.db, events)
    bought = Counter(e["purchase_id"] for e in events if e["event_type"] == "coins_purchased")
    assert bought == Counter(purchases)  # each once
    with read_only(server.db) as conn:
        (delivered,) = conn.execute("SELECT count(*) FROM webhook_events").fetchone()
    assert delivered == 2  # one row per event id, however often it was delivered
    print(f"provider retries after kill -9: {outcomes}")
