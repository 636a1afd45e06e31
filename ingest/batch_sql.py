"""The SQL of one ingest batch, over the staging tables (warehouse/staging_tables.py).

A staged line's position is `(file index << FILE_SHIFT) | line number`, so every statement can
name a line's file (bound as the array of the batch's file names) and line without a join.
The lines to load are a `Set` of positions (`LOADED`): each write reads its typed columns
once and keeps the rows `pos IN` it, so no statement copies the batch to decide.
"""

from __future__ import annotations

from telemetry.events import EVENT_FIELDS
from warehouse.aggregates import DAY_TABLES, EGRESS_BY_DAY, EVENT_DAYS, SESSION_USAGE_END
from warehouse.bookkeeping import EVENT_INDEX, INGEST_ATTEMPTS, INGEST_LOG, QUARANTINE
from warehouse.raw_tables import raw_table
from warehouse.staging_tables import (
    LINES,
    LOADED,
    OUTCOMES,
    UNKNOWN,
    VERDICTS,
    parsed_fields,
    parsed_table,
)

FILE_SHIFT = 40  # a line's position is (file index << 40) | line number
NOT_QUARANTINED = ("loaded", "duplicate")
FILE_NAME = f"{{files:Array(String)}}[bitShiftRight(pos, {FILE_SHIFT}) + 1]"
LINE_NUMBER = f"bitAnd(pos, {(1 << FILE_SHIFT) - 1})"
IS_LOADED = f"pos IN {LOADED}"
PARSED_TYPES = (*EVENT_FIELDS, UNKNOWN)

STAGE_FILE = (
    f"INSERT INTO {LINES} (pos, line) SELECT {{base:UInt64}} + _row_number + 1, line "
    "FROM file({path:String}, LineAsString)"
)


def verdicts_sql(event_type: str | None) -> str:
    """Every parsed line of a type, narrowed to what classification needs."""
    return (
        f"INSERT INTO {VERDICTS} SELECT pos, event_type, event_id, event_id_uuid, payload_hash, "
        f"quarantine_reason FROM {parsed_table(event_type)}"
    )


# Each valid line is new, an exact duplicate, or a conflicting duplicate of the first occurrence
# of its event_id: in the index if already loaded, else earliest in this batch.
CLASSIFY = f"""
INSERT INTO {OUTCOMES}
SELECT v.pos,
  multiIf(
    v.quarantine_reason != '', v.quarantine_reason,
    k.known = 1 AND k.known_hash = v.payload_hash, 'duplicate',
    k.known = 1, 'conflicting_duplicate',
    f.first_pos != 0 AND f.first_pos != v.pos AND f.first_hash = v.payload_hash, 'duplicate',
    f.first_pos != 0 AND f.first_pos != v.pos, 'conflicting_duplicate',
    'loaded')
FROM {VERDICTS} AS v
LEFT JOIN (
  SELECT event_id AS id, any(payload_hash) AS known_hash, toUInt8(1) AS known
  FROM {EVENT_INDEX}
  WHERE event_id IN (SELECT event_id_uuid FROM {VERDICTS} WHERE quarantine_reason = '')
  GROUP BY event_id
) AS k ON v.event_id_uuid = k.id
LEFT JOIN (
  SELECT event_id_uuid AS id, argMin(payload_hash, pos) AS first_hash, min(pos) AS first_pos
  FROM {VERDICTS} WHERE quarantine_reason = ''
  GROUP BY event_id_uuid
  HAVING count() > 1  -- ids seen once in the batch need no lookup: keeps the join small
) AS f ON v.event_id_uuid = f.id"""

# Classification without deduplication, only for measuring what deduplication costs.
ACCEPT_ALL = (
    f"INSERT INTO {OUTCOMES} SELECT pos, if(quarantine_reason != '', quarantine_reason, "
    f"'loaded') FROM {VERDICTS}"
)

MARK_LOADED = f"INSERT INTO {LOADED} SELECT pos FROM {OUTCOMES} WHERE outcome = 'loaded'"


def write_raw_sql(event_type: str) -> str:
    """Copies the batch's loaded lines of one event type into its raw table, from the type's
    parsed columns (a loaded line parsed every field without a null)."""
    fields = [f for f in parsed_fields(event_type) if f.name in ("occurred_at", "source")]
    fields += EVENT_FIELDS[event_type]
    names = [f.name for f in fields]
    values = [
        f.name if f.kind in ("strings", "splits", "nullable_string") else f"assumeNotNull({f.name})"
        for f in fields
    ]
    return (
        f"INSERT INTO {raw_table(event_type)} (event_id, {', '.join(names)}, _file, _line) "
        f"SELECT assumeNotNull(event_id_uuid), {', '.join(values)}, {FILE_NAME}, {LINE_NUMBER} "
        f"FROM {parsed_table(event_type)} WHERE {IS_LOADED}"
    )


