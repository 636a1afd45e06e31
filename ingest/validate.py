"""The SQL that parses and validates staged telemetry lines in bulk, built from the event model.

Each line is parsed once (`JSONExtractKeysAndValuesRaw`) into its keys and raw JSON values; every
field is then type-checked on its raw text, so `"5"` is not mistaken for `5`. Two lines carry the
same payload when they are byte-identical (a redelivery); any other line with a known event_id is a
conflict, kept in quarantine for review rather than guessed equal. The first failing
check names the line's quarantine reason; an empty reason means the line is valid.
"""

from __future__ import annotations

from ingest.schema import KIND_TYPES
from live_runtime.events import (
    CURRENCIES,
    ENVELOPE,
    EVENT_FIELDS,
    SCHEMA_VERSION,
    Field,
    FieldKind,
)

_TIME_RE = r"^\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z\"$"
_DATE_RE = r"^\"[0-9]{4}-[0-9]{2}-[0-9]{2}\"$"
# Split entries are decoded by the typed JSON reader, which is fast but reads "5" as 5.
_SPLITS_NULLABLE = "Array(Tuple(creator_id Nullable(String), share_minor Nullable(Int64)))"
# Times outside this range are not telemetry from a running platform.
_EARLIEST, _LATEST = "2000-01-01", "2100-01-01"


def _raw(name: str) -> str:
    return f"r_{name}"


def _unquoted(r: str) -> str:
    return f"substring({r}, 2, length({r}) - 2)"


def _value_sql(kind: FieldKind, r: str) -> str:
    """The typed value of a raw JSON value; NULL where it does not parse."""
    return {
        "string": _string_sql(r),
        "nullable_string": f"if({r} IN ('', 'null'), NULL, {_string_sql(r)})",
        "int": f"toInt64OrNull({r})",
        "number": f"toFloat64OrNull({r})",
        "time": f"parseDateTime64BestEffortOrNull({_unquoted(r)}, 6, 'UTC')",
        "date": f"toDate32OrNull({_unquoted(r)})",
        "strings": f"JSONExtract({r}, 'Array(String)')",
        "splits": f"JSONExtract(line, 'splits', '{_SPLITS_NULLABLE}')",
    }[kind]


def _string_sql(r: str) -> str:
    """A JSON string's value; the full decoder only for the rare value with escapes."""
    return f"if(position({r}, '\\\\') = 0, {_unquoted(r)}, JSONExtractString({r}))"


def _valid_sql(field: Field) -> str:
    """True when the raw value has the field's JSON type (and vocabulary)."""
    r, v = _raw(field.name), field.name
    check = {
        "string": f"startsWith({r}, '\"')",
        "nullable_string": f"({r} = 'null' OR startsWith({r}, '\"'))",
        "int": f"{v} IS NOT NULL",
        "number": f"{v} IS NOT NULL AND isFinite(assumeNotNull({v}))",
        "time": (
            f"match({r}, '{_TIME_RE}') AND {v} IS NOT NULL"
            f" AND {v} >= toDateTime64('{_EARLIEST}', 6, 'UTC')"
            f" AND {v} < toDateTime64('{_LATEST}', 6, 'UTC')"
        ),
        "date": f"match({r}, '{_DATE_RE}') AND {v} IS NOT NULL",
        "strings": (
            f"startsWith({r}, '[') AND notEmpty(JSONExtractArrayRaw({r}))"
            f" AND arrayAll(x -> startsWith(x, '\"'), JSONExtractArrayRaw({r}))"
        ),
        "splits": (
            f"startsWith({r}, '[') AND length({v}) = length(JSONExtractArrayRaw({r}))"
            f" AND arrayAll(s -> s.1 IS NOT NULL AND s.2 IS NOT NULL, {v})"
        ),
    }[field.kind]
    if field.allowed:
        check += f" AND {v} IN {_sql_set(field.allowed)}"
    return check


