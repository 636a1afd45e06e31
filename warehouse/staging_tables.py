"""Staging tables of one ingest batch: the lines as read, parsed, and classified.

They live in memory (`ENGINE = Memory`), are emptied per batch and never outlive a load; the
parse table has one column per field name of the event model, so any event type fits.
"""

from __future__ import annotations

from telemetry.events import ENVELOPE, EVENT_FIELDS, Field
from warehouse.raw_tables import KIND_TYPES

LINES, PARSED, CLASSIFIED = "_stage_lines", "_stage_parsed", "_stage_classified"
# Split entries are decoded by the typed JSON reader, which is fast but reads "5" as 5.
SPLITS_NULLABLE = "Array(Tuple(creator_id Nullable(String), share_minor Nullable(Int64)))"
POSITION = "(file index in the batch << 40) | line number"


def parsed_fields() -> dict[str, Field]:
    """Every field of every event type by name; a name used as nullable anywhere is nullable."""
    fields: dict[str, Field] = {f.name: f for f in ENVELOPE}
    for type_fields in EVENT_FIELDS.values():
        for f in type_fields:
            if f.name not in fields or f.kind == "nullable_string":
                fields[f.name] = Field(f.name, f.kind)
    return fields


def parsed_columns_ddl() -> str:
    """Columns of the wide parse table, one per field name, nullable where scalar."""
    columns = []
    for name, f in parsed_fields().items():
        base = {"nullable_string": "String", "splits": SPLITS_NULLABLE}.get(
            f.kind, KIND_TYPES[f.kind]
        )
        typed = base if f.kind in ("strings", "splits") else f"Nullable({base})"
        columns.append(f"{name} {typed} COMMENT 'parsed {name}, null where it does not parse'")
    return ",\n  ".join(columns)


def staging_columns() -> dict[str, str]:
    """Each staging table's columns. The event type read cheaply at staging routes each line
    to its type's parse query."""
    position = f"pos UInt64 COMMENT '{POSITION}'"
    parsed = (
        f"{position},\n  {parsed_columns_ddl()},\n"
        "  event_id_uuid Nullable(UUID) COMMENT 'event_id as a UUID, null when it is not one',\n"
        "  payload_hash UInt64 COMMENT 'hash of the line as read',\n"
        "  quarantine_reason String COMMENT 'first failed check, empty for a valid line'"
    )
    return {
        LINES: f"{position},\n  line String COMMENT 'the line as read, without its newline',\n"
        "  type_hint LowCardinality(String) DEFAULT JSONExtractString(line, 'event_type') "
        "COMMENT 'event_type read cheaply, routes the line to its parse query'",
        PARSED: parsed,
        CLASSIFIED: parsed + ",\n  outcome LowCardinality(String) "
        "COMMENT 'loaded, duplicate, or the quarantine reason'",
    }


def staging_ddl(table: str) -> str:
    return f"CREATE TABLE {table} ({staging_columns()[table]}) ENGINE = Memory"
