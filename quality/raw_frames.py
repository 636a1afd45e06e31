"""The small frames the raw suite validates: one row per table, column or file, each row one
aggregate query computed in ClickHouse. The statements come first, the frames built from them
after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from telemetry.events import EVENT_FIELDS
from warehouse.bookkeeping import CHECK_RESULTS, EVENT_INDEX, INGEST_LOG, QUARANTINE
from warehouse.memory import MemoryBudget
from warehouse.raw_tables import RAW_TABLES, raw_table

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
    ("coins_refunded", "coins_taken_back", 0),
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
    ("coins_refunded", "purchase_id", True),  # a purchase is refunded once
    ("order_paid", "order_id", False),  # the models keep an order's first event
    ("order_refunded", "order_id", False),  # and a refund's first event
    ("payout_issued", "payout_id", False),  # payouts are not in the marts
    ("session_started", "session_id", False),  # sessions keep their first start and end
    ("session_ended", "session_id", False),
)
MONEY_ID_TABLES = tuple(raw_table(t) for t, _, money in _BUSINESS_IDS if money)
OTHER_ID_TABLES = tuple(raw_table(t) for t, _, money in _BUSINESS_IDS if not money)

# --- statements ---------------------------------------------------------------------------------
# Each statement reads either every row (`scoped=False`, `creator-econ check --full`) or the rows
# of the files a run loaded (`_file IN {files}`), with what they must not collide with in the
# rest of the history read by key.
#
# Memory: a query is held to `max_memory_usage` (warehouse/memory.py), and only grouping, sorting
# and joins spill to disk past their thresholds; an IN set or a uniqExact state is held whole.
# So distinct ids are always counted with a GROUP BY, and the ids of the scope are compared with
# the rest of the history in one of two forms, chosen per statement (`by_set`, see `ScopeSize`)
# by the rows in scope against what a query may hold:
# - by set: the scope's ids in an IN set, looked up in the rest of the history (by key in the
#   event index; business ids by their column alone). Reads little beyond the scope, but the set
#   does not spill: for small scopes, such as a day added to a long history.
# - grouped: one GROUP BY id over the scope and the rest of the history, counting each id's rows
#   in and out of scope. Spills, so it holds at any size, but reads the whole table: for large
#   scopes (the first run loads everything), which are then most of the table anyway.
# Both return the same numbers.

FILES = "_file IN {files:Array(String)}"
INDEXED_BY_TYPE = f"SELECT event_type, count() FROM {EVENT_INDEX} GROUP BY event_type"


def _where(scoped: bool, *conditions: str) -> str:
    found = [*conditions, FILES] if scoped else list(conditions)
    return f" WHERE {' AND '.join(found)}" if found else ""


def _groups(select: str) -> str:
    """The number of groups (rows) a GROUP BY statement returns, as a scalar subquery."""
    return f"(SELECT count() FROM ({select}))"


def _distinct_in_scope(table: str, column: str, scoped: bool) -> str:
    return _groups(f"SELECT {column} FROM {table}{_where(scoped)} GROUP BY {column}")


def _only_in_scope(column: str, rows_in_scope: str, rows_out_of_scope: str) -> str:
    """The grouped form: ids with rows in scope and none out of it, in one GROUP BY that spills."""
    return _groups(
        f"SELECT {column} FROM ({rows_in_scope} UNION ALL {rows_out_of_scope}) GROUP BY {column} "
        "HAVING countIf(in_scope) > 0 AND countIf(NOT in_scope) = 0"
    )


def table_stats_sql(event_type: str, scoped: bool, by_set: bool = True) -> str:
    """The rows checked, their distinct ids less those also loaded from another file, their
    time span and future rows; and the table's rows in all (for the index)."""
    table = raw_table(event_type)
    if not scoped:
        distinct = _distinct_in_scope(table, "event_id", scoped)
    elif by_set:
        reused = _groups(
            f"SELECT event_id FROM {EVENT_INDEX} WHERE event_id IN "
            f"(SELECT event_id FROM {table}{_where(True)}) AND NOT {FILES} GROUP BY event_id"
        )
        distinct = f"{_distinct_in_scope(table, 'event_id', scoped)} - {reused}"
    else:
        distinct = _only_in_scope(
            "event_id",
            f"SELECT event_id, true AS in_scope FROM {table}{_where(True)}",
            f"SELECT event_id, false FROM {EVENT_INDEX} WHERE NOT {FILES}",
        )
    return (
        f"SELECT '{table}', count(), {distinct}, minOrNull(occurred_at), "
        f"maxOrNull(occurred_at), countIf(occurred_at > {{limit:DateTime64(6, 'UTC')}}), "
        f"(SELECT count() FROM {table}) FROM {table}{_where(scoped)}"
    )


