"""The raw suite: expectations over aggregates of the raw tables and the ingest bookkeeping.

Every frame is one row per table, column or file, computed in ClickHouse; bounds and invariants
are those of the telemetry contract (docs/telemetry.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from quality.expectations import Expectation, run_suite
from quality.outcomes import RAW_SUITE, CheckOutcome
from quality.raw_frames import (
    BOUNDED_TABLES,
    INVARIANT_TABLES,
    MONEY_ID_TABLES,
    OTHER_ID_TABLES,
    QUARANTINE_SHARE_WARN,
    raw_frames,
    unchecked_files,
)
from warehouse.bookkeeping import INGEST_LOG, QUARANTINE
from warehouse.raw_tables import RAW_TABLES, raw_table
from warehouse.registry import ensure_warehouse_schema

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
        {"column_A": "all_rows", "column_B": "indexed"},
        RAW_TABLES,
        key="table",
        show=("all_rows", "indexed"),
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


def check_raw(client: Client, now: datetime | None = None, full: bool = True) -> list[CheckOutcome]:
    """The raw suite: one outcome per check and table, from aggregates computed in ClickHouse.

    `full` reads every row; otherwise the rows of the files loaded since the suite last ran,
    their ids checked against the rest of the history, and the totals that are kept anyway:
    a run's checks cost what its new data costs (`creator-econ check --full` rescans)."""
    ensure_warehouse_schema(client)
    files = None if full else unchecked_files(client)
    frames = raw_frames(client, now or datetime.now(UTC), files)
    return run_suite(RAW_SUITE, RAW_CHECKS, frames)
