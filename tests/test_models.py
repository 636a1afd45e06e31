"""The models on small hand-built histories, checked against numbers worked out by hand.

Every expected value below is derived from docs/metrics.md with pencil-and-paper arithmetic
(written out next to it), never by running the models. Each history is written as telemetry,
loaded by the real ingest into a fresh embedded warehouse, and modelled by the real path: the
warehouse's aggregates (models/reads.py) and the metric SQL over them (models/sql.py).

The scenario (March 2026 has 31 days, so `fixed_monthly = 31` is exactly 1.00 a day):

    Sun 2026-03-01  (week 2026-02-23)
      s-night  carol alone, 23:00 -> no session_ended; usage runs to Mon 00:30
    Mon 2026-03-02  (week 2026-03-02)
      s-duo    alice owns 10:00 -> 12:50; bob joins 10:35, leaves 11:05
    Tue 2026-03-03  no session at all; alice's order o1 is refunded
    Wed 2026-03-04
      s-morning alice alone, 09:00 -> 09:30, no media_usage
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import tempfile
import uuid
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ingest.loader import ingest
from models.build import ModelInputError
from models.compute import compute_marts
from models.cost_model import CostModel, CostModelError, parse_cost_model
from telemetry.events import TIME_FORMAT
from telemetry.files import TelemetryWriter
from warehouse.connection import connect

UTC = dt.UTC

W1 = dt.date(2026, 2, 23)  # the Monday of Sun 2026-03-01
W2 = dt.date(2026, 3, 2)
D1, D2, D3, D4 = (dt.date(2026, 3, d) for d in (1, 2, 3, 4))


def t(text: str) -> dt.datetime:
    """'2026-03-01 23:00' -> an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def named_id(name: str) -> str:
    """A UUID whose text sorts as `name` does, so hand-picked ids keep their order."""
    return str(uuid.UUID(bytes=name.encode().ljust(16, b"\0")))


# --- builders ------------------------------------------------------------------------------


