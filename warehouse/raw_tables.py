"""Raw event tables: one typed table per event type, its DDL built from the event model.

The schema follows the telemetry contract (docs/telemetry.md) because it is generated from it:
every field becomes a typed column with a comment. Raw tables are partitioned by month and
ordered by time, the access path of every model; `_file` and `_line` record where each row came
from.
"""

from __future__ import annotations

from telemetry.events import EVENT_FIELDS, Field

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
    "int": "integer",
    "number": "non-negative number",
    "time": "UTC time",
    "date": "UTC date",
    "strings": "list of ids",
    "splits": "value of the gift per creator, minor units",
    "nullable_string": "null when not applicable",
    "string": "as sent",
}


def raw_table(event_type: str) -> str:
    return f"raw_{event_type}"


def column_type(field: Field) -> str:
    if field.kind == "string" and field.name in _LOW_CARDINALITY:
        return "LowCardinality(String)"
    return KIND_TYPES[field.kind]


def _comment(field: Field) -> str:
    return (
        "money in minor units of the event currency"
        if field.is_money
        else _KIND_COMMENTS[field.kind]
    )


# Data-skipping indexes for the reads that do not follow the primary key (occurred_at):
# usage by the interval it covers, orders and refunds by order_id.
SKIP_INDEXES: dict[str, tuple[str, ...]] = {
    "media_usage": (
        "INDEX interval_start_minmax interval_start TYPE minmax GRANULARITY 1",
        "INDEX interval_end_minmax interval_end TYPE minmax GRANULARITY 1",
    ),
    "order_paid": ("INDEX order_id_bloom order_id TYPE bloom_filter GRANULARITY 1",),
    "order_refunded": ("INDEX order_id_bloom order_id TYPE bloom_filter GRANULARITY 1",),
}


def raw_table_ddl(event_type: str) -> str:
    columns = [
        "event_id UUID COMMENT 'deduplication key'",
        "occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC'",
        "source LowCardinality(String) COMMENT 'emitting runtime instance'",
        *(
            f"{f.name} {column_type(f)} COMMENT '{event_type}.{f.name}: {_comment(f)}'"
            for f in EVENT_FIELDS[event_type]
        ),
        "_file String COMMENT 'sealed telemetry file the event was loaded from'",
        "_line UInt64 COMMENT 'line number in that file, from 1'",
        *SKIP_INDEXES.get(event_type, ()),
    ]
    body = ",\n  ".join(columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {raw_table(event_type)} (\n  {body}\n)\n"
        "ENGINE = MergeTree\nPARTITION BY toYYYYMM(occurred_at)\nORDER BY (occurred_at, event_id)\n"
        f"COMMENT 'telemetry {event_type} events, one row per distinct event_id'"
    )


RAW_TABLES: tuple[str, ...] = tuple(raw_table(t) for t in EVENT_FIELDS)
