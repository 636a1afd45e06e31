"""The runtime under concurrent load and under kill -9, checked from its ledger and its files.

A bank test: many clients send gifts at once, most with fresh idempotency keys, some with the
same key from several clients at once, many for more coins than the wallet holds. The ledger
must still balance to zero per unit, move money at most once per key, and leave every user
with exactly what the responses said.

A crash test: a mixed load (purchases, gifts, orders, refunds, payouts, sessions) is running
when the server is killed with SIGKILL. After a restart on the same files, every committed
movement has exactly one telemetry event, every outbox row is in exactly one file line, and
every request the client was told succeeded is in the ledger.

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

import httpx
import pytest
from runtime_server import Api, RuntimeProcess, new_credentials, wait_for
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
# Refunds are matched through the outbox: order_refunded carries the order, not the refund.
REFUND_EVENT = "order_refunded"


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
    """Each committed movement has exactly one money event, and each money event a movement."""
    moved = movements(db)
    for kind, (event_type, id_field) in MONEY_EVENTS.items():
        told = Counter(e[id_field] for e in events if e["event_type"] == event_type)
        doubled = [i for i, n in told.items() if n > 1]
        assert doubled == [], f"{event_type} more than once for {doubled[:3]}"
        assert told.keys() - moved[kind] == set(), f"{event_type} without a {kind} movement"
        assert moved[kind] - told.keys() == set(), f"{kind} movements without {event_type}"
    with read_only(db) as conn:
        refund_of_event = dict(
            conn.execute(
                "SELECT event_id, movement_id FROM outbox WHERE event_type = ?", (REFUND_EVENT,)
            )
        )
        refunded_orders = {
            r[0] for r in conn.execute("SELECT id FROM orders WHERE status = 'refunded'")
        }
        dangling = conn.execute(
            "SELECT o.event_id FROM outbox o WHERE o.movement_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM movements m WHERE m.id = o.movement_id)"
        ).fetchall()
    assert dangling == [], f"outbox events for movements not in the ledger: {dangling[:3]}"
    refunds = [e for e in events if e["event_type"] == REFUND_EVENT]
    by_refund = Counter(refund_of_event[e["event_id"]] for e in refunds)
    assert [i for i, n in by_refund.items() if n > 1] == []
    assert set(by_refund) == moved["refund"]
    by_order = Counter(e["order_id"] for e in refunds)
    assert [i for i, n in by_order.items() if n > 1] == [], "an order refunded twice"
    assert set(by_order) == refunded_orders


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
class BankRun:
    users: dict[str, dict]
    creators: list[dict]
    sessions: list[str]
    purchases: list[Answer] = field(default_factory=list)
    gifts: list[Answer] = field(default_factory=list)
    reused: list[Answer] = field(default_factory=list)  # same key, different body
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


async def _as_creator(
    http: httpx.AsyncClient, creator: dict, path: str, body: dict, expect: int
) -> dict:
    response = await http.post(
        path, json=body, headers={"Authorization": f"Bearer {creator['token']}"}
    )
    assert response.status_code == expect, response.text
    return response.json()


async def _bank_sessions(http: httpx.AsyncClient, creators: list[dict]) -> list[str]:
    """A solo live, two multi-host lives (one with weights) and an ended one."""
    c0, c1, c2, c3 = creators
    solo = (await _as_creator(http, c0, "/v1/sessions", {}, 201))["session_id"]
    pair = (await _as_creator(http, c1, "/v1/sessions", {"quality": "1080p"}, 201))["session_id"]
    await _as_creator(http, c1, f"/v1/sessions/{pair}/cohosts", {"creator_id": c2["id"]}, 201)
    await _as_creator(http, c2, f"/v1/sessions/{pair}/join", {}, 200)
    weighted = (await _as_creator(http, c3, "/v1/sessions", {}, 201))["session_id"]
    await _as_creator(http, c3, f"/v1/sessions/{weighted}/cohosts", {"creator_id": c0["id"]}, 201)
    await _as_creator(http, c0, f"/v1/sessions/{weighted}/join", {}, 200)
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

        async def send_all(asks: list[Ask]) -> list[Answer]:
            return await asyncio.gather(*(_send(http, gate, flight, run, a) for a in asks))

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
        fresh, repeated = _gift_asks(rng, run)
        run.gifts = await send_all(_interleave(fresh, repeated, copies=4))
        run.gifts += await send_all([a for a in repeated for _ in range(2)])  # retried later
        changed = [
            Ask(a.user, a.path, (("coins", dict(a.body)["coins"] + 1),), a.key)
            for a in repeated[:10]
        ]
        run.reused = await send_all(changed)
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
    for answers in (run.purchases, run.gifts):
        by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
        for a in answers:
            by_key[(a.ask.user, a.ask.key)].add(repr((a.status, sorted(a.body.items()))))
        assert [k for k, seen in by_key.items() if len(seen) > 1] == []
        firsts = [a for a in answers if not a.replayed]
        assert len(firsts) == len(by_key), "exactly one answer per key is not a replay"
    assert {a.status for a in run.reused} == {422}
    assert {a.body["error"] for a in run.reused} == {"idempotency_key_reused"}
    statuses = Counter(a.status for a in run.gifts)
    assert statuses[201] and statuses[402] and statuses[409] and statuses[422], statuses

    # Money conserved, and each key moved money at most once.
    assert_books_balance(server.db)
    moved = movements(server.db)
    bought = {a.body["purchase_id"]: a for a in run.purchases if a.status == 201}
    sent = {a.body["gift_id"]: a for a in run.gifts if a.status == 201}
    assert moved["purchase"] == set(bought) and moved["gift"] == set(sent)
    assert len({(a.ask.user, a.ask.key) for a in sent.values()}) == len(sent)
    with read_only(server.db) as conn:
        rows = conn.execute("SELECT principal_id, idempotency_key, response FROM idempotency")
        stored = {(p, k): json.loads(r) for p, k, r in rows}
    answered = {(a.ask.user, a.ask.key): a.body for a in run.purchases + run.gifts}
    assert stored == answered, "one stored answer per key, the one every client got"

    # Each wallet holds what was bought less what was gifted; each creator what the splits said.
    expected: Counter[str] = Counter()
    for a in bought.values():
        expected[f"wallet:{a.ask.user}"] += a.body["coins"]
    for a in sent.values():
        expected[f"wallet:{a.ask.user}"] -= a.body["coins"]
        for split in a.body["splits"]:
            expected[f"creator:{split['creator_id']}"] += split["share_minor"]
    held = balances(server.db)
    for account in [f"wallet:{u}" for u in run.users] + [
        f"creator:{c['id']}" for c in run.creators
    ]:
        assert held[account] == expected[account], account

    # Telemetry: one event per gift, one gift_failed per refused key, each line written once.
    events = assert_relayed_exactly_once(server.db, server.telemetry)
    assert_money_events_match_movements(server.db, events)
    refused_keys = {(a.ask.user, a.ask.key) for a in run.gifts if a.status in (402, 409, 422)}
    failed = [e for e in events if e["event_type"] == "gift_failed"]
    assert len(failed) == len(refused_keys)
    print(
        f"bank: {len(run.purchases) + len(run.gifts) + len(run.reused)} requests in "
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
    status: int | None = None
    answer: dict[str, Any] | None = None
    retried: tuple[int, dict[str, Any]] | None = None  # the answer to the same key after restart


@dataclass
class Crowd:
    """What the load's clients know of the world; shared by their threads."""

    users: list[dict]
    creators: list[dict]
    products: dict[str, list[str]]  # seller id -> product ids
    sessions: dict[str, str]  # live session id -> owner id
    paid: list[tuple[str, dict]] = field(default_factory=list)  # (order id, seller)
    attempts: list[Attempt] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # a client that broke, and why
    lock: threading.Lock = field(default_factory=threading.Lock)