class Inputs:
    """A history written event by event as telemetry; `marts()` loads and models it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.gross: dict[str, int] = {}  # order id -> gross, for its refund's amount

    def _event(self, event_type: str, at: dt.datetime, event_id: str | None = None, **fields):
        self.events.append(
            {
                "event_id": event_id or str(uuid.UUID(int=len(self.events) + 1)),
                "event_type": event_type,
                "schema_version": 1,
                "occurred_at": at.strftime(TIME_FORMAT),
                "source": "hand",
                **fields,
            }
        )

    def session(self, sid: str, start: str, hosts: list[str], end: str | None = None) -> None:
        self._event(
            "session_started", t(start), session_id=sid, creator_ids=hosts, region="eu-west",
            quality="720p",
        )  # fmt: skip
        if end is not None:
            self._event("session_ended", t(end), session_id=sid, reason="host_ended")

    def host(self, sid: str, creator: str, at: str, kind: str) -> None:
        assert kind in ("join", "leave")
        event_type = "host_joined" if kind == "join" else "host_left"
        self._event(event_type, t(at), session_id=sid, creator_id=creator)

    def usage(self, event_id: str, sid: str, start: str, end: str, **amounts: float) -> None:
        fields: dict[str, Any] = {
            "session_id": sid,
            "interval_start": t(start).strftime(TIME_FORMAT),
            "interval_end": t(end).strftime(TIME_FORMAT),
        }
        for col in ("publisher_seconds", "viewer_seconds", "transcode_seconds", "relay_seconds"):
            fields[col] = float(amounts.pop(col.removesuffix("_seconds"), 0))
        for col in ("egress_bytes", "recording_bytes"):
            fields[col] = int(amounts.pop(col.removesuffix("_bytes"), 0))
        assert not amounts, amounts
        self._event("media_usage", t(end), named_id(event_id), **fields)

    def gift(
        self, at: str, sid: str, value: int, fee: int, splits: dict[str, int], cur: str = "USD"
    ) -> None:
        assert sum(splits.values()) + fee == value  # the telemetry invariant
        self._event(
            "gift_sent", t(at), gift_id=f"g{len(self.events)}", session_id=sid, sender_id="u",
            coins=value, value_minor=value, currency=cur,
            splits=[{"creator_id": c, "share_minor": s} for c, s in splits.items()],
            platform_fee_minor=fee,
        )  # fmt: skip

    def order(
        self,
        order_id: str,
        at: str,
        sid: str | None,
        creator: str,
        gross: int,
        payment_fee: int,
        commission: int,
        cur: str = "USD",
    ) -> None:
        self.gross[order_id] = gross
        self._event(
            "order_paid", t(at), order_id=order_id, session_id=sid, creator_id=creator,
            product_id="p", quantity=1, gross_minor=gross, currency=cur,
            payment_fee_minor=payment_fee, commission_minor=commission,
            creator_net_minor=gross - payment_fee - commission,  # telemetry invariant
        )  # fmt: skip

    def refund(self, order_id: str, at: str) -> None:
        self._event(
            "order_refunded", t(at), order_id=order_id, refund_minor=self.gross[order_id],
            reason="requested",
        )  # fmt: skip

    def purchases(self, day: dt.date, cur: str, n: int, payment_fee: int, store_fee: int) -> None:
        """`n` coin purchases at noon, the first carrying the day's fees."""
        noon = dt.datetime.combine(day, dt.time(12), UTC)
        for i in range(n):
            self._event(
                "coins_purchased", noon, purchase_id=f"pu{len(self.events)}", user_id="u",
                coins=70, amount_minor=1000, currency=cur, channel="web",
                payment_fee_minor=payment_fee if i == 0 else 0,
                store_fee_minor=store_fee if i == 0 else 0,
            )  # fmt: skip

    def coin_refund(self, day: dt.date, store_fee_returned: int) -> None:
        """A refund at noon of a 1,000 iOS purchase; the store returns its fee."""
        noon = dt.datetime.combine(day, dt.time(12), UTC)
        self._event(
            "coins_refunded", noon, purchase_id=f"pu{len(self.events)}", user_id="u",
            refund_minor=1000, currency="USD", channel="ios",
            store_fee_returned_minor=store_fee_returned, coins_taken_back=70, reason="refund",
        )  # fmt: skip

    def failures(self, day: dt.date, n: int) -> None:
        noon = dt.datetime.combine(day, dt.time(12), UTC)
        for _ in range(n):
            self._event(
                "gift_failed", noon, gift_id=f"g{len(self.events)}", session_id="s",
                sender_id="u", reason="insufficient_balance",
            )  # fmt: skip

    def marts(self, cost_model: CostModel) -> dict[str, pa.Table]:
        """Every mart of this history: sealed, ingested into a fresh warehouse, modelled."""
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            with TelemetryWriter(root / "telemetry", "hand") as writer:
                writer.write("".join(json.dumps(e) + "\n" for e in self.events).encode())
            client = connect(f"chdb://{root / 'warehouse'}")
            try:
                report = ingest(client, root / "telemetry", read_files_in_warehouse=True)
                assert report.total("loaded") == len(self.events), report.summary()
                return compute_marts(client, cost_model)
            finally:
                client.close()


# Round prices: per minute 0.01 publish, 0.001 viewer, 0.1 transcode; relay and recording free;
# 0.01 per transaction; 31.00 a month = 1.00 a day in March. Egress: the first 1000 bytes of
# the month (0.000001 GB) at 1000/GB = 0.000001 a byte, beyond that 100/GB = 0.0000001 a byte.
RAW_COST_MODEL = {
    "version": "test-2026-03",
    "reporting_currency": "USD",
    "fx_to_reporting": {"USD": 1.0, "EUR": 2.0, "JPY": 0.01},
    "prices": {
        "publisher_minute": 0.01,
        "viewer_minute": 0.001,
        "transcode_minute": 0.1,
        "relay_minute": 0,
        "recording_gb_month": 0,
        "recording_retention_months": 1,
        "per_transaction": 0.01,
        "fixed_monthly": 31.0,
        "egress_tiers": [{"up_to_gb": 0.000001, "per_gb": 1000}, {"per_gb": 100}],
    },
}
COST_MODEL = parse_cost_model(RAW_COST_MODEL, "test cost model")