def lower_bound_sql(event_type: str, column: str, bound: int, scoped: bool) -> str:
    table = raw_table(event_type)
    if column == "splits.share_minor":
        least = f"SELECT minOrNull(s.share_minor) FROM {table} ARRAY JOIN splits AS s"
    else:
        least = f"SELECT minOrNull({column}) FROM {table}"
    return f"SELECT '{table}', '{column}', ({least}{_where(scoped)}), {bound}"


def invariant_sql(event_type: str, rule: str, broken: str, scoped: bool) -> str:
    table = raw_table(event_type)
    return f"SELECT '{table}', '{rule}', countIf({broken}) FROM {table}{_where(scoped)}"


def business_id_sql(event_type: str, column: str, scoped: bool, by_set: bool = True) -> str:
    """Rows checked against their distinct ids, less ids also held by rows of other files."""
    table = raw_table(event_type)
    if not scoped:
        distinct = _distinct_in_scope(table, column, scoped)
    elif by_set:
        reused = _groups(
            f"SELECT {column} FROM {table} WHERE {column} IN "
            f"(SELECT {column} FROM {table}{_where(True)}) AND NOT {FILES} GROUP BY {column}"
        )
        distinct = f"{_distinct_in_scope(table, column, scoped)} - {reused}"
    else:
        distinct = _groups(
            f"SELECT {column} FROM {table} GROUP BY {column} "
            f"HAVING countIf({FILES}) > 0 AND countIf(NOT {FILES}) = 0"
        )
    return f"SELECT '{table}', '{column}', count(), {distinct} FROM {table}{_where(scoped)}"


_REFUNDS, _ORDERS = raw_table("order_refunded"), raw_table("order_paid")


def refunds_match_orders_sql(scoped: bool, by_set: bool = True) -> str:
    """Refunds checked, those without their order and those not refunding its gross in full;
    an order's gross is that of its first event."""
    if by_set:  # the orders of the refunds in scope, looked up through a set of their ids
        return f"""
SELECT '{_REFUNDS}', count(), countIf(o.order_id = ''),
       countIf(o.order_id != '' AND r.refund_minor != o.gross)
FROM (SELECT * FROM {_REFUNDS}{_where(scoped)}) AS r LEFT JOIN (
  SELECT order_id, argMin(gross_minor, occurred_at) AS gross FROM {_ORDERS}
  WHERE order_id IN (SELECT order_id FROM {_REFUNDS}{_where(scoped)}) GROUP BY order_id
) AS o ON o.order_id = r.order_id SETTINGS join_use_nulls = 0"""
    # Grouped: refunds in scope and every order, by order_id; an order_id of '' or without an
    # order event leaves its refunds without order, as the join above does.
    return f"""
SELECT '{_REFUNDS}', sum(refunds), sumIf(refunds, order_id = '' OR orders = 0),
       sumIf(arrayCount(amount -> amount != gross, refunded), order_id != '' AND orders > 0)
FROM (
  SELECT order_id, countIf(is_refund) AS refunds, countIf(NOT is_refund) AS orders,
         argMinIf(amount, occurred_at, NOT is_refund) AS gross,
         groupArrayIf(amount, is_refund) AS refunded
  FROM (
    SELECT order_id, refund_minor AS amount, occurred_at, true AS is_refund
    FROM {_REFUNDS}{_where(scoped)}
    UNION ALL SELECT order_id, gross_minor, occurred_at, false FROM {_ORDERS}
  ) GROUP BY order_id HAVING refunds > 0
)"""


