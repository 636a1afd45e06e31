"""Data-quality suites over the raw tables and the marts, validated with Great Expectations.

Great Expectations stays off the hot path: the raw suite validates small frames of aggregates
computed in ClickHouse (one row per table, column or file), never the raw rows, and the marts
suite validates the marts themselves, which are small. Each check has a severity: an
"error" outcome that fails stops the marts from being published, a "warn" outcome is reported
and shown on the data health page but publishes anyway.

Which money may be negative follows shared/METRICS.md: gross volume and every cost are sums of
non-negative amounts, so a negative value is broken data; platform revenue, creator earnings
and contribution of a day, a session or a creator's week fall below zero when refunds (dated
on the refund's day) take back more than that period earned, so they are left unbounded. Ratios
are checked against the range their definition guarantees: failure rate, earning hour ratio,
earning creator share and the median earning hour ratio always lie in [0, 1]; take rate is at
most 1 and lies in [0, 1] whenever platform revenue is not negative; the earnings Gini and the
top 1% share lie in [0, 1] in weeks where no active creator's earnings are negative; a
creator's top-session share lies in [0, 1] in weeks without a refund of their orders (a refund
can make a session's or the week's earnings negative); contribution margin is unbounded. A
check that cannot be evaluated (a mart without a column it needs, say) fails rather than passes.

The check definitions are plain data, so the pipeline can declare one Dagster asset check per
check and table without importing Great Expectations (which is slow to import); it is imported
only when a suite runs.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.schema import EVENT_INDEX, INGEST_LOG, QUARANTINE, ensure_schema, raw_table
from live_runtime.events import EVENT_FIELDS
from models.cost_model import PICO, CostModel, load_cost_model

if TYPE_CHECKING:
    from ingest.health import Freshness

Severity = Literal["error", "warn"]
Where = tuple[str, str, Any]  # (column, comparison, value): a row condition
_COMPARE = {"==": operator.eq, ">=": operator.ge}
RAW_SUITE, MARTS_SUITE, FRESHNESS_SUITE = "raw", "marts", "freshness"
EXAMPLES = 3  # failing rows quoted in an outcome's observed text
QUARANTINE_SHARE_WARN = 0.01  # more than this share of lines quarantined is worth a look


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict on one table: what was expected, what was seen, how bad a miss is."""

    suite: str
    check: str
    target: str  # the table (warehouse table or mart) the outcome is about
    passed: bool
    severity: Severity
    observed: str
    description: str

    @property
    def blocks_publish(self) -> bool:
        return self.severity == "error" and not self.passed


def blocking_failures(outcomes: Iterable[CheckOutcome]) -> list[CheckOutcome]:
    """The failed error-level outcomes: any of them means the marts must not be published."""
    return [o for o in outcomes if o.blocks_publish]


@dataclass(frozen=True)
class Check:
    """One expectation of a suite, as data: which frame it reads, what it expects, and which
    tables its outcomes are about. Several checks with one name and target merge into one
    outcome (a rule over several columns)."""

    name: str
    severity: Severity
    description: str
    frame: str
    expectation: str  # a Great Expectations expectation class, e.g. ExpectColumnValuesToBeBetween
    args: Mapping[str, Any]
    targets: tuple[str, ...]  # one outcome per target
    key: str | None = None  # frame column naming each row's target; None: every row is the target
    where: Where | None = None  # the rows the expectation applies to
    show: tuple[str, ...] = ()  # columns quoted in the observed text

    @property
    def columns(self) -> tuple[str, ...]:
        names = ("column", "column_A", "column_B")
        found = tuple(self.args[n] for n in names if n in self.args)
        return found + tuple(self.args.get("column_list", ()))


# ---------------------------------------------------------------------------------------------
# The raw suite: aggregates of the raw tables and the ingest bookkeeping.

RAW_TABLES = tuple(raw_table(t) for t in EVENT_FIELDS)
USAGE_FIELDS = (
    "publisher_seconds",
    "viewer_seconds",
    "transcode_seconds",
    "relay_seconds",
    "egress_bytes",
    "recording_bytes",
)
# (event type, column or SQL expression over its rows, least allowed value); shared/TELEMETRY.md
_LOWER_BOUNDS: tuple[tuple[str, str, int], ...] = (
    *(
        (t, f.name, 0)
        for t, fields in EVENT_FIELDS.items()
        for f in fields
        if f.is_money and f.kind == "int"
    ),
    ("coins_purchased", "coins", 1),
    ("gift_sent", "coins", 1),
    ("gift_sent", "splits.share_minor", 0),
    *(("media_usage", name, 0) for name in USAGE_FIELDS),
)
BOUNDED_TABLES = tuple(dict.fromkeys(raw_table(t) for t, _, _ in _LOWER_BOUNDS))