def scenario() -> Inputs:
    x = Inputs()
    # s-night: carol, Sun 23:00, never ended: live until the last interval_end, Mon 00:30.
    x.session("s-night", "2026-03-01 23:00", ["carol"])
    # s-duo: alice 10:00-12:50 (170 min); bob 10:35-11:05 (30 min).
    x.session("s-duo", "2026-03-02 10:00", ["alice"], end="2026-03-02 12:50")
    x.host("s-duo", "bob", "2026-03-02 10:35", "join")
    x.host("s-duo", "bob", "2026-03-02 11:05", "leave")
    # s-morning: alice alone, Wed 09:00-09:30, no media_usage.
    x.session("s-morning", "2026-03-04 09:00", ["alice"], end="2026-03-04 09:30")

    # media_usage. The event ids sort against time order (u1 is the month's third interval), so
    # pricing egress in event_id order instead of (interval_start, event_id) would put u1's
    # 1000 B in tier 1.
    #   u4 s-night Sun 23:00  publish 60 min .60, viewers 200 min .20, transcode 10 min 1.00,
    #                         egress 600 B: cum 0->600, all tier 1: 600 * .000001 = .0006
    #   u3 s-night Mon 00:00  publish 30 min .30, viewers 50 min .05,
    #                         egress 600 B: cum 600->1200: 400 B tier 1 = .0004
    #                                                      + 200 B tier 2 = .00002
    #   u1 s-duo   Mon 10:00  publish 85 min .85, viewers 500 min .50, transcode 20 min 2.00,
    #                         egress 1000 B: all tier 2 = .0001
    #   u2 s-duo   Mon 11:00  publish 115 min 1.15, viewers 100 min .10
    x.usage("u4", "s-night", "2026-03-01 23:00", "2026-03-02 00:00", publisher=3600,
            viewer=12000, transcode=600, relay=3600, egress=600, recording=5000)  # fmt: skip
    x.usage("u3", "s-night", "2026-03-02 00:00", "2026-03-02 00:30", publisher=1800,
            viewer=3000, egress=600)  # fmt: skip
    x.usage("u1", "s-duo", "2026-03-02 10:00", "2026-03-02 11:00", publisher=5100,
            viewer=30000, transcode=1200, egress=1000)  # fmt: skip
    x.usage("u2", "s-duo", "2026-03-02 11:00", "2026-03-02 12:50", publisher=6900,
            viewer=6000)  # fmt: skip

    # Sunday: two USD coin purchases (fees .30 + .60), one gift to carol, one failure.
    x.purchases(D1, "USD", 2, payment_fee=30, store_fee=60)
    x.gift("2026-03-01 23:20", "s-night", 1000, 300, {"carol": 700})
    x.failures(D1, 1)

    # Monday: one EUR purchase (EUR 2.0: .10 EUR -> .20, .25 EUR -> .50), two gifts, three
    # orders (o3 outside any live), three failures.
    x.purchases(D2, "EUR", 1, payment_fee=10, store_fee=25)
    x.gift("2026-03-02 10:40", "s-duo", 2000, 400, {"alice": 800, "bob": 800})
    x.order("o2", "2026-03-02 10:50", "s-duo", "alice", 1200, 50, 150)  # net 10.00
    x.gift("2026-03-02 11:20", "s-duo", 500, 100, {"alice": 400, "bob": 0})  # bob: share 0
    x.order("o1", "2026-03-02 11:30", "s-duo", "alice", 2500, 100, 250)  # net 21.50
    x.order("o3", "2026-03-02 14:00", None, "bob", 300, 20, 80)  # net 2.00, no session
    x.failures(D2, 3)

    # Tuesday: no session; o1 (paid Monday) is refunded.
    x.refund("o1", "2026-03-03 09:00")

    # Wednesday: a gift to alice in s-morning; a JPY purchase (JPY 0.01, no minor digits:
    # 20 JPY -> .20, 30 JPY -> .30).
    x.gift("2026-03-04 09:05", "s-morning", 1000, 200, {"alice": 800})
    x.purchases(D4, "JPY", 1, payment_fee=20, store_fee=30)
    return x


@pytest.fixture(scope="module")
def marts() -> dict[str, pa.Table]:
    return scenario().marts(COST_MODEL)


# --- comparing -----------------------------------------------------------------------------


def row(table: pa.Table, **key: object) -> dict:
    found = [r for r in table.to_pylist() if all(r[k] == v for k, v in key.items())]
    assert len(found) == 1, f"{len(found)} rows with {key}"
    return found[0]


def check(actual: dict, expected: dict, what: str) -> None:
    """Decimal expectations compare exactly (and must come back as Decimal), floats
    approximately, None means null; every mismatch is listed, not just the first."""
    wrong = []
    for col, want in expected.items():
        got = actual.get(col, "<missing column>")
        if want is None:
            ok = got is None
        elif isinstance(want, D):
            ok = isinstance(got, D) and got == want
        elif isinstance(want, float):
            ok = isinstance(got, int | float) and got == pytest.approx(want)
        else:
            ok = got == want
        if not ok:
            wrong.append(f"{col}: expected {want!r}, got {got!r}")
    assert not wrong, f"{what}:\n  " + "\n  ".join(wrong)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Published times are UTC; a naive timestamp is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- tests ---------------------------------------------------------------------------------


