"""The simulator writes exactly the contract (docs/telemetry.md), repeatably and plausibly."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest

from simulator.cashflow import PAYOUT_THRESHOLD_MINOR
from simulator.lines import TIE_ORDER, time_strings, uuid4_strings
from simulator.money import commission, processor_fee, split_gift, store_fee
from simulator.run import SimulationSummary, simulate
from telemetry.events import ENVELOPE, EVENT_FIELDS, EVENT_TYPES, TIME_FORMAT, Field

START = date(2026, 10, 1)
SECOND = 1_000_000
RENDITIONS = {"480p": 2, "720p": 3, "1080p": 4}
BITRATE = {"480p": 1_000_000, "720p": 2_500_000, "1080p": 4_500_000}


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


def test_fee_rules_round_to_the_cent():
    assert processor_fee(np.array([99, 1999, 10_000])).tolist() == [33, 88, 320]
    assert store_fee(np.array([99, 499, 24999])).tolist() == [30, 150, 7500]
    assert commission(np.array([2299, 1000, 6])).tolist() == [184, 80, 0]


def test_gift_split_gives_leftover_cents_to_the_first_host_present():
    present = np.array([[True, True, True, False], [False, True, True, False]])
    fee, shares = split_gift(np.array([101, 5]), present)
    assert fee.tolist() == [50, 2]
    assert shares.tolist() == [[17, 17, 17, 0], [0, 2, 1, 0]]


def cents(amount: int, rate: str) -> int:
    """amount x rate rounded half up to the cent, computed independently of the simulator."""
    return int((Decimal(amount) * Decimal(rate)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_money_invariants_hold(larger):
    money = ("gift_sent", "order_paid", "coins_purchased", "order_refunded", "payout_issued")
    for event in larger.of_type(*money):
        amounts = {k: v for k, v in event.items() if k.endswith("_minor")}
        assert all(v >= 0 for v in amounts.values()), event
        if "coins" in event:
            assert event["coins"] > 0
        match event["event_type"]:
            case "gift_sent":
                shares = [s["share_minor"] for s in event["splits"]]
                assert sum(shares) + event["platform_fee_minor"] == event["value_minor"]
                assert event["value_minor"] == event["coins"]
                assert event["platform_fee_minor"] == event["value_minor"] // 2
                assert min(shares) >= 0
            case "order_paid":
                gross = event["gross_minor"]
                assert event["creator_net_minor"] == (
                    gross - event["payment_fee_minor"] - event["commission_minor"]
                )
                assert event["payment_fee_minor"] == cents(gross, "0.029") + 30
                assert event["commission_minor"] == cents(gross, "0.08")
                assert event["quantity"] in (1, 2, 3)
            case "coins_purchased":
                amount = event["amount_minor"]
                if event["channel"] == "web":
                    assert event["payment_fee_minor"] == cents(amount, "0.029") + 30
                    assert event["store_fee_minor"] == 0
                else:
                    assert event["store_fee_minor"] == cents(amount, "0.30")
                    assert event["payment_fee_minor"] == 0


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


def test_failures_are_rare(larger):
    counts = larger.summary.by_type
    gift_failure = counts["gift_failed"] / (counts["gift_sent"] + counts["gift_failed"])
    checkout_failure = counts["checkout_failed"] / (
        counts["order_paid"] + counts["checkout_failed"]
    )
    assert 0.001 < gift_failure < 0.015
    assert checkout_failure < 0.03


def earnings_by_day(run: Run) -> dict[tuple[str, str], int]:
    """Each creator's earnings on each day: gift shares, order nets, less refunded nets."""
    earned: dict[tuple[str, str], int] = defaultdict(int)
    orders = {}
    for event in run.of_type("gift_sent", "order_paid", "order_refunded"):
        day = event["occurred_at"][:10]
        match event["event_type"]:
            case "gift_sent":
                for split in event["splits"]:
                    earned[split["creator_id"], day] += split["share_minor"]
            case "order_paid":
                orders[event["order_id"]] = event
                earned[event["creator_id"], day] += event["creator_net_minor"]
            case "order_refunded":
                order = orders[event["order_id"]]
                earned[order["creator_id"], day] -= order["creator_net_minor"]
    return earned


def test_payouts_pay_the_unpaid_earnings_on_mondays(larger):
    earned = earnings_by_day(larger)
    payouts = larger.of_type("payout_issued")
    assert payouts
    paid_until: dict[str, date] = {}
    for payout in payouts:
        day = date.fromisoformat(payout["occurred_at"][:10])
        first, last = (date.fromisoformat(payout[k]) for k in ("period_start", "period_end"))
        assert day.weekday() == 0 and last == day - timedelta(days=1)
        assert first == paid_until.get(payout["creator_id"], larger.start)
        period = [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]
        assert payout["amount_minor"] == sum(earned[payout["creator_id"], d] for d in period)
        assert payout["amount_minor"] > PAYOUT_THRESHOLD_MINOR
        paid_until[payout["creator_id"]] = day


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
        shares = {s["creator_id"]: s["share_minor"] for s in gift["splits"]}
        rest = gift["value_minor"] - gift["platform_fee_minor"]
        leftover = rest - rest // len(hosts) * len(hosts)
        first = session.owner if session.owner in hosts else gift["splits"][0]["creator_id"]
        assert shares[first] == rest // len(hosts) + leftover
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