MOVEMENT_ID = {
    "purchase": "purchase_id",
    "gift": "gift_id",
    "order": "order_id",
    "payout": "payout_id",
    "refund": "refund_id",
}


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
    assert (
        api.call(
            "POST", f"/v1/sessions/{pair}/cohosts", who=owner, json={"creator_id": guest["id"]}
        ).status_code
        == 201
    )
    assert api.call("POST", f"/v1/sessions/{pair}/join", who=guest).status_code == 200
    for user in users:
        bought = api.call(
            "POST",
            "/v1/wallet/purchases",
            who=user,
            key=uuid.uuid4().hex,
            json={"coins": 1400, "channel": "web"},
        )
        assert bought.status_code == 201, bought.text
    return Crowd(users, creators, products, sessions)


def _next_attempt(crowd: Crowd, rng: random.Random) -> Attempt:
    """A random request of the mix; ids come from what the clients have seen so far."""
    key = uuid.uuid4().hex
    roll = rng.random()
    with crowd.lock:
        live = list(crowd.sessions.items())
        if roll < 0.08 and crowd.paid:
            order_id, seller = crowd.paid.pop(rng.randrange(len(crowd.paid)))
            return Attempt("refund", seller, f"/v1/orders/{order_id}/refund", {}, None)
        if roll < 0.12 and len(live) > 2:
            session_id, owner = live[rng.randrange(1, len(live))]  # the multi-host one stays
            del crowd.sessions[session_id]
            creator = next(c for c in crowd.creators if c["id"] == owner)
            return Attempt("end", creator, f"/v1/sessions/{session_id}/end", {}, None)
    if roll < 0.16:
        return Attempt("start", rng.choice(crowd.creators), "/v1/sessions", {"record": True}, None)
    if roll < 0.20:
        return Attempt("payout", rng.choice(crowd.creators), "/v1/payouts", {}, key)
    if roll < 0.35:
        body = {
            "coins": rng.choice([70, 350, 700]),
            "channel": rng.choice(["web", "ios", "android"]),
        }
        return Attempt("purchase", rng.choice(crowd.users), "/v1/wallet/purchases", body, key)
    if roll < 0.55:
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
    headers = {"Authorization": f"Bearer {attempt.who['token']}"}
    if attempt.key is not None:
        headers["Idempotency-Key"] = attempt.key
    return http.post(attempt.path, json=attempt.body, headers=headers)