def test_platform_daily(marts: dict[str, pa.Table]) -> None:
    daily = marts["platform_daily"]
    # Every day from the first to the last event, Tuesday (no session) included.
    assert daily.column("day").to_pylist() == [D1, D2, D3, D4]
    for col in ("infra_cost", "transaction_cost", "gross_volume", "platform_revenue",
                "creator_earnings", "contribution"):  # fmt: skip
        typ = daily.schema.field(col).type
        assert pa.types.is_decimal(typ) and typ.scale >= 6, (col, typ)
    assert set(daily.column("cost_model_version").to_pylist()) == {"test-2026-03"}

    # Sunday. Live: s-night 23:00-24:00 = 60 min (its other 30 min are Monday's).
    # Infra: .60 + .20 + 1.00 + .0006 (u4) + 1.00 fixed (31.00 / 31 days) = 2.8006.
    # Transactions: 2 purchases + 1 gift = 3; cost .30 + .60 + 3 * .01 = .93.
    check(
        row(daily, day=D1),
        {
            "live_minutes": 60.0,
            "viewer_minutes": 200.0,  # 12000 s / 60
            "sessions": 1,  # sessions started that day (sql.py; METRICS does not define it)
            "publish_cost": D("0.60"),
            "delivery_cost": D("0.20"),
            "transcode_cost": D("1.00"),
            "relay_cost": D("0"),
            "egress_cost": D("0.0006"),
            "recording_cost": D("0"),
            "fixed_cost": D("1.00"),
            "infra_cost": D("0.60") + D("0.20") + D("1.00") + D("0.0006") + D("1.00"),
            "cost_per_live_minute": 2.8006 / 60,
            "cost_per_viewer_minute": 2.8006 / 200,
            "transactions": 3,
            "failed_transactions": 1,
            "failure_rate": 1 / (3 + 1),
            "transaction_cost": D("0.30") + D("0.60") + 3 * D("0.01"),
            "cost_per_transaction": 0.93 / 3,
            "gross_volume": D("10.00"),
            "platform_revenue": D("3.00"),
            "creator_earnings": D("7.00"),
            "contribution": D("3.00") - D("0.93") - D("2.8006"),  # -0.7306
            "contribution_margin": -0.7306 / 3.00,
            "take_rate": 3.00 / 10.00,
        },
        "platform_daily Sun",
    )

    # Monday. Live: s-night 00:00-00:30 (30) + s-duo 10:00-12:50 (170) = 200 min, counted once
    # although s-duo has two hosts. Viewers: 50 + 500 + 100 = 650 min.
    # Egress: u3 .0004 + .00002 (crosses the 1000-byte tier bound), u1 .0001 (tier 2).
    # Infra: publish .30 + .85 + 1.15, delivery .05 + .50 + .10, transcode 2.00, egress
    # .00052, fixed 1.00 = 5.95052.
    # Transactions: 1 purchase + 2 gifts + 3 orders = 6; cost .20 + .50 + 6 * .01 = .76.
    # Gross: gifts 20 + 5, orders 12 + 25 + 3 = 65. Revenue: fees 4 + 1, commissions
    # 1.50 + 2.50 + .80 = 9.80. Earnings: shares 8 + 8 + 4, nets 10 + 21.50 + 2 = 53.50.
    check(
        row(daily, day=D2),
        {
            "live_minutes": 30.0 + 170.0,
            "viewer_minutes": 50.0 + 500.0 + 100.0,
            "sessions": 1,
            "publish_cost": D("0.30") + D("0.85") + D("1.15"),
            "delivery_cost": D("0.05") + D("0.50") + D("0.10"),
            "transcode_cost": D("2.00"),
            "egress_cost": D("0.0004") + D("0.00002") + D("0.0001"),
            "fixed_cost": D("1.00"),
            "infra_cost": D("2.30") + D("0.65") + D("2.00") + D("0.00052") + D("1.00"),
            "cost_per_live_minute": 5.95052 / 200,
            "cost_per_viewer_minute": 5.95052 / 650,
            "transactions": 6,
            "failed_transactions": 3,
            "failure_rate": 3 / (6 + 3),
            "payment_fees": D("0.20"),
            "store_fees": D("0.50"),
            "transaction_cost": D("0.20") + D("0.50") + 6 * D("0.01"),
            "cost_per_transaction": 0.76 / 6,
            "gross_volume": D("20") + D("5") + D("12") + D("25") + D("3"),
            "platform_revenue": D("4") + D("1") + D("1.50") + D("2.50") + D("0.80"),
            "creator_earnings": D("8") + D("8") + D("4") + D("10") + D("21.50") + D("2"),
            "contribution": D("9.80") - D("0.76") - D("5.95052"),  # 3.08948
            "contribution_margin": 3.08948 / 9.80,
            "take_rate": 9.80 / 65.00,
        },
        "platform_daily Mon",
    )

    # Tuesday: nothing live, yet the day's fixed 1.00 is an infra cost (allocated to no
    # session). The refund of o1 reverses its commission 2.50 and creator net 21.50 today, and
    # its payment fee 1.00 becomes today's transaction cost. Zero denominators give nulls.
    check(
        row(daily, day=D3),
        {
            "live_minutes": 0.0,
            "viewer_minutes": 0.0,
            "sessions": 0,
            "infra_cost": D("1.00"),
            "cost_per_live_minute": None,
            "cost_per_viewer_minute": None,
            "transactions": 0,
            "failed_transactions": 0,
            "failure_rate": None,
            "transaction_cost": D("1.00"),
            "cost_per_transaction": None,
            "gross_volume": D("0"),
            "platform_revenue": D("-2.50"),
            "creator_earnings": D("-21.50"),
            "contribution": D("-2.50") - D("1.00") - D("1.00"),
            "contribution_margin": -4.50 / -2.50,
            "take_rate": None,
        },
        "platform_daily Tue",
    )

    # Wednesday: s-morning 30 min with no media_usage: infra is the fixed 1.00 only.
    # Transactions: the JPY purchase + the gift = 2; cost .20 + .30 + 2 * .01 = .52.
    check(
        row(daily, day=D4),
        {
            "live_minutes": 30.0,
            "viewer_minutes": 0.0,
            "sessions": 1,
            "infra_cost": D("1.00"),
            "cost_per_live_minute": 1.00 / 30,
            "cost_per_viewer_minute": None,
            "transactions": 2,
            "failed_transactions": 0,
            "failure_rate": 0.0,
            "transaction_cost": D("0.20") + D("0.30") + 2 * D("0.01"),
            "cost_per_transaction": 0.52 / 2,
            "gross_volume": D("10.00"),
            "platform_revenue": D("2.00"),
            "creator_earnings": D("8.00"),
            "contribution": D("2.00") - D("0.52") - D("1.00"),
            "contribution_margin": 0.48 / 2.00,
            "take_rate": 2.00 / 10.00,
        },
        "platform_daily Wed",
    )