# (event type, rule, SQL condition a row breaks it with)
_INVARIANTS: tuple[tuple[str, str, str], ...] = (
    (
        "gift_sent",
        "shares + platform fee = value",
        "arraySum(s -> tupleElement(s, 'share_minor'), splits) + platform_fee_minor != value_minor",
    ),
    (
        "order_paid",
        "creator net = gross - payment fee - commission",
        "creator_net_minor != gross_minor - payment_fee_minor - commission_minor",
    ),
    ("media_usage", "interval ends after it starts", "interval_end < interval_start"),
    ("payout_issued", "period ends after it starts", "period_end < period_start"),
)
INVARIANT_TABLES = tuple(raw_table(t) for t, _, _ in _INVARIANTS)

# (event type, id column, a repeat counts money twice in the marts)
_BUSINESS_IDS: tuple[tuple[str, str, bool], ...] = (
    ("gift_sent", "gift_id", True),
    ("coins_purchased", "purchase_id", True),
    ("order_paid", "order_id", False),  # the models keep an order's first event
    ("order_refunded", "order_id", False),  # and a refund's first event
    ("payout_issued", "payout_id", False),  # payouts are not in the marts
    ("session_started", "session_id", False),  # sessions keep their first start and end
    ("session_ended", "session_id", False),
)
MONEY_ID_TABLES = tuple(raw_table(t) for t, _, money in _BUSINESS_IDS if money)
OTHER_ID_TABLES = tuple(raw_table(t) for t, _, money in _BUSINESS_IDS if not money)

RAW_CHECKS: tuple[Check, ...] = (
    Check(
        "one_row_per_event_id",
        "error",
        "Each event_id appears once in its raw table (exactly-once loading).",
        "raw_tables",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "rows", "column_B": "distinct_event_ids"},
        RAW_TABLES,
        key="table",
        show=("rows", "distinct_event_ids"),
    ),
    Check(
        "rows_in_event_index",
        "error",
        "Every raw row was loaded by ingest: the table's rows equal its entries in the "
        "deduplication index.",
        "raw_tables",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "rows", "column_B": "indexed"},
        RAW_TABLES,
        key="table",
        show=("rows", "indexed"),
    ),
    Check(
        "not_in_future",
        "warn",
        "No event occurred more than a day after the check ran (a clock or time zone problem).",
        "raw_tables",
        "ExpectColumnValuesToBeBetween",
        {"column": "future_rows", "min_value": 0, "max_value": 0},
        RAW_TABLES,
        key="table",
        show=("future_rows", "last_at"),
    ),
    Check(
        "amounts_within_bounds",
        "error",
        "Money amounts and usage are not negative, coins are positive (shared/TELEMETRY.md).",
        "raw_bounds",
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {
            "column_A": "min_value",
            "column_B": "lower_bound",
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        },
        BOUNDED_TABLES,
        key="table",
        show=("column", "min_value", "lower_bound"),
    ),
    Check(
        "invariants_hold",
        "error",
        "No row breaks its event's invariant (gift split, order net, interval order).",
        "raw_invariants",
        "ExpectColumnValuesToBeBetween",
        {"column": "broken", "min_value": 0, "max_value": 0},
        INVARIANT_TABLES,
        key="table",
        show=("rule", "broken"),
    ),
    Check(
        "money_ids_unique",
        "error",
        "A gift or coin purchase has one event: a second one under another event_id would be "
        "counted twice in the marts.",
        "raw_ids",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "rows", "column_B": "distinct_ids"},
        MONEY_ID_TABLES,
        key="table",
        show=("id", "rows", "distinct_ids"),
    ),
    Check(
        "ids_unique",
        "warn",
        "Orders, refunds, payouts and sessions have one event each (the models keep the first).",
        "raw_ids",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "rows", "column_B": "distinct_ids"},
        OTHER_ID_TABLES,
        key="table",
        show=("id", "rows", "distinct_ids"),
    ),
    Check(
        "refunds_match_orders",
        "warn",
        "Every refund names a loaded order and refunds its gross in full (v1 full refunds); a "
        "refund without its order takes nothing back in the marts.",
        "raw_refunds",
        "ExpectColumnValuesToBeBetween",
        {"column": "unmatched", "min_value": 0, "max_value": 0},
        (raw_table("order_refunded"),),
        key="table",
        show=("refunds", "without_order", "not_full"),
    ),
    Check(
        "lines_accounted_for",
        "error",
        "For every ingested file, lines read = loaded + duplicates + quarantined.",
        "ingest_files",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "lines_read", "column_B": "accounted"},
        (INGEST_LOG,),
        show=("file", "lines_read", "accounted"),
    ),
    Check(
        "totals_agree",
        "error",
        "The ingest log's loaded lines equal the raw tables' rows and the deduplication index; "
        "its quarantined lines equal the quarantine's rows.",
        "ingest_totals",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "logged", "column_B": "stored"},
        (INGEST_LOG, QUARANTINE),
        key="table",
        show=("what", "logged", "stored"),
    ),
    Check(
        "few_lines_quarantined",
        "warn",
        f"At most {QUARANTINE_SHARE_WARN:.0%} of the lines read were quarantined.",
        "ingest_summary",
        "ExpectColumnValuesToBeBetween",
        {"column": "quarantined_share", "min_value": 0, "max_value": QUARANTINE_SHARE_WARN},
        (QUARANTINE,),
        key="table",
        show=("lines_read", "quarantined", "quarantined_share"),
    ),
    Check(
        "no_conflicting_duplicates",
        "warn",
        "No line reused a loaded event_id with a different payload (they are kept in "
        "quarantine for review, the first payload stays).",
        "ingest_summary",
        "ExpectColumnValuesToBeBetween",
        {"column": "conflicting", "min_value": 0, "max_value": 0},
        (QUARANTINE,),
        key="table",
        show=("conflicting",),
    ),
)