def file_lines_sql(scoped: bool) -> str:
    return (
        f"SELECT _file, lines_read, loaded + duplicates + quarantined FROM {INGEST_LOG}"
        f"{_where(scoped)} ORDER BY _file"
    )


_LOADED = f"(SELECT sum(loaded) FROM {INGEST_LOG})"
_RAW_ROWS = " + ".join(f"(SELECT count() FROM {t})" for t in RAW_TABLES)
INGEST_TOTALS = (
    f"SELECT '{INGEST_LOG}', 'loaded lines vs raw rows', {_LOADED}, {_RAW_ROWS}",
    f"SELECT '{INGEST_LOG}', 'loaded lines vs event index', {_LOADED}, "
    f"(SELECT count() FROM {EVENT_INDEX})",
    f"SELECT '{QUARANTINE}', 'quarantined lines vs quarantine rows', "
    f"(SELECT sum(quarantined) FROM {INGEST_LOG}), (SELECT count() FROM {QUARANTINE})",
)
INGEST_SUMMARY = (
    f"SELECT '{QUARANTINE}', sum(lines_read), sum(quarantined), sum(conflicting) FROM {INGEST_LOG}"
)
# The files loaded since the raw suite last ran (all of them before it ever ran): what an
# incremental check reads.
UNCHECKED_FILES = f"""
SELECT _file FROM {INGEST_LOG}
WHERE ingested_at > (SELECT ifNull(max(checked_at), toDateTime64(0, 6, 'UTC'))
                     FROM {CHECK_RESULTS} WHERE suite = 'raw')
ORDER BY _file"""


# --- choosing a statement's form ----------------------------------------------------------------

# What a by-set statement holds per row in scope, at its peak: the IN set (which keeps the ids as
# columns too), the grouping beside it, the old hash table while one grows. Measured in chDB 26
# (two threads) at 200k and 800k rows and rounded up: 130-163 bytes for event ids (UUID),
# 261-288 for business ids (36-character strings), 543-561 for refunds (the set of their order
# ids and the join's table of those orders).
EVENT_ID_SET_BYTES = 192
BUSINESS_ID_SET_BYTES = 320
REFUND_SET_BYTES = 640
# A client opened without a budget has no per-query limit: its statements are chosen as a run
# on the default budget would choose them.
_UNLIMITED_QUERY_BYTES = MemoryBudget.of_gib(2).query_bytes
QUERY_BYTES = "SELECT getSetting('max_memory_usage')"
LOADED_IN_SCOPE = f"SELECT sum(loaded) FROM {INGEST_LOG} WHERE {FILES}"
ROWS_BY_TYPE = " UNION ALL ".join(
    f"SELECT '{t}', count() FROM {raw_table(t)}" for t in EVENT_FIELDS
)
# The most a by-set statement on an event type's rows holds per row in scope.
_MOST_PER_ROW = (
    dict.fromkeys(EVENT_FIELDS, EVENT_ID_SET_BYTES)
    | {t: BUSINESS_ID_SET_BYTES for t, _, _ in _BUSINESS_IDS}
    | {"order_refunded": REFUND_SET_BYTES}
)


def _rows_in_scope_sql(event_types: list[str]) -> str:
    return " UNION ALL ".join(
        f"SELECT '{t}', count() FROM {raw_table(t)} WHERE {FILES}" for t in event_types
    )


@dataclass(frozen=True)
class ScopeSize:
    """The rows in scope per event type (or a bound on them) and what one query may hold."""

    rows: dict[str, int]
    query_bytes: int

    def by_set(self, event_type: str, bytes_per_row: int) -> bool:
        """Whether a statement holding `bytes_per_row` per row of `event_type` in scope takes the
        by-set form: only while that is under a quarter of what a query may hold (the rest is
        for what else it reads and groups, and for error in the estimate)."""
        return self.rows.get(event_type, 0) * bytes_per_row < self.query_bytes // 4


def query_bytes(client: Client) -> int:
    """What one query may hold, as the engine applies it to this client's queries."""
    limit = int(client.query(QUERY_BYTES).result_rows[0][0])
    return limit or _UNLIMITED_QUERY_BYTES