def _sql_set(values: frozenset[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


def _field_checks(field: Field) -> list[tuple[str, str]]:
    return [
        (f"{_raw(field.name)} = ''", f"missing_field:{field.name}"),
        (f"NOT ({_valid_sql(field)})", f"invalid_field:{field.name}"),
    ]


def _invariant_checks(event_type: str) -> list[tuple[str, str]]:
    fields = EVENT_FIELDS[event_type]
    checks = [(f"{f.name} < 0", f"invariant:negative_{f.name}") for f in fields if f.is_money]
    names = {f.name for f in fields}
    if "coins" in names:
        checks.append(("coins <= 0", "invariant:coins_not_positive"))
    if "currency" in names:
        checks.append((f"currency NOT IN {_sql_set(CURRENCIES)}", "unknown_currency"))
    if event_type == "gift_sent":
        checks += [
            ("arrayExists(s -> s.2 < 0, splits)", "invariant:negative_share"),
            (
                "arraySum(s -> assumeNotNull(s.2), splits) + platform_fee_minor != value_minor",
                "invariant:gift_split_sum",
            ),
        ]
    if event_type == "order_paid":
        checks.append(
            (
                "creator_net_minor != gross_minor - payment_fee_minor - commission_minor",
                "invariant:order_net",
            )
        )
    if event_type == "media_usage":
        checks += [
            (f"{f.name} < 0", f"invariant:negative_{f.name}")
            for f in fields
            if f.kind in ("int", "number")
        ]
        checks.append(("interval_end < interval_start", "invariant:interval_order"))
    return checks


def _first_failure(checks: list[tuple[str, str]]) -> str:
    if not checks:
        return "''"
    parts = ", ".join(f"{cond}, '{reason}'" for cond, reason in checks)
    return f"multiIf({parts}, '')"


def parsed_fields() -> dict[str, Field]:
    """Every field of every event type by name; a name used as nullable anywhere is nullable."""
    fields: dict[str, Field] = {f.name: f for f in ENVELOPE}
    for type_fields in EVENT_FIELDS.values():
        for f in type_fields:
            if f.name not in fields or f.kind == "nullable_string":
                fields[f.name] = Field(f.name, f.kind)
    return fields


def reason_sql(event_type: str | None) -> str:
    """The quarantine reason of a line of `event_type` ('' when valid); with None, of a line
    whose event_type is missing or unknown, which always has a reason."""
    envelope = [c for f in ENVELOPE for c in _field_checks(f)]
    envelope.insert(2, ("event_id_uuid IS NULL", "invalid_field:event_id"))
    checks = [
        ("NOT isValidUTF8(line)", "not_utf8"),
        ("empty(kv) AND NOT isValidJSON(line)", "not_json"),
        ("empty(kv) AND JSONType(line) != 'Object'", "not_json_object"),
        ("length(arrayDistinct(keys)) != length(keys)", "duplicate_key"),
        *envelope,
        (f"event_type NOT IN {_sql_set(frozenset(EVENT_FIELDS))}", "unknown_event_type"),
        (f"schema_version != {SCHEMA_VERSION}", "unknown_schema_version"),
        # The staging hint routed the line here; a line whose keys disagree (a repeated
        # event_type key) is not trusted with either reading.
        ("event_type != type_hint", "invalid_field:event_type"),
    ]
    if event_type is not None:
        fields = EVENT_FIELDS[event_type]
        checks += [c for f in fields for c in _field_checks(f)] + _invariant_checks(event_type)
    return _first_failure(checks)


def parse_select_sql(lines_table: str, event_type: str | None) -> tuple[list[str], str]:
    """Columns and SELECT that parse the staged lines of one event type (None: lines with a
    missing or unknown type) into rows of the parse table, with their quarantine reason.

    One query per type keeps every expression specific to the fields that type has, which is
    several times faster than one query that considers every type on every line.
    """
    fields = list(ENVELOPE) + list(EVENT_FIELDS[event_type] if event_type else ())
    raws = ",\n    ".join(f"vals[indexOf(keys, '{f.name}')] AS {_raw(f.name)}" for f in fields)
    values = ",\n    ".join(f"{_value_sql(f.kind, _raw(f.name))} AS {f.name}" for f in fields)
    if event_type is None:
        where = f"type_hint NOT IN {_sql_set(frozenset(EVENT_FIELDS))}"
    else:
        where = f"type_hint = '{event_type}'"
    columns = [
        "pos",
        *(f.name for f in fields),
        "event_id_uuid",
        "payload_hash",
        "quarantine_reason",
    ]
    return (
        columns,
        f"""
SELECT {", ".join(columns)}
FROM (
  SELECT
    pos, line, type_hint,
    JSONExtractKeysAndValuesRaw(line) AS kv,
    arrayMap(x -> x.1, kv) AS keys,
    arrayMap(x -> x.2, kv) AS vals,
    {raws},
    {values},
    toUUIDOrNull(event_id) AS event_id_uuid,
    cityHash64(line) AS payload_hash,
    {reason_sql(event_type)} AS quarantine_reason
  FROM {lines_table}
  WHERE {where}
)""",
    )


def parsed_columns_ddl() -> str:
    """Columns of the wide parse table, one per field name, nullable where scalar."""
    columns = []
    for name, f in parsed_fields().items():
        base = {"nullable_string": "String", "splits": _SPLITS_NULLABLE}.get(
            f.kind, KIND_TYPES[f.kind]
        )
        columns.append(f"{name} {base if f.kind in ('strings', 'splits') else f'Nullable({base})'}")
    return ",\n  ".join(columns)
