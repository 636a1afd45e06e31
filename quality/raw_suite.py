"""The raw suite: expectations over aggregates of the raw tables and the ingest bookkeeping.

Every frame is one row per table, column or file, computed in ClickHouse; bounds and invariants
are those of the telemetry contract (docs/telemetry.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from quality.expectations import Expectation, run_suite
from quality.outcomes import RAW_SUITE, CheckOutcome
from telemetry.events import EVENT_FIELDS
from warehouse.bookkeeping import EVENT_INDEX, INGEST_LOG, QUARANTINE
from warehouse.raw_tables import RAW_TABLES, raw_table
from warehouse.registry import ensure_warehouse_schema

QUARANTINE_SHARE_WARN = 0.01  # more than this share of lines quarantined is worth a look

USAGE_FIELDS = (
    "publisher_seconds",
    "viewer_seconds",
    "transcode_seconds",
    "relay_seconds",
    "egress_bytes",
    "recording_bytes",
)
# (event type, column or SQL expression over its rows, least allowed value); docs/telemetry.md
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

RAW_CHECKS: tuple[Expectation, ...] = (
    Expectation(
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
    Expectation(
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
    Expectation(
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
    Expectation(
        "amounts_within_bounds",
        "error",
        "Money amounts and usage are not negative, coins are positive (docs/telemetry.md).",
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
    Expectation(
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
    Expectation(
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
    Expectation(
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
    Expectation(
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
    Expectation(
        "lines_accounted_for",
        "error",
        "For every ingested file, lines read = loaded + duplicates + quarantined.",
        "ingest_files",
        "ExpectColumnPairValuesToBeEqual",
        {"column_A": "lines_read", "column_B": "accounted"},
        (INGEST_LOG,),
        show=("file", "lines_read", "accounted"),
    ),
    Expectation(
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
    Expectation(
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
    Expectation(
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


def raw_check_targets() -> list[tuple[Expectation, str]]:
    """Every (check, table) pair the raw suite reports on, in a stable order."""
    return [(check, target) for check in RAW_CHECKS for target in check.targets]


def check_raw(client: Client, now: datetime | None = None) -> list[CheckOutcome]:
    """The raw suite: one outcome per check and table, from aggregates computed in ClickHouse."""
    ensure_warehouse_schema(client)
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