# Session infra costs, used by session_economics and creator_weekly:
# Monday's fixed 1.00 is shared by live minutes: s-night 30 of 200 -> .15, s-duo 170 -> .85.
S_NIGHT_INFRA = D("1.8006") + D("0.35042") + D("1.00") + D("0.15")  # u4 + u3 + Sun + Mon share
S_DUO_INFRA = D("3.3501") + D("1.25") + D("0.85")  # u1 + u2 + Mon share = 5.4501
S_MORNING_INFRA = D("1.00")  # Wednesday's whole fixed cost, no usage


def test_session_economics(marts: dict[str, pa.Table]) -> None:
    sessions = marts["session_economics"]
    assert sessions.column("session_id").to_pylist() == ["s-night", "s-duo", "s-morning"]

    # s-night has no session_ended: live until the last interval_end, Mon 00:30 = 90 min.
    # Its `ended_at` stays null: METRICS does not say whether ended_at is the session_ended
    # time or the end of live time; sql.py publishes the session_ended time (null here).
    # Session transaction cost is not defined by METRICS either; sql.py charges
    # per_transaction for the session's gifts and orders plus refunded orders' payment fees.
    night = row(sessions, session_id="s-night")
    assert night["creator_ids"] == ["carol"]
    assert as_utc(night["started_at"]) == t("2026-03-01 23:00")
    assert night["ended_at"] is None
    check(
        night,
        {
            "live_minutes": 90.0,
            "viewer_minutes": 200.0 + 50.0,
            "gross_volume": D("10.00"),
            "creator_earnings": D("7.00"),
            "platform_revenue": D("3.00"),
            "infra_cost": S_NIGHT_INFRA,  # 3.30102
            "contribution": D("3.00") - D("0.01") - S_NIGHT_INFRA,
        },
        "session_economics s-night",
    )

    # s-duo: owner first, then the co-host who joined. Gross: gifts 20 + 5, orders 12 + 25
    # (o3 had no session). Earnings 8 + 8 + 4 + 10 + 21.50 - 21.50 (refund of o1) = 30.
    # Revenue 4 + 1 + 1.50 + 2.50 - 2.50 = 6.50. Transaction cost 4 * .01 + o1's fee 1.00.
    duo = row(sessions, session_id="s-duo")
    assert duo["creator_ids"] == ["alice", "bob"]
    assert as_utc(duo["started_at"]) == t("2026-03-02 10:00")
    assert as_utc(duo["ended_at"]) == t("2026-03-02 12:50")
    check(
        duo,
        {
            "live_minutes": 170.0,
            "viewer_minutes": 500.0 + 100.0,
            "gross_volume": D("20") + D("5") + D("12") + D("25"),
            "creator_earnings": D("8") + D("8") + D("4") + D("10") + D("21.50") - D("21.50"),
            "platform_revenue": D("4") + D("1") + D("1.50") + D("2.50") - D("2.50"),
            "infra_cost": S_DUO_INFRA,
            "contribution": D("6.50") - (4 * D("0.01") + D("1.00")) - S_DUO_INFRA,  # 0.0099
        },
        "session_economics s-duo",
    )

    morning = row(sessions, session_id="s-morning")
    assert morning["creator_ids"] == ["alice"]
    check(
        morning,
        {
            "live_minutes": 30.0,
            "viewer_minutes": 0.0,
            "gross_volume": D("10.00"),
            "creator_earnings": D("8.00"),
            "platform_revenue": D("2.00"),
            "infra_cost": S_MORNING_INFRA,
            "contribution": D("2.00") - D("0.01") - S_MORNING_INFRA,
        },
        "session_economics s-morning",
    )