def scope_size(client: Client, files: list[str] | None) -> ScopeSize:
    """Every row (`files` None): the tables' rows, from their parts' counts. The rows of
    `files`: the lines the ingest log says they loaded, all types together, bound each type's
    rows; a type is counted in its table only where a statement on it would not fit a set at
    that bound (a day on a long history counts its refunds at most)."""
    limit = query_bytes(client)
    if files is None:
        return ScopeSize({t: int(n) for t, n in client.query(ROWS_BY_TYPE).result_rows}, limit)
    params = {"files": files}
    loaded = int(client.query(LOADED_IN_SCOPE, parameters=params).result_rows[0][0] or 0)
    bound = ScopeSize(dict.fromkeys(EVENT_FIELDS, loaded), limit)
    unsettled = [t for t in EVENT_FIELDS if not bound.by_set(t, _MOST_PER_ROW[t])]
    if not unsettled:
        return bound
    counted = client.query(_rows_in_scope_sql(unsettled), parameters=params).result_rows
    return ScopeSize({**bound.rows, **{t: int(n) for t, n in counted}}, limit)


# --- frames -------------------------------------------------------------------------------------


def unchecked_files(client: Client) -> list[str]:
    return [r[0] for r in client.query(UNCHECKED_FILES).result_rows]


def raw_frames(
    client: Client, now: datetime, files: list[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The small aggregate frames the raw suite validates: over every row, or over the rows of
    `files` (the ones a run loaded) with their ids checked against the rest of the history.
    Totals that cost nothing to keep (rows against the index and the ingest log) are global
    either way."""
    scoped = files is not None
    params: dict[str, Any] = {"files": files or []}
    future = {**params, "limit": now + timedelta(days=1)}
    size = scope_size(client, files)
    tables = _frame(
        client,
        ["table", "rows", "distinct_event_ids", "first_at", "last_at", "future_rows", "all_rows"],
        [
            (table_stats_sql(t, scoped, size.by_set(t, EVENT_ID_SET_BYTES)), future)
            for t in EVENT_FIELDS
        ],
    )
    indexed = dict(client.query(INDEXED_BY_TYPE).result_rows)
    tables["indexed"] = [indexed.get(t, 0) for t in EVENT_FIELDS]
    refunds = _frame(
        client,
        ["table", "refunds", "without_order", "not_full"],
        [
            (
                refunds_match_orders_sql(scoped, size.by_set("order_refunded", REFUND_SET_BYTES)),
                params,
            )
        ],
    )
    refunds["unmatched"] = refunds["without_order"] + refunds["not_full"]
    summary = _frame(
        client, ["table", "lines_read", "quarantined", "conflicting"], [(INGEST_SUMMARY, {})]
    )
    read = int(summary["lines_read"][0] or 0)
    summary["quarantined_share"] = [int(summary["quarantined"][0] or 0) / read if read else 0.0]
    return {
        "raw_tables": tables,
        "raw_bounds": _frame(
            client,
            ["table", "column", "min_value", "lower_bound"],
            [(lower_bound_sql(*bound, scoped), params) for bound in _LOWER_BOUNDS],
        ),
        "raw_invariants": _frame(
            client,
            ["table", "rule", "broken"],
            [(invariant_sql(*i, scoped), params) for i in _INVARIANTS],
        ),
        "raw_ids": _frame(
            client,
            ["table", "id", "rows", "distinct_ids"],
            [
                (business_id_sql(t, column, scoped, size.by_set(t, BUSINESS_ID_SET_BYTES)), params)
                for t, column, _ in _BUSINESS_IDS
            ],
        ),
        "raw_refunds": refunds,
        "ingest_files": _frame(
            client, ["file", "lines_read", "accounted"], [(file_lines_sql(scoped), params)]
        ),
        "ingest_totals": _frame(
            client, ["table", "what", "logged", "stored"], [(s, {}) for s in INGEST_TOTALS]
        ),
        "ingest_summary": summary,
    }


def _frame(
    client: Client, columns: list[str], queries: list[tuple[str, dict[str, Any]]]
) -> pd.DataFrame:
    rows = [
        row for sql, params in queries for row in client.query(sql, parameters=params).result_rows
    ]
    return pd.DataFrame(rows, columns=columns, dtype=object)