def raw_check_targets() -> list[tuple[Check, str]]:
    """Every (check, table) pair the raw suite reports on, in a stable order."""
    return [(check, target) for check in RAW_CHECKS for target in check.targets]


def check_raw(client: Client, now: datetime | None = None) -> list[CheckOutcome]:
    """The raw suite: one outcome per check and table, from aggregates computed in ClickHouse."""
    ensure_schema(client)
    frames = raw_frames(client, now or datetime.now(UTC))
    return run_suite(RAW_SUITE, RAW_CHECKS, frames)


def raw_frames(client: Client, now: datetime) -> dict[str, pd.DataFrame]:
    """The small aggregate frames the raw suite validates."""
    return {
        "raw_tables": _raw_tables_frame(client, now),
        "raw_bounds": _raw_bounds_frame(client),
        "raw_invariants": _rows_frame(
            client,
            ["table", "rule", "broken"],
            [
                (
                    f"SELECT '{raw_table(t)}', '{rule}', countIf({broken}) FROM {raw_table(t)}",
                    {},
                )
                for t, rule, broken in _INVARIANTS
            ],
        ),
        "raw_ids": _raw_ids_frame(client),
        "raw_refunds": _raw_refunds_frame(client),
        "ingest_files": _ingest_files_frame(client),
        "ingest_totals": _ingest_totals_frame(client),
        "ingest_summary": _ingest_summary_frame(client),
    }


def _rows_frame(
    client: Client, columns: list[str], queries: list[tuple[str, dict[str, Any]]]
) -> pd.DataFrame:
    rows = [
        row for sql, params in queries for row in client.query(sql, parameters=params).result_rows
    ]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _raw_tables_frame(client: Client, now: datetime) -> pd.DataFrame:
    indexed = dict(
        client.query(
            f"SELECT event_type, count() FROM {EVENT_INDEX} GROUP BY event_type"
        ).result_rows
    )
    frame = _rows_frame(
        client,
        ["table", "rows", "distinct_event_ids", "first_at", "last_at", "future_rows"],
        [
            (
                f"SELECT '{raw_table(t)}', count(), uniqExact(event_id), minOrNull(occurred_at), "
                f"maxOrNull(occurred_at), countIf(occurred_at > {{limit:DateTime64(6, 'UTC')}}) "
                f"FROM {raw_table(t)}",
                {"limit": now + timedelta(days=1)},
            )
            for t in EVENT_FIELDS
        ],
    )
    frame["indexed"] = [indexed.get(t, 0) for t in EVENT_FIELDS]
    return frame


def _raw_bounds_frame(client: Client) -> pd.DataFrame:
    queries = []
    for event_type, column, bound in _LOWER_BOUNDS:
        table = raw_table(event_type)
        if column == "splits.share_minor":
            sql = f"SELECT minOrNull(s.share_minor) FROM {table} ARRAY JOIN splits AS s"
        else:
            sql = f"SELECT minOrNull({column}) FROM {table}"
        queries.append((f"SELECT '{table}', '{column}', ({sql}), {bound}", {}))
    return _rows_frame(client, ["table", "column", "min_value", "lower_bound"], queries)


def _raw_ids_frame(client: Client) -> pd.DataFrame:
    return _rows_frame(
        client,
        ["table", "id", "rows", "distinct_ids"],
        [
            (
                f"SELECT '{raw_table(t)}', '{column}', count(), uniqExact({column}) FROM "
                f"{raw_table(t)}",
                {},
            )
            for t, column, _ in _BUSINESS_IDS
        ],
    )


