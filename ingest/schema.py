"""Warehouse tables: one typed raw table per event type, plus the ingest bookkeeping tables.

Each table's DDL is built by a function from the event model, so the schema follows the telemetry
contract. Raw tables are partitioned by month and ordered by time, the access path of every
model; `_file` and `_line` record where each row came from.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from live_runtime.events import EVENT_FIELDS, Field

# Columns whose values come from a small closed set are stored as LowCardinality.
_LOW_CARDINALITY = {"currency", "channel", "reason", "region", "quality", "source"}

KIND_TYPES = {
    "string": "String",
    "nullable_string": "Nullable(String)",
    "int": "Int64",
    "number": "Float64",
    "time": "DateTime64(6, 'UTC')",
    "date": "Date32",
    "strings": "Array(String)",
    "splits": "Array(Tuple(creator_id String, share_minor Int64))",
}

_KIND_COMMENTS = {
    "int": "integer; *_minor columns are money in minor units of the currency",
    "number": "non-negative number",
    "time": "UTC time",
    "date": "UTC date",
    "strings": "list of ids",
    "splits": "value of the gift per creator, minor units",
    "nullable_string": "null when not applicable",
    "string": "as sent",
}

INGEST_LOG = "ingest_log"
QUARANTINE = "quarantine"
EVENT_INDEX = "event_index"
INGEST_ATTEMPTS = "ingest_attempts"
MARTS_DIRTY_DAYS = "marts_dirty_days"


def raw_table(event_type: str) -> str:
    return f"raw_{event_type}"


def column_type(field: Field) -> str:
    if field.kind == "string" and field.name in _LOW_CARDINALITY:
        return "LowCardinality(String)"
    return KIND_TYPES[field.kind]


def raw_table_ddl(event_type: str) -> str:
    columns = [
        "event_id UUID COMMENT 'deduplication key'",
        "occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC'",
        "source LowCardinality(String) COMMENT 'emitting runtime instance'",
        *(
            f"{f.name} {column_type(f)} COMMENT '{event_type}.{f.name}: {_KIND_COMMENTS[f.kind]}'"
            for f in EVENT_FIELDS[event_type]
        ),
        "_file String COMMENT 'sealed telemetry file the event was loaded from'",
        "_line UInt64 COMMENT 'line number in that file, from 1'",
    ]
    body = ",\n  ".join(columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {raw_table(event_type)} (\n  {body}\n)\n"
        "ENGINE = MergeTree\nPARTITION BY toYYYYMM(occurred_at)\nORDER BY (occurred_at, event_id)\n"
        f"COMMENT 'telemetry {event_type} events, one row per distinct event_id'"
    )


def event_index_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {EVENT_INDEX} (
  event_id UUID COMMENT 'every loaded event id, across all types',
  payload_hash UInt64 COMMENT 'hash of the parsed payload, to tell duplicates from conflicts',
  event_type LowCardinality(String) COMMENT 'table the event was loaded into',
  _file String COMMENT 'sealed telemetry file it was loaded from'
)
ENGINE = MergeTree
ORDER BY event_id
COMMENT 'the deduplication index: one row per loaded event_id'"""


def quarantine_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {QUARANTINE} (
  _file String COMMENT 'sealed telemetry file',
  _line UInt64 COMMENT 'line number in that file, from 1',
  reason LowCardinality(String) COMMENT 'why the line was not loaded',
  event_id String COMMENT 'the event_id as sent, empty when absent',
  event_type String COMMENT 'the event_type as sent, empty when absent',
  raw_line String COMMENT 'the line exactly as read',
  quarantined_at DateTime64(6, 'UTC') COMMENT 'when ingest rejected it'
)
ENGINE = MergeTree
ORDER BY (_file, _line)
COMMENT 'every rejected telemetry line with its reason'"""


def ingest_log_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {INGEST_LOG} (
  _file String COMMENT 'sealed telemetry file name',
  lines_read UInt64 COMMENT 'lines in the file',
  loaded UInt64 COMMENT 'lines loaded as new events',
  duplicates UInt64 COMMENT 'lines dropped as exact duplicates of loaded events',
  quarantined UInt64 COMMENT 'lines quarantined, conflicting duplicates included',
  conflicting UInt64 COMMENT 'of the quarantined, same event_id with a different payload',
  bytes UInt64 COMMENT 'file size',
  ingested_at DateTime64(6, 'UTC') COMMENT 'when the file was committed'
)
ENGINE = MergeTree
ORDER BY _file
COMMENT 'one row per ingested file; lines_read = loaded + duplicates + quarantined'"""


def ingest_attempts_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {INGEST_ATTEMPTS} (
  _file String COMMENT 'sealed telemetry file a load started on',
  started_at DateTime64(6, 'UTC') COMMENT 'when the load started'
)
ENGINE = MergeTree
ORDER BY _file
COMMENT 'loads started; one without an ingest_log row was interrupted and is rolled back'"""


def marts_dirty_days_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {MARTS_DIRTY_DAYS} (
  day Date COMMENT 'a UTC day whose metrics newly loaded events can change (see _touched_days)',
  noted_at DateTime64(6, 'UTC') COMMENT 'when the load that touched it was written'
)
ENGINE = MergeTree
ORDER BY day
COMMENT 'days whose mart partitions are stale; deleted once marts covering them are published'"""


def all_ddl() -> list[str]:
    return [
        *(raw_table_ddl(t) for t in EVENT_FIELDS),
        event_index_ddl(),
        quarantine_ddl(),
        ingest_log_ddl(),
        ingest_attempts_ddl(),
        marts_dirty_days_ddl(),
    ]


def ensure_schema(client: Client) -> None:
    for ddl in all_ddl():
        client.command(ddl)