def _learn(crowd: Crowd, attempt: Attempt) -> None:
    if attempt.status is None or attempt.status >= 300:
        return
    with crowd.lock:
        if attempt.action == "order":
            crowd.paid.append(
                (
                    attempt.answer["order_id"],
                    next(c for c in crowd.creators if c["id"] == attempt.answer["creator_id"]),
                )
            )
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


def _answered_movements(crowd: Crowd) -> dict[str, set[str]]:
    """Movement ids the clients were told about, by kind, from first answers and retries."""
    told: dict[str, set[str]] = defaultdict(set)
    for attempt in crowd.attempts:
        for status, answer in [(attempt.status, attempt.answer), attempt.retried or (None, None)]:
            if status is not None and 200 <= status < 300 and attempt.action in MOVEMENT_ID:
                told[attempt.action].add(answer[MOVEMENT_ID[attempt.action]])
    return told


def _retry_unanswered(url: str, crowd: Crowd) -> int:
    """Sends every unanswered idempotent request again with its key; returns how many."""
    retried = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for attempt in crowd.attempts:
            if attempt.status is None and attempt.key is not None:
                response = _request(http, attempt)
                attempt.retried = (response.status_code, _json(response))
                retried += 1
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
        return (
            f"killed after {self.killed_after:.2f}s and {len(self.crowd.attempts)} requests, "
            f"{unanswered} unanswered, {self.retried} retried; {self.pending_at_kill} rows "
            f"unrelayed at the kill, {self.written_unmarked} of them already in the open file; "
            f"{events} events"
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

    # What a client was told succeeded is in the ledger.
    moved = movements(db)
    for kind, ids in _answered_movements(crowd).items():
        assert ids <= moved[kind], (
            f"{kind}: answered 2xx but not in the ledger: {ids - moved[kind]}"
        )

    # Every movement made under a key is the one answer stored for that key.
    with read_only(db) as conn:
        stored = conn.execute("SELECT status, response FROM idempotency").fetchall()
    named: Counter[str] = Counter()
    for status, response in stored:
        body = json.loads(response)
        if 200 <= status < 300:
            named.update(
                body[f] for f in ("purchase_id", "gift_id", "order_id", "payout_id") if f in body
            )
    keyed = moved["purchase"] | moved["gift"] | moved["order"] | moved["payout"]
    assert set(named) == keyed and all(n == 1 for n in named.values())

    # Every session that started ended exactly once; those left live by the kill as an error.
    started = Counter(e["session_id"] for e in events if e["event_type"] == "session_started")
    ended = Counter(e["session_id"] for e in events if e["event_type"] == "session_ended")
    assert started == ended and set(ended.values()) == {1}
    reasons = {e["session_id"]: e["reason"] for e in events if e["event_type"] == "session_ended"}
    assert {reasons[s] for s in result.left_live} == {"error"}
    print(f"trial {trial}: {result.summary(len(events))}")