def _raw_refunds_frame(client: Client) -> pd.DataFrame:
    refunds, orders = raw_table("order_refunded"), raw_table("order_paid")
    frame = _rows_frame(
        client,
        ["table", "refunds", "without_order", "not_full"],
        [
            (
                f"SELECT '{refunds}', count(), countIf(o.order_id = ''), "
                f"countIf(o.order_id != '' AND r.refund_minor != o.gross) "
                f"FROM {refunds} AS r LEFT JOIN (SELECT order_id, "
                f"argMin(gross_minor, occurred_at) AS gross FROM {orders} GROUP BY order_id) "
                f"AS o ON o.order_id = r.order_id SETTINGS join_use_nulls = 0",
                {},
            )
        ],
    )
    frame["unmatched"] = frame["without_order"] + frame["not_full"]
    return frame


def _ingest_files_frame(client: Client) -> pd.DataFrame:
    return _rows_frame(
        client,
        ["file", "lines_read", "accounted"],
        [
            (
                f"SELECT _file, lines_read, loaded + duplicates + quarantined FROM {INGEST_LOG} "
                "ORDER BY _file",
                {},
            )
        ],
    )


def _ingest_totals_frame(client: Client) -> pd.DataFrame:
    raw_rows = " + ".join(f"(SELECT count() FROM {t})" for t in RAW_TABLES)
    loaded = f"(SELECT sum(loaded) FROM {INGEST_LOG})"
    return _rows_frame(
        client,
        ["table", "what", "logged", "stored"],
        [
            (f"SELECT '{INGEST_LOG}', 'loaded lines vs raw rows', {loaded}, {raw_rows}", {}),
            (
                f"SELECT '{INGEST_LOG}', 'loaded lines vs event index', {loaded}, "
                f"(SELECT count() FROM {EVENT_INDEX})",
                {},
            ),
            (
                f"SELECT '{QUARANTINE}', 'quarantined lines vs quarantine rows', "
                f"(SELECT sum(quarantined) FROM {INGEST_LOG}), (SELECT count() FROM {QUARANTINE})",
                {},
            ),
        ],
    )


def _ingest_summary_frame(client: Client) -> pd.DataFrame:
    frame = _rows_frame(
        client,
        ["table", "lines_read", "quarantined", "conflicting"],
        [
            (
                f"SELECT '{QUARANTINE}', sum(lines_read), sum(quarantined), sum(conflicting) "
                f"FROM {INGEST_LOG}",
                {},
            )
        ],
    )
    read = int(frame["lines_read"][0])
    frame["quarantined_share"] = [int(frame["quarantined"][0]) / read if read else 0.0]
    return frame


# ---------------------------------------------------------------------------------------------
# The marts suite: the published tables themselves, and their totals against the raw tables.

GRAINS: dict[str, tuple[str, ...]] = {
    "platform_daily": ("day",),
    "creator_weekly": ("week", "creator_id"),
    "platform_weekly": ("week",),
    "session_economics": ("session_id",),
}
# Amounts that are sums of non-negative amounts (see the module docstring for the others).
NON_NEGATIVE: dict[str, tuple[str, ...]] = {
    "platform_daily": (
        "gross_volume",
        "infra_cost",
        "transaction_cost",
        "live_minutes",
        "viewer_minutes",
        "sessions",
        "transactions",
        "failed_transactions",
    ),
    "session_economics": ("gross_volume", "infra_cost", "live_minutes", "viewer_minutes"),
    "creator_weekly": (
        "infra_cost",
        "live_minutes",
        "live_hours",
        "earning_hours",
        "sessions",
        "sessions_with_earnings",
        "earning_events",
    ),
    "platform_weekly": ("active_creators", "earning_creators"),
}
# Cost and fee parts of platform_daily beyond the contract's columns, checked when published.
DAILY_PARTS = (
    "publish_cost",
    "delivery_cost",
    "transcode_cost",
    "relay_cost",
    "egress_cost",
    "recording_cost",
    "fixed_cost",
    "payment_fees",
    "store_fees",
    "per_transaction_fees",
    "refunded_payment_fees",
    "gift_platform_fees",
    "order_commissions",
    "refunded_commissions",
)
# (mart, ratio, row condition under which its definition keeps it in [0, 1])
UNIT_RATIOS: tuple[tuple[str, str, Where | None], ...] = (
    ("platform_daily", "failure_rate", None),
    ("platform_daily", "take_rate", ("platform_revenue", ">=", 0)),
    ("creator_weekly", "earning_hour_ratio", None),
    ("creator_weekly", "top_session_share", ("without_refunds", "==", True)),
    ("platform_weekly", "earning_creator_share", None),
    ("platform_weekly", "median_earning_hour_ratio", None),
    ("platform_weekly", "earnings_gini", ("earnings_all_non_negative", "==", True)),
    ("platform_weekly", "top1pct_earnings_share", ("earnings_all_non_negative", "==", True)),
)
# (mart, smaller, larger): a part never exceeds its whole
ORDERED_COUNTS: tuple[tuple[str, str, str], ...] = (
    ("creator_weekly", "earning_hours", "live_hours"),
    ("creator_weekly", "sessions_with_earnings", "sessions"),
    ("platform_weekly", "earning_creators", "active_creators"),
)
# platform_daily totals reconciled with the raw tables: (metric, published parts it sums)
RECONCILED: tuple[tuple[str, int], ...] = (
    ("transactions", 0),
    ("failed_transactions", 0),
    ("gross_volume", 1),
    ("platform_revenue", 3),
    ("creator_earnings", 1),
)
PUBLISHED_QUANTUM = Decimal("0.000000001")  # marts publish money with nine decimal places


