"""Staging tables of one ingest batch: the lines as read, each event type's lines parsed into
typed columns, every line's verdict, and the lines to load.

They live in memory (`ENGINE = Memory`, the loaded positions a `Set`), are emptied per batch
and never outlive a load. Each event type has its own parse table with that type's columns,
so a line is parsed once and the raw tables are written from typed columns.
"""

from __future__ import annotations

from telemetry.events import ENVELOPE, EVENT_FIELDS, Field
from warehouse.raw_tables import KIND_TYPES

LINES = "_stage_lines"
VERDICTS = "_stage_verdicts"  # every parsed line: its id, payload hash and quarantine reason
OUTCOMES = "_stage_outcomes"  # every parsed line: loaded, duplicate, or why it is quarantined
LOADED = "_stage_loaded"  # the positions of the lines to load (a Set, for `pos IN`)
UNKNOWN = None  # the parse of lines whose event_type is missing or not in the model
# Split entries are decoded by the typed JSON reader, which is fast but reads "5" as 5.
SPLITS_NULLABLE = "Array(Tuple(creator_id Nullable(String), share_minor Nullable(Int64)))"
POSITION = "(file index in the batch << 40) | line number"


def parsed_table(event_type: str | None) -> str:
    """The parse table of one event type (None: lines of a missing or unknown type)."""
    return f"_stage_{event_type or 'unknown_type'}"


def parsed_fields(event_type: str | None) -> list[Field]:
    return [*ENVELOPE, *(EVENT_FIELDS[event_type] if event_type else ())]


def parsed_column(field: Field) -> str:
    """A parsed field: typed, null where the line's value does not parse (arrays empty)."""
    base = {"nullable_string": "String", "splits": SPLITS_NULLABLE}.get(
        field.kind, KIND_TYPES[field.kind]
    )
    typed = base if field.kind in ("strings", "splits") else f"Nullable({base})"
    return f"{field.name} {typed} COMMENT 'parsed {field.name}, null where it does not parse'"


_POS = f"pos UInt64 COMMENT '{POSITION}'"
_VERDICT = (
    "event_id_uuid Nullable(UUID) COMMENT 'event_id as a UUID, null when it is not one',\n"
    "  payload_hash UInt64 COMMENT 'hash of the line as read',\n"
    "  quarantine_reason String COMMENT 'first failed check, empty for a valid line'"
)


def staging_columns() -> dict[str, str]:
    """Each staging table's columns."""
    parsed = {
        parsed_table(t): ",\n  ".join(
            [_POS, *(parsed_column(f) for f in parsed_fields(t)), _VERDICT]
        )
        for t in [*EVENT_FIELDS, UNKNOWN]
    }
    return {
        LINES: f"{_POS},\n  line String COMMENT 'the line as read, without its newline',\n"
        "  type_hint LowCardinality(String) DEFAULT JSONExtractString(line, 'event_type') "
        "COMMENT 'event_type read cheaply, routes the line to its parse query'",
        **parsed,
        VERDICTS: f"{_POS},\n"
        "  event_type Nullable(String) COMMENT 'event_type as sent, null when absent',\n"
        "  event_id Nullable(String) COMMENT 'event_id as sent, null when absent',\n"
        f"  {_VERDICT}",
        OUTCOMES: f"{_POS},\n  outcome LowCardinality(String) "
        "COMMENT 'loaded, duplicate, or the quarantine reason'",
        LOADED: "pos UInt64 COMMENT 'a line that loads'",
    }


def staging_ddl(table: str) -> str:
    engine = "Set" if table == LOADED else "Memory"
    return f"CREATE TABLE {table} ({staging_columns()[table]}) ENGINE = {engine}"


STAGING_TABLES: tuple[str, ...] = tuple(staging_columns())