def test_session_creator_ids_keep_the_owner_first_when_two_hosts_start() -> None:
    # session_started lists the hosts present at the start, the owner first (docs/telemetry.md):
    # here the owner "zoe" sorts after her co-host "amy"; "bo" joins later.
    x = Inputs()
    x.session("s-pair", "2026-03-10 20:00", ["zoe", "amy"], end="2026-03-10 21:00")
    x.host("s-pair", "bo", "2026-03-10 20:10", "join")
    marts = x.marts(COST_MODEL)
    ids = row(marts["session_economics"], session_id="s-pair")["creator_ids"]
    assert ids[0] == "zoe", ids
    assert sorted(ids) == ["amy", "bo", "zoe"]


def test_a_host_who_reconnects_at_the_same_instant_stays_present() -> None:
    # bo leaves and rejoins at 20:30 (a reconnect): present 20:10-20:30 and 20:30-21:00.
    x = Inputs()
    x.session("s-re", "2026-03-10 20:00", ["zoe"], end="2026-03-10 21:00")
    x.host("s-re", "bo", "2026-03-10 20:10", "join")
    x.host("s-re", "bo", "2026-03-10 20:30", "join")
    x.host("s-re", "bo", "2026-03-10 20:30", "leave")
    weekly = x.marts(COST_MODEL)["creator_weekly"]
    assert row(weekly, creator_id="bo")["live_minutes"] == pytest.approx(20 + 30)
    assert row(weekly, creator_id="zoe")["live_minutes"] == pytest.approx(60)