def check_marts(
    marts: Mapping[str, pa.Table], client: Client, cost_model: CostModel | None = None
) -> list[CheckOutcome]:
    """The marts suite: grain, signs and ranges of every mart present, and platform_daily's
    totals against the raw tables (converted with `cost_model`'s fx, the default model when
    None: pass the model the marts were built with)."""
    frames = {name: table.to_pandas() for name, table in marts.items()}
    frames = {**frames, **_derived_frames(frames, client)}
    checks = mart_checks(frames)
    if "platform_daily" in frames:
        model = cost_model or load_cost_model()
        frames["reconciliation"] = reconciliation_frame(frames["platform_daily"], client, model)
        checks += _reconciliation_checks()
    return run_suite(MARTS_SUITE, checks, frames)


def _derived_frames(frames: dict[str, pd.DataFrame], client: Client) -> dict[str, pd.DataFrame]:
    """Columns some checks need beyond the published ones."""
    derived: dict[str, pd.DataFrame] = {}
    creators = frames.get("creator_weekly")
    if creators is not None:
        refunded = {(c, w) for c, w in client.query(REFUND_WEEKS_SQL).result_rows}
        creators = creators.copy()
        creators["without_refunds"] = [
            (c, w) not in refunded
            for c, w in zip(creators["creator_id"], creators["week"], strict=True)
        ]
        derived["creator_weekly"] = creators
    daily = frames.get("platform_daily")
    if daily is not None and {"contribution", "platform_revenue"} <= set(daily.columns):
        daily = daily.copy()
        daily["contribution_expected"] = (
            daily["platform_revenue"] - daily["transaction_cost"] - daily["infra_cost"]
        )
        derived["platform_daily"] = daily
    weekly, creators = frames.get("platform_weekly"), frames.get("creator_weekly")
    if weekly is not None:
        weekly = weekly.copy()
        negative: set = set()
        if creators is not None and not creators.empty:
            active = creators[creators["live_hours"] > 0]
            negative = set(active.loc[active["earnings"] < 0, "week"])
        # Without creator_weekly the precondition is unknown, so those ratios go unchecked.
        weekly["earnings_all_non_negative"] = [
            creators is not None and w not in negative for w in weekly["week"]
        ]
        derived["platform_weekly"] = weekly
    return derived


def mart_checks(frames: Mapping[str, pd.DataFrame]) -> list[Check]:
    """The checks for the marts present; optional columns are checked when published."""
    checks: list[Check] = []
    for mart, grain in GRAINS.items():
        if mart not in frames:
            continue
        columns = set(frames[mart].columns)
        checks += _grain_checks(mart, grain)
        extra = DAILY_PARTS if mart == "platform_daily" else ()
        for column in NON_NEGATIVE[mart] + tuple(c for c in extra if c in columns):
            checks.append(
                Check(
                    "amounts_non_negative",
                    "error",
                    "Amounts, costs and counts that are sums of non-negative amounts are not "
                    "negative (revenue, earnings and contribution may be, after refunds).",
                    mart,
                    "ExpectColumnValuesToBeBetween",
                    {"column": column, "min_value": 0},
                    (mart,),
                    show=(*grain, column),
                )
            )
        checks += _ratio_checks(mart)
        checks += _ordered_checks(mart)
    checks += _special_checks(frames)
    return checks


def _grain_checks(mart: str, grain: tuple[str, ...]) -> list[Check]:
    description = f"One row per {' and '.join(grain)}, with no empty key (shared/METRICS.md)."
    unique = (
        ("ExpectColumnValuesToBeUnique", {"column": grain[0]})
        if len(grain) == 1
        else ("ExpectCompoundColumnsToBeUnique", {"column_list": list(grain)})
    )
    checks = [Check("one_row_per_grain", "error", description, mart, *unique, (mart,), show=grain)]
    checks += [
        Check(
            "one_row_per_grain",
            "error",
            description,
            mart,
            "ExpectColumnValuesToNotBeNull",
            {"column": column},
            (mart,),
            show=grain,
        )
        for column in grain
    ]
    return checks


