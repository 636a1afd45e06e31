"""The simulator writes exactly the contract (docs/telemetry.md), repeatably and plausibly."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest

from live_runtime.ledger import books, commerce, earnings
from live_runtime.ledger.books import Tx, new_id
from live_runtime.ledger.schema import create_ledger_schema
from live_runtime.policy import Policy, load_policy
from simulator import cashflow
from simulator.cashflow import Ledger
from simulator.lines import TIE_ORDER, time_strings, uuid4_strings
from simulator.money import CHANNELS, GiftSplitter, Money, order_fees
from simulator.run import SimulationSummary, simulate
from simulator.world import MAX_HOSTS, Window
from telemetry.events import ENVELOPE, EVENT_FIELDS, EVENT_TYPES, TIME_FORMAT, Field

START = date(2026, 10, 1)
SECOND = 1_000_000
RENDITIONS = {"480p": 2, "720p": 3, "1080p": 4}
BITRATE = {"480p": 1_000_000, "720p": 2_500_000, "1080p": 4_500_000}
POLICY = load_policy()  # the runtime's shipped policy, which the simulator follows by default


@dataclass(frozen=True)
class Line:
    file: int  # position of the file in the run
    raw: bytes

    @cached_property
    def event(self) -> dict:
        return json.loads(self.raw)

    def is_a(self, *event_types: str) -> bool:
        return any(f'"event_type":"{t}"'.encode() in self.raw for t in event_types)


@dataclass(frozen=True)
class Run:
    """A simulation's output; lines are parsed when a test needs them."""

    out: Path
    start: date
    days: int
    summary: SimulationSummary
    lines: list[Line]
    progress: list[str]

    @property
    def end(self) -> int:
        """The end of the simulated window, in microseconds."""
        return micros(f"{self.start + timedelta(days=self.days)}T00:00:00.000000Z")

    @cached_property
    def first_deliveries(self) -> list[Line]:
        """Each line once, in delivery order (redeliveries are byte-identical, as tested)."""
        seen: set[bytes] = set()
        first = []
        for line in self.lines:
            if line.raw not in seen:
                seen.add(line.raw)
                first.append(line)
        return first

    @property
    def events(self) -> list[dict]:
        return [line.event for line in self.first_deliveries]

    def of_type(self, *event_types: str) -> list[dict]:
        """Events of these types, in delivery order."""
        if event_types not in self._selections:
            lines = self.first_deliveries
            self._selections[event_types] = [x.event for x in lines if x.is_a(*event_types)]
        return self._selections[event_types]

    @cached_property
    def _selections(self) -> dict[tuple[str, ...], list[dict]]:
        return {}

    @cached_property
    def sessions(self) -> dict[str, Session]:
        return sessions_of(self)


def run_simulation(out: Path, start: date = START, days: int = 30, **kwargs) -> Run:
    progress: list[str] = []
    summary = simulate(out, start=start, days=days, progress=progress.append, **kwargs)
    files = sorted((out / "sealed").iterdir())
    lines = [
        Line(index, raw)
        for index, path in enumerate(files)
        for raw in path.read_bytes().splitlines(keepends=True)
    ]
    return Run(out, start, days, summary, lines, progress)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A small run cut into many files, with a high redelivery rate to exercise it."""
    out = tmp_path_factory.mktemp("small")
    return run_simulation(
        out, creators=40, days=6, seed=3, duplicate_rate=0.01, max_file_bytes=1 << 19
    )


LARGER_START, LARGER_DAYS = date(2026, 10, 4), 9  # a Sunday: the run has two Monday payouts


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A larger population, for distributions, refunds and payouts."""
    out = tmp_path_factory.mktemp("larger")
    return run_simulation(out, creators=300, days=LARGER_DAYS, start=LARGER_START, seed=5)