WRITE_INDEX = (
    f"INSERT INTO {EVENT_INDEX} (event_id, payload_hash, event_type, _file) "
    f"SELECT assumeNotNull(event_id_uuid), payload_hash, assumeNotNull(event_type), "
    f"{FILE_NAME} FROM {VERDICTS} WHERE {IS_LOADED}"
)

WRITE_QUARANTINE = f"""
INSERT INTO {QUARANTINE}
SELECT {FILE_NAME}, {LINE_NUMBER}, q.outcome, ifNull(q.event_id, ''), ifNull(q.event_type, ''),
       l.line, now64(6)
FROM {LINES} AS l INNER JOIN (
  SELECT o.pos AS pos, o.outcome AS outcome, v.event_id AS event_id, v.event_type AS event_type
  FROM {OUTCOMES} AS o INNER JOIN {VERDICTS} AS v ON v.pos = o.pos
  WHERE o.outcome NOT IN {NOT_QUARANTINED}) AS q USING pos"""

# The ingest-kept aggregates (warehouse/aggregates.py), from the batch's loaded lines.
_USAGE = parsed_table("media_usage")
WRITE_AGGREGATES = (
    f"INSERT INTO {EGRESS_BY_DAY} SELECT toDate(interval_start), {FILE_NAME}, "
    f"sum(egress_bytes) FROM {_USAGE} WHERE {IS_LOADED} GROUP BY 1, 2",
    f"INSERT INTO {SESSION_USAGE_END} SELECT session_id, {FILE_NAME}, max(interval_end) "
    f"FROM {_USAGE} WHERE {IS_LOADED} GROUP BY 1, 2",
    f"INSERT INTO {EVENT_DAYS} "
    + " UNION ALL ".join(
        f"SELECT DISTINCT '{t}', toDate({column}), {FILE_NAME} FROM {parsed_table(t)} "
        f"WHERE {IS_LOADED}"
        for t, column in DAY_TABLES.items()
    ),
)

# Days whose metrics the batch's new events can change: their own day, for usage the day of the
# interval's start (the day its cost belongs to), and for a newly paid order the days of its
# refunds and other paid events (a refund counts once its order is known, and an order is dated
# by its first paid event).
_NEW_ORDERS = f"SELECT order_id FROM {parsed_table('order_paid')} WHERE {IS_LOADED}"
TOUCHED_DAYS = " UNION DISTINCT ".join(
    [
        *(
            f"SELECT DISTINCT toDate(occurred_at) FROM {parsed_table(t)} WHERE {IS_LOADED}"
            for t in EVENT_FIELDS
        ),
        f"SELECT DISTINCT toDate(interval_start) FROM {_USAGE} WHERE {IS_LOADED}",
        f"SELECT DISTINCT toDate(occurred_at) FROM {raw_table('order_refunded')} "
        f"WHERE order_id IN ({_NEW_ORDERS})",
        f"SELECT DISTINCT toDate(occurred_at) FROM {raw_table('order_paid')} "
        f"WHERE order_id IN ({_NEW_ORDERS})",
    ]
)

FILE_COUNTS = f"""
SELECT bitShiftRight(pos, {FILE_SHIFT}) AS file_index, count(),
       countIf(outcome = 'loaded'), countIf(outcome = 'duplicate'),
       countIf(outcome NOT IN {NOT_QUARANTINED}), countIf(outcome = 'conflicting_duplicate')
FROM {OUTCOMES} GROUP BY file_index"""

# Files whose load started but never reached the ingest log: a crash interrupted them.
INTERRUPTED_FILES = (
    f"SELECT DISTINCT _file FROM {INGEST_ATTEMPTS} "
    f"WHERE _file NOT IN (SELECT _file FROM {INGEST_LOG})"
)
# Every table an interrupted load may have written rows to, each row tagged with its `_file`.
ROLLED_BACK_TABLES = (
    *(raw_table(t) for t in EVENT_FIELDS),
    EVENT_INDEX,
    QUARANTINE,
    EGRESS_BY_DAY,
    SESSION_USAGE_END,
    EVENT_DAYS,
)


def delete_files_sql(table: str) -> str:
    return f"DELETE FROM {table} WHERE _file IN {{files:Array(String)}}"


LOADED_FILES = f"SELECT _file FROM {INGEST_LOG}"

INGEST_LOG_COLUMNS = [
    "_file",
    "lines_read",
    "loaded",
    "duplicates",
    "quarantined",
    "conflicting",
    "bytes",
    "ingested_at",
]
ATTEMPT_COLUMNS = ["_file", "started_at"]
QUARANTINE_COLUMNS = [
    "_file",
    "_line",
    "reason",
    "event_id",
    "event_type",
    "raw_line",
    "quarantined_at",
]