def _ratio_checks(mart: str) -> list[Check]:
    checks = []
    for name, ratio, condition in (r for r in UNIT_RATIOS if r[0] == mart):
        checks.append(
            Check(
                "ratios_in_unit_range",
                "error",
                "Shares and ratios of parts lie in [0, 1] where their definition guarantees it.",
                mart,
                "ExpectColumnValuesToBeBetween",
                {"column": ratio, "min_value": 0, "max_value": 1},
                (mart,),
                where=condition,
                show=(*GRAINS[name], ratio),
            )
        )
        if ratio == "take_rate":
            checks.append(
                Check(
                    "ratios_in_unit_range",
                    "error",
                    checks[-1].description,
                    mart,
                    "ExpectColumnValuesToBeBetween",
                    {"column": ratio, "max_value": 1},
                    (mart,),
                    show=(*GRAINS[name], ratio),
                )
            )
    return checks


def _ordered_checks(mart: str) -> list[Check]:
    return [
        Check(
            "parts_within_wholes",
            "error",
            "A part never exceeds its whole (earning hours within live hours, sessions with "
            "earnings within sessions, earning creators within active creators).",
            mart,
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {"column_A": larger, "column_B": smaller, "or_equal": True},
            (mart,),
            show=(*GRAINS[mart], smaller, larger),
        )
        for name, smaller, larger in ORDERED_COUNTS
        if name == mart
    ]


def _special_checks(frames: Mapping[str, pd.DataFrame]) -> list[Check]:
    checks = []
    daily = frames.get("platform_daily")
    if daily is not None and "contribution_expected" in daily.columns:
        checks.append(
            Check(
                "contribution_adds_up",
                "error",
                "Contribution = platform revenue - transaction cost - infra cost, exactly.",
                "platform_daily",
                "ExpectColumnPairValuesToBeEqual",
                {"column_A": "contribution", "column_B": "contribution_expected"},
                ("platform_daily",),
                show=("day", "contribution", "contribution_expected"),
            )
        )
    if "session_economics" in frames:
        checks.append(
            Check(
                "ends_after_start",
                "error",
                "A session ends at or after its start.",
                "session_economics",
                "ExpectColumnPairValuesAToBeGreaterThanB",
                {
                    "column_A": "ended_at",
                    "column_B": "started_at",
                    "or_equal": True,
                    "ignore_row_if": "either_value_is_missing",
                },
                ("session_economics",),
                show=("session_id", "started_at", "ended_at"),
            )
        )
    if "creator_weekly" in frames:
        checks.append(
            Check(
                "first_earning_after_start",
                "warn",
                "The median minutes to a first earning is not negative.",
                "creator_weekly",
                "ExpectColumnValuesToBeBetween",
                {"column": "median_minutes_to_first_earning", "min_value": 0},
                ("creator_weekly",),
                show=("week", "creator_id", "median_minutes_to_first_earning"),
            )
        )
    return checks


def _reconciliation_checks() -> list[Check]:
    checks = []
    for metric, parts in RECONCILED:
        how = "counted" if parts == 0 else "summed in exact minor units, converted with the fx"
        checks.append(
            Check(
                f"{metric}_matches_raw",
                "error",
                f"platform_daily's total {metric} over its days equals the raw tables' ({how}; "
                "money may differ only by the rounding of published decimals).",
                "reconciliation",
                "ExpectColumnPairValuesAToBeGreaterThanB",
                {"column_A": "tolerance", "column_B": "abs_difference", "or_equal": True},
                ("platform_daily",),
                where=("metric", "==", metric),
                show=("mart", "raw", "difference", "tolerance"),
            )
        )
    return checks


def reconciliation_frame(
    daily: pd.DataFrame, client: Client, cost_model: CostModel
) -> pd.DataFrame:
    """platform_daily's totals beside the same totals from the raw tables, over its days."""
    days = sorted(set(daily["day"])) if len(daily) else []
    raw = raw_totals(client, days, cost_model)
    rows = []
    for metric, parts in RECONCILED:
        mart = sum(daily[metric], Decimal(0)) if len(daily) else Decimal(0)
        value = raw.get(metric)
        difference = None if value is None else mart - value
        rows.append(
            {
                "metric": metric,
                "mart": mart,
                "raw": value,
                "difference": difference,
                # No raw total (an amount without an fx rate) cannot reconcile.
                "abs_difference": Decimal("Infinity") if difference is None else abs(difference),
                "tolerance": PUBLISHED_QUANTUM * parts * len(days),
            }
        )
    return pd.DataFrame(rows, dtype=object)