def test_creator_weekly(marts: dict[str, pa.Table]) -> None:
    weekly = marts["creator_weekly"]
    keys = sorted((r["week"], r["creator_id"]) for r in weekly.to_pylist())
    assert keys == [(W1, "carol"), (W2, "alice"), (W2, "bob"), (W2, "carol")]

    # carol, week of Mon 02-23: s-night from Sun 23:00 to the Monday midnight is this week's
    # (60 min, clock hour 23); its 30 min after midnight belong to the next week. s-night
    # started this week, so the session and (as sql.py does; METRICS does not say which week a
    # session's cost lands in) its whole infra cost count here. Gift at 23:20: 20 min in.
    check(
        row(weekly, week=W1, creator_id="carol"),
        {
            "live_minutes": 60.0,
            "live_hours": 1,
            "earning_hours": 1,
            "earning_hour_ratio": 1.0,
            "sessions": 1,
            "sessions_with_earnings": 1,
            "median_minutes_to_first_earning": 20.0,
            "earning_events": 1,
            "earnings": D("7.00"),
            "top_session_share": 1.0,
            "infra_cost": S_NIGHT_INFRA,  # carol is the only host: all of 3.30102
        },
        "creator_weekly carol W1",
    )
    # carol, week of Mon 03-02: 00:00-00:30 live (hour 00), no earning, no session started.
    check(
        row(weekly, week=W2, creator_id="carol"),
        {
            "live_minutes": 30.0,
            "live_hours": 1,
            "earning_hours": 0,
            "earning_hour_ratio": 0.0,
            "sessions": 0,
            "sessions_with_earnings": 0,
            "median_minutes_to_first_earning": None,
            "earning_events": 0,
            "earnings": D("0"),
            "top_session_share": None,  # 0 / 0
            "infra_cost": D("0"),
        },
        "creator_weekly carol W2",
    )

    # alice: s-duo 10:00-12:50 (170 min; clock hours 10, 11, 12) and s-morning 09:00-09:30
    # (30 min; hour 9) -> 200 min, 4 live hours. Earning events: gift 10:40, o2 10:50 (hour
    # 10), gift 11:20, o1 11:30 (hour 11), gift Wed 09:05 (hour 9) -> 5 events in 3 hours.
    # First earning: s-duo 10:40 - 10:00 = 40 min, s-morning 09:05 - 09:00 = 5 min.
    # Earnings: s-duo 8 + 10 + 4 + 21.50 - 21.50 (refund Tue) = 22, s-morning 8 -> 30.
    # Infra: s-duo by presence minutes 170 of (170 + 30) + all of s-morning.
    check(
        row(weekly, week=W2, creator_id="alice"),
        {
            "live_minutes": 170.0 + 30.0,
            "live_hours": 4,
            "earning_hours": 3,
            "earning_hour_ratio": 3 / 4,
            "sessions": 2,
            "sessions_with_earnings": 2,
            "median_minutes_to_first_earning": (40 + 5) / 2,
            "earning_events": 5,
            "earnings": D("22") + D("8"),
            "top_session_share": 22 / 30,
            "infra_cost": S_DUO_INFRA * 170 / 200 + S_MORNING_INFRA,  # 4.632585 + 1.00
        },
        "creator_weekly alice W2",
    )

    # bob: present 10:35-11:05 = 30 min, yet in two clock hours (10 and 11). Earning events:
    # the 10:40 gift (share 8.00) and o3 at 14:00 (seller, no session, not in a live hour);
    # the 11:20 gift gave him a share of 0, so it is not an earning event. Earning hours: 10.
    # First earning in s-duo 10:40 - 10:35 = 5 min. Largest session: s-duo 8 of 8 + 2.
    check(
        row(weekly, week=W2, creator_id="bob"),
        {
            "live_minutes": 30.0,
            "live_hours": 2,
            "earning_hours": 1,
            "earning_hour_ratio": 1 / 2,
            "sessions": 1,
            "sessions_with_earnings": 1,
            "median_minutes_to_first_earning": 5.0,
            "earning_events": 2,
            "earnings": D("8") + D("2"),
            "top_session_share": 8 / 10,
            "infra_cost": S_DUO_INFRA * 30 / 200,  # 0.817515
        },
        "creator_weekly bob W2",
    )


def test_platform_weekly(marts: dict[str, pa.Table]) -> None:
    weekly = marts["platform_weekly"]
    assert weekly.column("week").to_pylist() == [W1, W2]

    # Week of 02-23: carol alone (earnings 7): no inequality.
    check(
        row(weekly, week=W1),
        {
            "active_creators": 1,
            "earning_creators": 1,
            "earning_creator_share": 1.0,
            "median_earning_hour_ratio": 1.0,
            "earnings_gini": 0.0,
            "top1pct_earnings_share": 1.0,
        },
        "platform_weekly W1",
    )

    # Week of 03-02: active alice (ratio 3/4, earnings 30), bob (1/2, 10), carol (0, 0).
    # Gini of (0, 10, 30): ordered pairs (i, j) over all i, j (n^2 = 9, the self-pairs add 0):
    # sum |xi - xj| = 2 * (10 + 30 + 20) = 120, mean abs difference 120 / 9, mean 40 / 3,
    # gini = (120 / 9) / (2 * 40 / 3) = 0.5. Top ceil(1% of 3) = 1 creator: 30 / 40.
    check(
        row(weekly, week=W2),
        {
            "active_creators": 3,
            "earning_creators": 2,
            "earning_creator_share": 2 / 3,
            "median_earning_hour_ratio": 0.5,  # median of 0, 1/2, 3/4
            "earnings_gini": (120 / 9) / (2 * 40 / 3),
            "top1pct_earnings_share": 30 / 40,
        },
        "platform_weekly W2",
    )


