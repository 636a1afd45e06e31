"""The SQL that parses and validates staged telemetry lines in bulk, built from the event model.

Lines are parsed one event type at a time (the type read at staging routes them), so every
expression is specific to the fields that type has. Each line is split once into its keys and
raw JSON values (`JSONExtractKeysAndValuesRaw`) and each field is type-checked on its raw text, so
`"5"` is not mistaken for `5`; the first failing check names the line's quarantine reason. Two
lines carry the same payload when they are byte-identical (a redelivery); any other line with a
known event_id is a conflict, kept in quarantine for review rather than guessed equal.
"""

from __future__ import annotations

from telemetry.events import (
    CURRENCIES,
    ENVELOPE,
    EVENT_FIELDS,
    SCHEMA_VERSION,
    Field,
    FieldKind,
)
from warehouse.staging_tables import SPLITS_NULLABLE

_TIME_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Times outside this range are not telemetry from a running platform.
_EARLIEST, _LATEST = "2000-01-01", "2100-01-01"
_TEXT_KINDS = ("time", "date")  # JSON strings parsed into typed values

Rule = tuple[str, str]  # (SQL condition that fails the line, quarantine reason)


def _raw(name: str) -> str:
    return f"r_{name}"


def _text(name: str) -> str:
    """The string content of a time or date field, before it is parsed."""
    return f"s_{name}"


def _unquoted(r: str) -> str:
    return f"substring({r}, 2, length({r}) - 2)"