def raw_totals(client: Client, days: Sequence, cost_model: CostModel) -> dict[str, Any]:
    """Totals over `days` from the raw tables, dated and deduplicated as the models do (an order
    or refund by its first event); money in the reporting currency, None when an amount is in
    a currency the cost model has no rate for."""
    params = {"days": list(days)}
    counts = client.query(RAW_COUNTS_SQL, parameters=params).result_rows[0]
    totals: dict[str, Any] = {
        "transactions": Decimal(int(counts[0])),
        "failed_transactions": Decimal(int(counts[1])),
    }
    picos = {"gross_volume": 0, "platform_revenue": 0, "creator_earnings": 0}
    for currency, *sums in client.query(RAW_MONEY_SQL, parameters=params).result_rows:
        if currency not in cost_model.fx_pico_per_unit:
            return {**totals, **dict.fromkeys(picos)}
        rate = cost_model.pico_per_minor_unit(currency)
        for name, value in zip(picos, sums, strict=True):
            picos[name] += int(value) * rate
    return {**totals, **{name: Decimal(p) / PICO for name, p in picos.items()}}


# The (creator, week) pairs where a refund took back part of the creator's earnings.
REFUND_WEEKS_SQL = """
SELECT DISTINCT o.creator_id, toMonday(r.ts)
FROM (SELECT order_id, min(occurred_at) AS ts FROM raw_order_refunded GROUP BY order_id) AS r
INNER JOIN (SELECT order_id, argMin(creator_id, occurred_at) AS creator_id
            FROM raw_order_paid GROUP BY order_id) AS o ON o.order_id = r.order_id"""


def _in_days(time: str) -> str:
    """A condition on the UTC day of `time`; the days are bound as a parameter."""
    return f"toDate32({time}) IN {{days:Array(Date32)}}"


RAW_COUNTS_SQL = f"""
WITH orders AS (SELECT order_id, min(occurred_at) AS ts FROM raw_order_paid GROUP BY order_id)
SELECT
  (SELECT countIf({_in_days("occurred_at")}) FROM raw_coins_purchased)
  + (SELECT countIf({_in_days("occurred_at")}) FROM raw_gift_sent)
  + (SELECT countIf({_in_days("ts")}) FROM orders),
  (SELECT countIf({_in_days("occurred_at")}) FROM raw_gift_failed)
  + (SELECT countIf({_in_days("occurred_at")}) FROM raw_checkout_failed)"""
RAW_MONEY_SQL = f"""
WITH orders AS (
  SELECT order_id, min(occurred_at) AS ts, argMin(currency, occurred_at) AS currency,
         argMin(gross_minor, occurred_at) AS gross,
         argMin(commission_minor, occurred_at) AS commission,
         argMin(creator_net_minor, occurred_at) AS net
  FROM raw_order_paid GROUP BY order_id),
refunds AS (SELECT order_id, min(occurred_at) AS ts FROM raw_order_refunded GROUP BY order_id)
SELECT currency, sum(gross), sum(revenue), sum(earnings) FROM (
  SELECT currency, value_minor AS gross, platform_fee_minor AS revenue,
         value_minor - platform_fee_minor AS earnings
  FROM raw_gift_sent WHERE {_in_days("occurred_at")}
  UNION ALL
  SELECT currency, gross, commission, net FROM orders WHERE {_in_days("ts")}
  UNION ALL
  SELECT o.currency, 0, -o.commission, -o.net
  FROM refunds AS r INNER JOIN orders AS o ON o.order_id = r.order_id
  WHERE {_in_days("r.ts")})
GROUP BY currency"""


# ---------------------------------------------------------------------------------------------
# Freshness: telemetry that stopped arriving.


def freshness_outcome(facts: Freshness) -> CheckOutcome:
    """A warning, never a block: republishing history must work whatever the clock says."""
    return CheckOutcome(
        suite=FRESHNESS_SUITE,
        check="telemetry_arriving",
        target=INGEST_LOG,
        passed=not facts.stale,
        severity="warn",
        observed=facts.summary(),
        description=(
            f"A sealed telemetry file arrived within the last {facts.threshold_hours:g} hours "
            "(by the newest sealed file's time, not the events' own times)."
        ),
    )


# ---------------------------------------------------------------------------------------------
# Running a suite with Great Expectations.