def test_relay_and_recording_cost() -> None:
    # relay .06 a minute = .001 a second; recording 1000 per GB-month kept 2 months:
    # 500 B / 1e9 * 1000 * 2 = .001. One interval, 120 s relay -> .12.
    raw = copy.deepcopy(RAW_COST_MODEL)
    raw["prices"].update(relay_minute=0.06, recording_gb_month=1000, recording_retention_months=2)
    x = Inputs()
    x.session("s", "2026-03-05 08:00", ["alice"], end="2026-03-05 08:10")
    x.usage("u", "s", "2026-03-05 08:00", "2026-03-05 08:10", relay=120, recording=500)
    marts = x.marts(parse_cost_model(raw))
    check(
        row(marts["platform_daily"], day=dt.date(2026, 3, 5)),
        {
            "relay_cost": D("0.12"),
            "recording_cost": D("0.001"),
            "infra_cost": D("0.12") + D("0.001") + D("1.00"),
        },
        "relay and recording",
    )
    check(
        row(marts["session_economics"], session_id="s"),
        {"infra_cost": D("1.121")},
        "relay and recording session",
    )


def test_a_coin_refund_returns_the_store_fee_on_its_day() -> None:
    """Mar 1: one purchase, processor fee 0.33, store fee 3.00, a transaction costing 0.01 more.
    Mar 2: that purchase refunded; the store gives back its 3.00, the processor keeps 0.33, and
    the refund is no transaction: the day's transaction cost is -3.00."""
    x = Inputs()
    x.session("s", "2026-03-01 08:00", ["alice"], end="2026-03-01 08:10")
    x.purchases(D1, "USD", 1, payment_fee=33, store_fee=300)
    x.coin_refund(D2, store_fee_returned=300)
    daily = x.marts(parse_cost_model(copy.deepcopy(RAW_COST_MODEL)))["platform_daily"]
    check(
        row(daily, day=D1),
        {
            "transactions": 1,
            "payment_fees": D("0.33"),
            "store_fees": D("3.00"),
            "transaction_cost": D("0.33") + D("3.00") + D("0.01"),
        },  # fmt: skip
        "purchase day",
    )
    check(
        row(daily, day=D2),
        {
            "transactions": 0,
            "payment_fees": D("0"),
            "store_fees": D("-3.00"),
            "transaction_cost": D("-3.00"),
        },  # fmt: skip
        "refund day",
    )


@pytest.mark.parametrize("where", ["gift", "order", "purchase"])
def test_currency_without_fx_rate_is_refused(where: str) -> None:
    x = Inputs()
    x.session("s", "2026-03-05 08:00", ["alice"], end="2026-03-05 09:00")
    if where == "gift":
        x.gift("2026-03-05 08:30", "s", 100, 10, {"alice": 90}, cur="GBP")
    elif where == "order":
        x.order("o", "2026-03-05 08:30", "s", "alice", 100, 5, 10, cur="GBP")
    else:
        x.purchases(dt.date(2026, 3, 5), "GBP", 1, 5, 10)
    with pytest.raises(ModelInputError, match="GBP"):
        x.marts(COST_MODEL)


def _with(path: tuple[str, ...], value: object) -> dict:
    raw = copy.deepcopy(RAW_COST_MODEL)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        _with(("prices", "viewer_minute"), -0.001),
        _with(("prices", "fixed_monthly"), -31.0),
        _with(("prices", "egress_tiers"), [{"up_to_gb": 1, "per_gb": -5}, {"per_gb": 1}]),
        _with(("fx_to_reporting", "EUR"), -2.0),
    ],
    ids=["viewer_minute", "fixed_monthly", "egress per_gb", "fx rate"],
)
def test_cost_model_rejects_negative_numbers(raw: dict) -> None:
    with pytest.raises(CostModelError, match="non-negative"):
        parse_cost_model(raw)


@pytest.mark.parametrize(
    "tiers",
    [
        [{"up_to_gb": 2, "per_gb": 1}, {"up_to_gb": 1, "per_gb": 1}, {"per_gb": 1}],
        [{"up_to_gb": 1, "per_gb": 1}, {"up_to_gb": 1, "per_gb": 1}, {"per_gb": 1}],
    ],
    ids=["decreasing", "equal"],
)
def test_cost_model_rejects_tier_bounds_that_do_not_increase(tiers: list[dict]) -> None:
    with pytest.raises(CostModelError, match="increase"):
        parse_cost_model(_with(("prices", "egress_tiers"), tiers))