def micros(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 UTC time."""
    moment = datetime.fromisoformat(text)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# --- repeatability ----------------------------------------------------------------------


def sealed_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "sealed").iterdir())}


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    args = dict(creators=25, days=3, duplicate_rate=0.01, max_file_bytes=200_000)
    first = simulate(tmp_path / "a", seed=9, **args)
    again = simulate(tmp_path / "b", seed=9, **args)
    simulate(tmp_path / "c", seed=10, **args)
    assert first == again
    assert first.files > 1
    assert sealed_bytes(tmp_path / "a") == sealed_bytes(tmp_path / "b")
    assert sealed_bytes(tmp_path / "a") != sealed_bytes(tmp_path / "c")


def test_generated_ids_are_seeded_uuid4():
    ids = uuid4_strings(np.random.default_rng(1), 500).to_list()
    assert ids == uuid4_strings(np.random.default_rng(1), 500).to_list()
    assert len(set(ids)) == 500
    for text in ids:
        assert str(uuid.UUID(text)) == text
        assert uuid.UUID(text).version == 4


def test_times_are_formatted_exactly_like_the_contract():
    moments = [
        datetime(2026, 3, 2, 10, 5, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2028, 2, 29, 0, 0, 1, 7, tzinfo=UTC),
    ]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    t = np.array([(m - epoch) // timedelta(microseconds=1) for m in moments])
    assert time_strings(t).to_list() == [m.strftime(TIME_FORMAT) for m in moments]
    assert time_strings(t).to_list()[0] == "2026-03-02T10:05:00.000000Z"


def test_every_event_type_has_a_tie_position():
    assert sorted(TIE_ORDER) == sorted(EVENT_TYPES)


# --- files ------------------------------------------------------------------------------


def test_files_are_sealed_in_sequence_with_nothing_left_open(small):
    names = [p.name for p in sorted((small.out / "sealed").iterdir())]
    assert names == [f"sim-{i:012d}.jsonl" for i in range(1, len(names) + 1)]
    assert len(names) == small.summary.files > 1
    assert list((small.out / "open").iterdir()) == []
    sizes = [p.stat().st_size for p in (small.out / "sealed").iterdir()]
    assert max(sizes) <= 1 << 19
    assert sum(sizes) == small.summary.bytes


def test_summary_counts_what_was_written(small):
    summary = small.summary
    assert summary.events == len(small.lines)
    assert summary.by_type == dict(Counter(line.event["event_type"] for line in small.lines))
    assert summary.sessions == len(small.of_type("session_started"))
    assert summary.creators == 40
    assert summary.duplicates == len(small.lines) - len(small.events) > 0
    assert any("sessions planned" in line for line in small.progress)
    assert any(line.startswith("day 6/6") for line in small.progress)


def test_events_are_in_time_order(small):
    times = [micros(e["occurred_at"]) for e in small.events]
    assert times == sorted(times)
    assert times[0] >= micros("2026-10-01T00:00:00.000000Z") and times[-1] < small.end


def test_redeliveries_are_byte_identical_and_in_a_later_file(small):
    first: dict[str, Line] = {}
    redelivered = 0
    for line in small.lines:
        original = first.setdefault(line.event["event_id"], line)
        if original is not line:
            redelivered += 1
            assert line.raw == original.raw
            assert line.file > original.file
    assert redelivered == small.summary.duplicates > 0


# --- the event model --------------------------------------------------------------------


def assert_kind(field: Field, value: object) -> None:
    name = field.name
    match field.kind:
        case "string":
            assert isinstance(value, str) and value, name
        case "nullable_string":
            assert value is None or (isinstance(value, str) and value), name
        case "int":
            assert type(value) is int, name
        case "number":
            assert type(value) in (int, float), name
        case "time":
            assert datetime.strptime(value, TIME_FORMAT).strftime(TIME_FORMAT) == value, name
        case "date":
            assert date.fromisoformat(value).isoformat() == value, name
        case "strings":
            assert value and all(isinstance(v, str) for v in value), name
        case "splits":
            assert value and all(set(s) == {"creator_id", "share_minor"} for s in value), name
            assert all(type(s["share_minor"]) is int for s in value), name
    if field.allowed is not None:
        assert value in field.allowed, name


def test_every_line_has_exactly_the_fields_of_its_type(small):
    assert all(line.raw.endswith(b"\n") for line in small.lines)
    for line in small.lines:
        event = line.event
        fields = ENVELOPE + EVENT_FIELDS[event["event_type"]]
        assert list(event) == [f.name for f in fields]
        for field in fields:
            assert_kind(field, event[field.name])
        assert event["schema_version"] == 1
        assert event["source"] == "sim"
        assert uuid.UUID(event["event_id"]).version == 4
        assert event.get("currency", "USD") == "USD"


def test_all_event_types_occur(larger):
    assert set(larger.summary.by_type) == set(EVENT_TYPES)


def test_event_ids_are_unique_per_event(small):
    ids = [e["event_id"] for e in small.events]
    assert len(ids) == len(set(ids))


# --- money ------------------------------------------------------------------------------


def test_coin_packs_and_their_fees_are_the_policys_for_every_pack_and_channel():
    packs = Money(POLICY, creators=1).packs
    assert dict(zip(packs.coins.tolist(), packs.price.tolist(), strict=True)) == POLICY.coin_packs
    assert set(CHANNELS) == set(POLICY.channels)
    for pack, (_, price) in enumerate(sorted(POLICY.coin_packs.items())):
        for code, channel in enumerate(CHANNELS):
            fees = (int(packs.payment_fee[pack, code]), int(packs.store_fee[pack, code]))
            assert fees == POLICY.channels[channel].fees(price), (price, channel)


def test_order_fees_are_the_policys():
    gross = np.array([499, 998, 2299, 2299, 6, 30, 31, 33, 1_000_000, 1497])
    payment, commission = order_fees(POLICY, gross)
    expected = [POLICY.order_fees(g) for g in gross.tolist()]
    assert list(zip(payment.tolist(), commission.tolist(), strict=True)) == expected


def random_gifts(
    rng: np.random.Generator, gifts: int, creators: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, host slots, present) of gifts to 1 to MAX_HOSTS distinct creators, mostly
    small, so that the rounded shares often exceed a value and hosts fall behind."""
    host = np.argsort(rng.random((gifts, creators)), axis=1)[:, :MAX_HOSTS]
    present = rng.random((gifts, MAX_HOSTS)) < 0.6
    present[np.arange(gifts), rng.integers(0, MAX_HOSTS, gifts)] = True
    value = rng.choice([1, 1, 1, 2, 3, 5, 5, 7, 10, 30, 99, 29_999], gifts)
    return value, host, present


@pytest.mark.parametrize(
    "platform_fee_bps, host_floor_bps",
    [(5000, 1000), (3333, 2500), (0, 0), (10_000, 1000), (7, 100)],
)
def test_the_vectorized_gift_split_is_split_gift_in_time_order(platform_fee_bps, host_floor_bps):
    policy = dataclasses.replace(
        POLICY, gift_platform_fee_bps=platform_fee_bps, host_floor_bps=host_floor_bps
    )
    rng = np.random.default_rng(platform_fee_bps)
    creators = 9
    splitter = GiftSplitter(policy, creators, MAX_HOSTS)
    carries: dict[int, Fraction] = {}
    behind = 0
    for _ in range(4):  # carries are kept from one call to the next
        value, host, present = random_gifts(rng, 600, creators)
        fee, share = splitter.split(value, host, present)
        for g in range(len(value)):
            hosts = host[g][present[g]].tolist()
            split = policy.split_gift(int(value[g]), dict.fromkeys(hosts, 1), carries)
            carries.update(split.carries)
            assert fee[g] == split.platform_fee
            assert share[g][present[g]].tolist() == [split.shares[h] for h in hosts]
            assert not share[g][~present[g]].any()
            behind += any(c >= 1 for c in split.carries.values())
    assert [splitter.carry(c) for c in range(creators)] == [
        carries.get(c, Fraction(0)) for c in range(creators)
    ]
    if platform_fee_bps < 10_000:
        assert behind  # hosts fell behind: the rounded shares exceeded a gift's value


def test_a_policy_with_fewer_hosts_than_the_simulator_is_refused():
    with pytest.raises(ValueError, match="hosts"):
        GiftSplitter(dataclasses.replace(POLICY, max_hosts=MAX_HOSTS - 1), 3, MAX_HOSTS)


def test_gift_shares_are_split_gift_replayed_in_time_order_per_creator(larger):
    carries: dict[str, Fraction] = {}
    shared = behind = 0
    for gift in larger.of_type("gift_sent"):  # in delivery order, which is time order
        hosts = [s["creator_id"] for s in gift["splits"]]
        split = POLICY.split_gift(gift["value_minor"], dict.fromkeys(hosts, 1), carries)
        carries.update(split.carries)
        assert [s["share_minor"] for s in gift["splits"]] == [split.shares[h] for h in hosts]
        assert gift["platform_fee_minor"] == split.platform_fee
        shared += len(hosts) > 1
        behind += any(c >= 1 for c in split.carries.values())
    assert shared and behind


def test_a_policy_passed_in_sets_the_prices_fees_and_split(tmp_path):
    channels = {c: dataclasses.replace(f, store_bps=1500) for c, f in POLICY.channels.items()}
    policy = dataclasses.replace(
        POLICY,
        coin_packs={50: 79, 1000: 1299, 20_000: 24_999},
        channels=channels,
        gift_platform_fee_bps=2000,
        commission_bps=1200,
        coin_value_minor=2,
    )
    run = run_simulation(tmp_path, creators=30, days=2, seed=8, policy=policy)
    purchases, orders = run.of_type("coins_purchased"), run.of_type("order_paid")
    assert purchases and orders and run.of_type("gift_sent")
    for purchase in purchases:
        assert policy.coin_packs[purchase["coins"]] == purchase["amount_minor"]
        fees = (purchase["payment_fee_minor"], purchase["store_fee_minor"])
        assert fees == channels[purchase["channel"]].fees(purchase["amount_minor"])
    for order in orders:
        fees = (order["payment_fee_minor"], order["commission_minor"])
        assert fees == policy.order_fees(order["gross_minor"])
    carries: dict[str, Fraction] = {}
    for gift in run.of_type("gift_sent"):
        assert gift["value_minor"] == 2 * gift["coins"]
        hosts = [s["creator_id"] for s in gift["splits"]]
        split = policy.split_gift(gift["value_minor"], dict.fromkeys(hosts, 1), carries)
        carries.update(split.carries)
        assert [s["share_minor"] for s in gift["splits"]] == [split.shares[h] for h in hosts]


def test_money_invariants_hold(larger):
    money = (
        "gift_sent",
        "order_paid",
        "coins_purchased",
        "coins_refunded",
        "order_refunded",
        "payout_issued",
    )
    for event in larger.of_type(*money):
        amounts = {k: v for k, v in event.items() if k.endswith("_minor")}
        assert all(v >= 0 for v in amounts.values()), event
        assert event.get("currency", POLICY.currency) == POLICY.currency
        if "coins" in event:
            assert event["coins"] > 0
        match event["event_type"]:
            case "gift_sent":
                shares = [s["share_minor"] for s in event["splits"]]
                assert sum(shares) + event["platform_fee_minor"] == event["value_minor"]
                assert event["value_minor"] == event["coins"] * POLICY.coin_value_minor
                assert event["platform_fee_minor"] >= 0 and min(shares) >= 0
            case "order_paid":
                gross = event["gross_minor"]
                assert event["creator_net_minor"] == (
                    gross - event["payment_fee_minor"] - event["commission_minor"]
                )
                fees = (event["payment_fee_minor"], event["commission_minor"])
                assert fees == POLICY.order_fees(gross)
                assert event["quantity"] in (1, 2, 3)
            case "coins_purchased":
                amount = event["amount_minor"]
                assert POLICY.coin_packs[event["coins"]] == amount
                fees = (event["payment_fee_minor"], event["store_fee_minor"])
                assert fees == POLICY.channels[event["channel"]].fees(amount)
            case "coins_refunded":
                assert event["coins_taken_back"] >= 0


def test_refunds_repay_a_paid_order_in_full_days_later(larger):
    paid = {e["order_id"]: e for e in larger.of_type("order_paid")}
    refunds = larger.of_type("order_refunded")
    assert refunds
    assert len(refunds) < 0.06 * len(paid)
    for refund in refunds:
        order = paid[refund["order_id"]]
        assert refund["refund_minor"] == order["gross_minor"]
        delay = micros(refund["occurred_at"]) - micros(order["occurred_at"])
        assert timedelta(days=1) <= timedelta(microseconds=delay) <= timedelta(days=10)
        assert refund["reason"]
    assert len({r["order_id"] for r in refunds}) == len(refunds)


def assert_coin_reversals_follow_the_contract(run: Run) -> list[dict]:
    """Each coin refund or dispute reverses one earlier purchase in full, and takes back the
    coins left in the buyer's wallet as the simulator keeps it (see `CoinReversals`), replayed
    here from the events in delivery order, which is time order, then TIE_ORDER."""
    purchases = {e["purchase_id"]: e for e in run.of_type("coins_purchased")}
    reversals = run.of_type("coins_refunded")
    days = {"refund": cashflow.COIN_REFUND_DAYS, "dispute": cashflow.COIN_DISPUTE_DAYS}
    kept_from: dict[str, int] = {}
    for reversal in reversals:
        purchase = purchases[reversal["purchase_id"]]
        for key in ("user_id", "channel", "currency"):
            assert reversal[key] == purchase[key]
        assert reversal["refund_minor"] == purchase["amount_minor"]
        assert reversal["store_fee_returned_minor"] == purchase["store_fee_minor"]
        if reversal["channel"] == "web":
            assert reversal["store_fee_returned_minor"] == 0
        assert 0 <= reversal["coins_taken_back"] <= purchase["coins"]
        bought = micros(purchase["occurred_at"])
        delay = timedelta(microseconds=micros(reversal["occurred_at"]) - bought)
        low, high = days[reversal["reason"]]
        assert timedelta(days=low) <= delay <= timedelta(days=high)
        user = reversal["user_id"]
        kept_from[user] = min(bought, kept_from.get(user, bought))
    assert len({r["purchase_id"] for r in reversals}) == len(reversals)

    wallet: Counter[str] = Counter()
    kinds = ("coins_purchased", "gift_sent", "coins_refunded")
    for event in run.of_type(*kinds):
        user = event.get("user_id") or event["sender_id"]
        if user not in kept_from or micros(event["occurred_at"]) < kept_from[user]:
            continue
        match event["event_type"]:
            case "coins_purchased":
                wallet[user] += event["coins"]
            case "gift_sent":
                wallet[user] = max(wallet[user] - event["coins"], 0)
            case "coins_refunded":
                coins = purchases[event["purchase_id"]]["coins"]
                assert event["coins_taken_back"] == min(coins, wallet[user])
                wallet[user] -= event["coins_taken_back"]
    return reversals


def test_coin_purchases_are_rarely_refunded_or_disputed(larger):
    reversals = assert_coin_reversals_follow_the_contract(larger)
    purchases = len(larger.of_type("coins_purchased"))
    assert reversals and len(reversals) < 0.01 * purchases
    assert all(r["reason"] in ("refund", "dispute") for r in reversals)


def test_coin_reversals_take_back_what_is_left_and_change_nothing_else(tmp_path, monkeypatch):
    """With many reversals, each takes back the coins left (all of them, or what later gifts
    left); without any, every other line is byte for byte the same."""
    args = dict(creators=30, days=12, seed=3, duplicate_rate=0.0, max_file_bytes=1 << 30)
    monkeypatch.setattr(cashflow, "COIN_REFUND_RATE", 0.15)
    monkeypatch.setattr(cashflow, "COIN_DISPUTE_RATE", 0.1)
    many = run_simulation(tmp_path / "many", **args)
    reversals = assert_coin_reversals_follow_the_contract(many)
    assert {r["reason"] for r in reversals} == {"refund", "dispute"}
    assert {r["channel"] for r in reversals} == set(CHANNELS)
    purchased = {e["purchase_id"]: e["coins"] for e in many.of_type("coins_purchased")}
    taken = [(r["coins_taken_back"], purchased[r["purchase_id"]]) for r in reversals]
    assert any(t == c for t, c in taken) and any(t < c for t, c in taken)  # some were spent

    monkeypatch.setattr(cashflow, "COIN_REFUND_RATE", 0.0)
    monkeypatch.setattr(cashflow, "COIN_DISPUTE_RATE", 0.0)
    none = run_simulation(tmp_path / "none", **args)
    assert not none.of_type("coins_refunded")
    others = [line.raw for line in many.lines if not line.is_a("coins_refunded")]
    assert others == [line.raw for line in none.lines]


def test_failures_are_rare(larger):
    counts = larger.summary.by_type
    gift_failure = counts["gift_failed"] / (counts["gift_sent"] + counts["gift_failed"])
    checkout_failure = counts["checkout_failed"] / (
        counts["order_paid"] + counts["checkout_failed"]
    )
    assert 0.001 < gift_failure < 0.015
    assert checkout_failure < 0.03


def earnings_of(run: Run) -> tuple[dict[tuple[int, str], int], dict[tuple[int, str], int]]:
    """Each creator's earnings (gift shares, order nets) and clawbacks (the nets of refunded
    orders), by day of the run and creator."""
    earned: dict[tuple[int, str], int] = defaultdict(int)
    clawed: dict[tuple[int, str], int] = defaultdict(int)
    orders = {}
    for event in run.of_type("gift_sent", "order_paid", "order_refunded"):
        day = (date.fromisoformat(event["occurred_at"][:10]) - run.start).days
        match event["event_type"]:
            case "gift_sent":
                for split in event["splits"]:
                    earned[day, split["creator_id"]] += split["share_minor"]
            case "order_paid":
                orders[event["order_id"]] = event
                earned[day, event["creator_id"]] += event["creator_net_minor"]
            case "order_refunded":
                order = orders[event["order_id"]]
                clawed[day, order["creator_id"]] += order["creator_net_minor"]
    return earned, clawed


def runtime_payouts(
    policy: Policy,
    start: date,
    days: int,
    earned: dict[tuple[int, str], int],
    clawed: dict[tuple[int, str], int],
) -> list[tuple[int, str, int]]:
    """(day, creator, amount) of the Monday payouts the runtime's own ledger code makes of
    these earnings: each day the holds due are released, on Mondays every creator asks for a
    payout, then the day's earnings are credited and its refunds clawed back."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    create_ledger_schema(conn)
    books.open_platform_books(conn, policy.currency)
    creators = sorted({c for _, c in earned} | {c for _, c in clawed})
    for creator in creators:
        conn.execute(
            "INSERT INTO principals (id, kind, display_name, created_at) VALUES (?, ?, ?, ?)",
            (creator, "creator", creator, str(start)),
        )
    books.open_creator_accounts(conn, creators, policy.currency)
    paid = []
    for day in range(days):
        moment = datetime.combine(start + timedelta(days=day), datetime.min.time(), UTC)
        tx = Tx(conn, "replay", now=moment)
        earnings.release_due(tx)
        if moment.weekday() == 0:
            for creator in creators:
                try:
                    _, body = commerce.payout(tx, policy, creator)
                except books.Refused:
                    continue
                paid.append((day, creator, body["amount_minor"]))
        for creator in creators:
            if amount := earned.get((day, creator), 0):
                postings = earnings.credit(tx, policy, creator, amount)
                tx.move(new_id("e"), "gift", creator, {**postings, books.GIFT_FUNDING: -amount})
            if amount := clawed.get((day, creator), 0):
                postings = earnings.claw_back(tx, creator, amount)
                tx.move(new_id("rf"), "refund", creator, {**postings, books.PAYMENTS: amount})
    return paid


def test_payouts_are_what_the_runtime_ledger_pays_of_the_same_earnings(larger):
    expected = runtime_payouts(POLICY, larger.start, larger.days, *earnings_of(larger))
    payouts = [
        ((date.fromisoformat(p["occurred_at"][:10]) - larger.start).days, p["creator_id"])
        + (p["amount_minor"],)
        for p in larger.of_type("payout_issued")
    ]
    assert payouts and sorted(payouts) == sorted(expected)


def test_payouts_never_pay_earnings_younger_than_the_hold(larger):
    earned, _ = earnings_of(larger)
    hold = POLICY.payout_hold_days
    paid_from: dict[str, date] = {}
    paid = Counter()
    for payout in larger.of_type("payout_issued"):
        creator = payout["creator_id"]
        day = date.fromisoformat(payout["occurred_at"][:10])
        first, last = (date.fromisoformat(payout[k]) for k in ("period_start", "period_end"))
        assert day.weekday() == 0
        assert last == day - timedelta(days=hold)  # the last day of earnings released
        assert first == paid_from.get(creator, larger.start) <= last
        paid[creator] += payout["amount_minor"]
        old_enough = (last - larger.start).days  # days of earnings at least the hold old
        earned_then = sum(a for (d, c), a in earned.items() if c == creator and d <= old_enough)
        assert paid[creator] <= earned_then
        assert payout["amount_minor"] >= POLICY.payout_threshold_minor
        paid_from[creator] = last + timedelta(days=1)


def test_the_ledger_holds_claws_back_and_pays_like_the_runtime_ledger():
    """Random earnings and large refunds over many weeks, so holds, debts and thresholds all
    matter: the simulator's ledger pays what the runtime's ledger code pays."""
    rng = np.random.default_rng(4)
    start, days, creators = date(2026, 10, 1), 60, 6
    window = Window(start, days)
    ledger = Ledger(creators, window, Money(POLICY, creators))
    earned = rng.integers(0, 2500, (days, creators)) * (rng.random((days, creators)) < 0.7)
    clawed = rng.integers(1, 9000, (days, creators)) * (rng.random((days, creators)) < 0.1)
    paid, in_debt = [], False
    for day in range(days):
        if (start + timedelta(days=day)).weekday() == 0:
            who, amount, _, last = ledger.settle(day)
            assert last == day - POLICY.payout_hold_days
            paid += [(day, f"c{c}", a) for c, a in zip(who.tolist(), amount.tolist(), strict=True)]
        t = np.full(creators, window.day_start_us(day) + 3600 * SECOND)
        ledger.add(np.arange(creators), t, earned[day])
        some = clawed[day] > 0
        ledger.claw_back(np.flatnonzero(some), t[some], clawed[day][some])
        ledger.close_day(day)
        in_debt |= bool(ledger.debt.any())
    expected = runtime_payouts(
        POLICY,
        start,
        days,
        {(d, f"c{c}"): int(a) for (d, c), a in np.ndenumerate(earned) if a},
        {(d, f"c{c}"): int(a) for (d, c), a in np.ndenumerate(clawed) if a},
    )
    assert len(paid) > 10 and paid == expected
    assert in_debt  # a refund took more than was held and available


# --- sessions, presence and usage -------------------------------------------------------


@dataclass
class Session:
    start: int
    end: int | None
    owner: str
    presence: dict[str, list[int]]  # creator -> [from, to)


def sessions_of(run: Run) -> dict[str, Session]:
    """Sessions and who was present when, rebuilt from the session and host events."""
    sessions: dict[str, Session] = {}
    for event in run.of_type("session_started", "host_joined", "host_left", "session_ended"):
        t = micros(event["occurred_at"])
        kind = event["event_type"]
        if kind == "session_started":
            hosts = event["creator_ids"]
            presence = {c: [t, run.end] for c in hosts}
            sessions[event["session_id"]] = Session(t, None, hosts[0], presence)
        elif kind == "host_joined":
            session = sessions[event["session_id"]]
            assert event["creator_id"] not in session.presence
            session.presence[event["creator_id"]] = [t, run.end]
        elif kind == "host_left":
            span = sessions[event["session_id"]].presence[event["creator_id"]]
            assert span[1] == run.end
            span[1] = t
        else:
            session = sessions[event["session_id"]]
            session.end = t
            for span in session.presence.values():
                span[1] = min(span[1], t)
    return sessions


def present_at(session: Session, t: int) -> list[str]:
    return [c for c, (lo, hi) in session.presence.items() if lo <= t < hi]


def test_gifts_and_sales_go_to_hosts_present_at_the_time(small):
    sessions = small.sessions
    gifts = small.of_type("gift_sent")
    assert gifts
    for gift in gifts:
        session = sessions[gift["session_id"]]
        t = micros(gift["occurred_at"])
        assert session.start <= t and (session.end is None or t < session.end)
        hosts = present_at(session, t)
        assert [s["creator_id"] for s in gift["splits"]] == sorted(
            hosts, key=list(session.presence).index
        )
    for order in small.of_type("order_paid"):
        if order["session_id"] is not None:
            session = sessions[order["session_id"]]
            assert order["creator_id"] in present_at(session, micros(order["occurred_at"]))


def test_multi_host_sessions_have_cohosts_coming_and_going(larger):
    sessions = larger.sessions
    assert any(len(e["creator_ids"]) > 1 for e in larger.of_type("session_started"))
    assert larger.of_type("host_joined") and larger.of_type("host_left")
    for session in sessions.values():
        for lo, hi in session.presence.values():
            assert lo < hi


def test_nobody_is_live_in_two_sessions_at_once(larger):
    spans = defaultdict(list)
    for session in larger.sessions.values():
        for creator, (lo, hi) in session.presence.items():
            spans[creator].append((lo, hi))
    for creator_spans in spans.values():
        creator_spans.sort()
        for (_, end), (start, _) in zip(creator_spans, creator_spans[1:], strict=False):
            assert end <= start


def test_sessions_end_mostly_by_their_host(larger):
    reasons = Counter(e["reason"] for e in larger.of_type("session_ended"))
    assert reasons.most_common(1)[0][0] == "host_ended" and len(reasons) == 3


def test_sessions_without_an_end_are_still_running_at_the_window_end(larger):
    ended = {e["session_id"] for e in larger.of_type("session_ended")}
    running = {s.encode() for s in larger.sessions if s not in ended}
    assert running
    last_interval = {}
    for line in larger.first_deliveries:
        at = line.raw.find(b'"session_id":"') + len(b'"session_id":"')
        if line.is_a("media_usage") and line.raw[at : at + 36] in running:
            last_interval[line.event["session_id"]] = micros(line.event["interval_end"])
    for session_id in running:
        last = last_interval.get(session_id.decode(), larger.sessions[session_id.decode()].start)
        assert last + 60 * SECOND >= larger.end


def test_media_usage_covers_each_session_minute_by_minute(small):
    sessions = small.sessions
    quality = {e["session_id"]: e["quality"] for e in small.of_type("session_started")}
    intervals = defaultdict(list)
    for usage in small.of_type("media_usage"):
        intervals[usage["session_id"]].append(usage)
    assert set(intervals) <= set(sessions)
    for session_id, usages in intervals.items():
        session = sessions[session_id]
        expected_start = session.start
        for usage in usages:
            lo, hi = micros(usage["interval_start"]), micros(usage["interval_end"])
            assert lo == expected_start
            assert usage["interval_end"] == usage["occurred_at"]
            assert hi - lo == 60 * SECOND or (usage is usages[-1] and 0 < hi - lo < 60 * SECOND)
            seconds, partial = divmod(hi - lo, SECOND)
            assert partial == 0
            hosted = sum(max(0, min(b, hi) - max(a, lo)) for a, b in session.presence.values())
            assert usage["publisher_seconds"] * SECOND == hosted
            assert usage["transcode_seconds"] == seconds * RENDITIONS[quality[session_id]]
            bitrate = BITRATE[quality[session_id]]
            assert usage["egress_bytes"] == usage["viewer_seconds"] * bitrate // 8
            assert usage["recording_bytes"] in (0, seconds * bitrate // 8)
            assert usage["relay_seconds"] in range(0, usage["publisher_seconds"] + 1)
            if len(session.presence) == 1:
                assert usage["relay_seconds"] == 0
            expected_start = hi
        if session.end is not None:
            assert expected_start == session.end
    assert any(u["relay_seconds"] > 0 for us in intervals.values() for u in us)
    assert any(u["recording_bytes"] > 0 for us in intervals.values() for u in us)


def test_viewers_come_and_go_within_sessions_and_gift_while_there(small):
    joined: dict[tuple[str, str], int] = {}
    reported = Counter()  # viewer seconds of the reported viewers, by session
    kinds = ("viewer_joined", "viewer_left", "gift_sent", "gift_failed")
    for event in small.of_type(*kinds):
        t = micros(event["occurred_at"])
        session = small.sessions[event["session_id"]]
        assert session.start <= t <= (session.end or small.end)
        key = (event["session_id"], event.get("user_id") or event.get("sender_id"))
        if event["event_type"] == "viewer_joined":
            assert key not in joined
            joined[key] = t
        elif event["event_type"] == "viewer_left":
            reported[event["session_id"]] += t - joined.pop(key)
        else:
            assert key in joined and joined[key] <= t < (session.end or small.end)
    usage = Counter()
    for interval in small.of_type("media_usage"):
        usage[interval["session_id"]] += interval["viewer_seconds"] * SECOND
    ended = [s for s, session in small.sessions.items() if session.end is not None]
    assert all(reported[s] <= usage[s] for s in ended)
    # Reported viewers are a sample, yet a sizeable one.
    assert sum(usage[s] for s in ended) < 10 * sum(reported[s] for s in ended)


def test_gifting_is_heavy_tailed(larger):
    earned = Counter()
    for gift in larger.of_type("gift_sent"):
        for split in gift["splits"]:
            earned[split["creator_id"]] += split["share_minor"]
    totals = sorted(earned.values(), reverse=True) + [0] * (300 - len(earned))
    assert sum(totals[:30]) > 0.6 * sum(totals)
    coins = np.array([g["coins"] for g in larger.of_type("gift_sent")])
    assert np.median(coins) <= 10 and coins.max() >= 1000


def test_sessions_start_at_plausible_hours_and_last_20_minutes_to_4_hours(small, larger):
    minutes = Counter(u["session_id"] for u in small.of_type("media_usage"))
    ended = {e["session_id"] for e in small.of_type("session_ended")}
    lengths = [minutes[s] for s in ended]
    assert min(lengths) >= 20 and max(lengths) <= 240
    assert 40 <= float(np.median(lengths)) <= 90
    hours = Counter(int(e["occurred_at"][11:13]) for e in larger.of_type("session_started"))
    busiest, quietest = max(hours.values()), min(hours[h] for h in range(24))
    assert quietest < 0.5 * busiest  # a daily rhythm around the regions' evenings