@dataclass
class _Result:
    check: Check
    success: bool
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def run_suite(
    suite: str, checks: Sequence[Check], frames: Mapping[str, pd.DataFrame]
) -> list[CheckOutcome]:
    """Validate every check on its frame and fold the results into one outcome per check name
    and target, in the order the checks are listed."""
    results = _validate(checks, frames)
    grouped: dict[tuple[str, str], list[tuple[_Result, pd.DataFrame]]] = {}
    for result in results:
        check = result.check
        frame = frames[check.frame]
        for target in check.targets:
            scope = _scope(frame, check, target)
            grouped.setdefault((check.name, target), []).append(
                (_for_target(result, target), scope)
            )
    return [_outcome(suite, name, target, parts) for (name, target), parts in grouped.items()]


def _scope(frame: pd.DataFrame, check: Check, target: str) -> pd.DataFrame:
    if check.key is not None:
        frame = frame[frame[check.key] == target]
    if check.where is not None and not frame.empty:
        column, comparison, value = check.where
        frame = frame[_COMPARE[comparison](frame[column], value)]
    return frame


def _for_target(result: _Result, target: str) -> _Result:
    """The part of a keyed result that concerns one target."""
    key = result.check.key
    if key is None or result.error:
        return result
    unexpected = [row for row in result.unexpected if row.get(key) == target]
    return _Result(result.check, not unexpected, unexpected)


def _outcome(
    suite: str, name: str, target: str, parts: list[tuple[_Result, pd.DataFrame]]
) -> CheckOutcome:
    first = parts[0][0].check
    passed = all(r.success for r, _ in parts)
    seen = [_observed(r, scope) for r, scope in parts if passed or not r.success]
    observed = "; ".join(dict.fromkeys(seen))
    return CheckOutcome(
        suite=suite,
        check=name,
        target=target,
        passed=passed,
        severity=first.severity,
        observed=observed,
        description=first.description,
    )


def _observed(result: _Result, scope: pd.DataFrame) -> str:
    """A short account of what the check saw: the failing rows, else the values checked."""
    check = result.check
    if result.error:
        return f"could not evaluate: {result.error}"
    if not result.success:
        rows = result.unexpected or scope.to_dict("records")
        quoted = ", ".join(_describe(row, check.show) for row in rows[:EXAMPLES])
        more = f" and {len(rows) - EXAMPLES} more" if len(rows) > EXAMPLES else ""
        return f"{len(rows)} of {len(scope)} rows fail: {quoted}{more}"
    if check.key is not None or len(scope) <= 1:
        return ", ".join(_describe(row, check.show) for row in scope.to_dict("records")) or (
            "no rows"
        )
    column = check.args.get("column")
    if column and ("max_value" in check.args or "min_value" in check.args):
        values = scope[column].dropna()
        if values.empty:
            return f"{column}: no values in {len(scope)} rows"
        return f"{column}: {_text(values.min())} to {_text(values.max())} over {len(scope)} rows"
    return f"{len(scope)} rows pass"


def _describe(row: Mapping[str, Any], show: tuple[str, ...]) -> str:
    return " ".join(f"{c}={_text(row.get(c))}" for c in show if c in row) or str(dict(row))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _validate(checks: Sequence[Check], frames: Mapping[str, pd.DataFrame]) -> list[_Result]:
    """One Great Expectations validation per frame, each check an expectation of its suite."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,  # nothing leaves the machine
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    source = context.data_sources.add_pandas("frames")
    results: list[_Result] = []
    for name in dict.fromkeys(c.frame for c in checks):
        frame_checks = [c for c in checks if c.frame == name]
        frame = frames[name]
        batch = (
            source.add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        # A suite holds each distinct expectation once: checks that share one share its result.
        shared: dict[str, list[Check]] = {}
        for check in frame_checks:
            signature = repr((check.expectation, sorted(check.args.items()), check.where))
            shared.setdefault(signature, []).append(check)
        groups = list(shared.values())
        suite = gx.ExpectationSuite(name=name)
        for index, (check, *_) in enumerate(groups):
            condition = {"row_condition": _condition(check.where)} if check.where else {}
            suite.add_expectation(
                getattr(gxe, check.expectation)(**check.args, **condition, meta={"group": index})
            )
        keys = sorted({c for c in frame_checks for c in (c.key, *c.show) if c} & set(frame))
        validation = batch.validate(
            suite,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": keys},
        )
        for item in validation.results:
            results += [_result(c, item) for c in groups[item.expectation_config.meta["group"]]]
    order = {id(c): i for i, c in enumerate(checks)}
    return sorted(results, key=lambda r: order[id(r.check)])


def _condition(where: Where) -> Any:
    from great_expectations.expectations.row_conditions import Column

    column, comparison, value = where
    return _COMPARE[comparison](Column(column), value)


def _result(check: Check, item: Any) -> _Result:
    info = item.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message") or "error").splitlines()[0]
        return _Result(check, False, error=message)
    unexpected = list(item.result.get("unexpected_index_list") or [])
    return _Result(check, bool(item.success), unexpected)