def _sql_set(values: frozenset[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


def _first_failure(checks: list[Rule]) -> str:
    if not checks:
        return "''"
    parts = ", ".join(f"{cond}, '{reason}'" for cond, reason in checks)
    return f"multiIf({parts}, '')"


def _text_value_sql(kind: FieldKind, text: str) -> str:
    if kind == "time":
        return f"parseDateTime64BestEffortOrNull({text}, 6, 'UTC')"
    return f"toDate32OrNull({text})"


def _value_sql(field: Field) -> str:
    """The typed value from the raw JSON text; NULL where it does not parse."""
    r = _raw(field.name)
    if field.kind in _TEXT_KINDS:
        return _text_value_sql(field.kind, _text(field.name))
    return {
        "string": _string_sql(r),
        "nullable_string": f"if({r} IN ('', 'null'), NULL, {_string_sql(r)})",
        "int": f"toInt64OrNull({r})",
        "number": f"toFloat64OrNull({r})",
        "strings": f"JSONExtract({r}, 'Array(String)')",
        "splits": f"JSONExtract(line, 'splits', '{SPLITS_NULLABLE}')",
    }[field.kind]


def _string_sql(r: str) -> str:
    """A JSON string's value; the full decoder only for the rare value with escapes."""
    return f"if(position({r}, '\\\\') = 0, {_unquoted(r)}, JSONExtractString({r}))"


def _json_type_sql(field: Field) -> str:
    """True when the raw JSON value has the field's type."""
    r, v = _raw(field.name), field.name
    return {
        "string": f"startsWith({r}, '\"')",
        "nullable_string": f"({r} = 'null' OR startsWith({r}, '\"'))",
        # On the line as sent: the raw value is re-serialized, which writes 10.0 as 10.
        "int": f"JSONType(line, '{v}') IN ('Int64', 'UInt64') AND {v} IS NOT NULL",
        "number": f"{v} IS NOT NULL",
        "time": f"startsWith({r}, '\"')",
        "date": f"startsWith({r}, '\"')",
        "strings": f"startsWith({r}, '[') AND arrayAll(x -> startsWith(x, '\"'), "
        f"JSONExtractArrayRaw({r}))",
        "splits": f"startsWith({r}, '[') AND length({v}) = length(JSONExtractArrayRaw({r}))"
        f" AND arrayAll(s -> s.1 IS NOT NULL AND s.2 IS NOT NULL, {v})"
        f" AND arrayAll(i -> JSONType(line, '{v}', i) = 'Object'"
        f" AND JSONType(line, '{v}', i, 'creator_id') = 'String'"
        f" AND JSONType(line, '{v}', i, 'share_minor') IN ('Int64', 'UInt64'),"
        f" arrayEnumerate({v}))",
    }[field.kind]


def _value_ok_sql(field: Field) -> str | None:
    """True when a value of the right JSON type is also an acceptable value."""
    v = field.name
    check = {
        "time": f"match({_text(v)}, '{_TIME_RE}') AND {v} IS NOT NULL"
        # The parser carries 24:00, 23:60 or day 00 over into a real time: refuse what it moved.
        f" AND formatDateTime({v}, '%Y-%m-%dT%H:%i:%S', 'UTC') = substring({_text(v)}, 1, 19)"
        f" AND {v} >= toDateTime64('{_EARLIEST}', 6, 'UTC')"
        f" AND {v} < toDateTime64('{_LATEST}', 6, 'UTC')",
        "date": f"match({_text(v)}, '{_DATE_RE}') AND {v} IS NOT NULL"
        f" AND toString({v}) = {_text(v)}"
        f" AND {_text(v)} >= '{_EARLIEST}' AND {_text(v)} < '{_LATEST}'",
        "number": f"isFinite(assumeNotNull({v}))",
        "strings": f"notEmpty({v})",
    }.get(field.kind)
    if field.allowed:
        vocabulary = f"{v} IN {_sql_set(field.allowed)}"
        check = f"{check} AND {vocabulary}" if check else vocabulary
    return check


def _field_checks(fields: list[Field]) -> list[Rule]:
    checks: list[Rule] = []
    for f in fields:
        checks.append((f"{_raw(f.name)} = ''", f"missing_field:{f.name}"))
        checks.append((f"NOT ({_json_type_sql(f)})", f"invalid_field:{f.name}"))
        if (ok := _value_ok_sql(f)) is not None:
            checks.append((f"NOT ({ok})", f"invalid_field:{f.name}"))
    return checks


def _envelope_value_checks() -> list[Rule]:
    return [
        ("event_id_uuid IS NULL", "invalid_field:event_id"),
        (f"event_type NOT IN {_sql_set(frozenset(EVENT_FIELDS))}", "unknown_event_type"),
        (f"schema_version != {SCHEMA_VERSION}", "unknown_schema_version"),
        # The staging hint routed the line here; both readings of the type must agree.
        ("event_type != type_hint", "invalid_field:event_type"),
    ]


def _invariant_checks(event_type: str) -> list[Rule]:
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
                # In 128 bits: Int64 sums wrap, and a wrapped sum can match.
                "arraySum(s -> toInt128(assumeNotNull(s.2)), splits) + platform_fee_minor"
                " != value_minor",
                "invariant:gift_split_sum",
            ),
        ]
    if event_type == "order_paid":
        checks.append(
            (
                "creator_net_minor != toInt128(gross_minor) - payment_fee_minor - commission_minor",
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


def reason_sql(event_type: str | None) -> str:
    """The quarantine reason for a line of `event_type` ('' when valid); with
    None, for a line whose event_type is missing or unknown, which always has a reason."""
    fields = [*ENVELOPE, *(EVENT_FIELDS[event_type] if event_type else ())]
    checks = [
        ("NOT isValidUTF8(line)", "not_utf8"),
        ("empty(kv) AND NOT isValidJSON(line)", "not_json"),
        ("empty(kv) AND JSONType(line) != 'Object'", "not_json_object"),
        ("length(arrayDistinct(keys)) != length(keys)", "duplicate_key"),
        *_field_checks(list(ENVELOPE)),
        *_envelope_value_checks(),
    ]
    if event_type is not None:
        checks += _field_checks(fields[len(ENVELOPE) :]) + _invariant_checks(event_type)
    return _first_failure(checks)


def _columns(fields: list[Field]) -> list[str]:
    return ["pos", *(f.name for f in fields), "event_id_uuid", "payload_hash", "quarantine_reason"]


def parse_select_sql(lines_table: str, event_type: str | None) -> tuple[list[str], str]:
    """Columns and SELECT that parse the staged lines of one event type (None: lines with a
    missing or unknown type) into rows of the parse table, with their quarantine reason."""
    fields = [*ENVELOPE, *(EVENT_FIELDS[event_type] if event_type else ())]
    raws = [f"vals[indexOf(keys, '{f.name}')] AS {_raw(f.name)}" for f in fields]
    texts = [
        f"{_unquoted(_raw(f.name))} AS {_text(f.name)}" for f in fields if f.kind in _TEXT_KINDS
    ]
    values = [f"{_value_sql(f)} AS {f.name}" for f in fields]
    if event_type is None:
        where = f"type_hint NOT IN {_sql_set(frozenset(EVENT_FIELDS))}"
    else:
        where = f"type_hint = '{event_type}'"
    columns = _columns(fields)
    expressions = ",\n    ".join(raws + texts + values)
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
    {expressions},
    toUUIDOrNull(event_id) AS event_id_uuid,
    cityHash64(line) AS payload_hash,
    {reason_sql(event_type)} AS quarantine_reason
  FROM {lines_table}
  WHERE {where}
)""",
    )
