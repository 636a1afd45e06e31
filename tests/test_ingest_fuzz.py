"""Bad telemetry never breaks ingest: property-based tests on a real embedded warehouse.

Hypothesis writes sealed files that mix valid events of every type with broken lines (torn,
not UTF-8, deeply nested, huge, mistyped, out of range, at impossible times, breaking the money
invariants, repeated, conflicting) and checks the ingest guarantees of docs/ingest.md: ingest
never raises; every line of every file ends loaded, dropped as a duplicate of a loaded event, or
quarantined with its reason and its exact bytes; the ingest log adds up; and a loaded event
reads back with the values it was sent with. `CREATOR_ECON_FUZZ_EXAMPLES` runs more examples.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from creator_econ.settings import DEFAULTS
from ingest.loader import IngestReport, ingest
from telemetry.events import CURRENCIES, ENVELOPE, EVENT_FIELDS, SCHEMA_VERSION, Field
from telemetry.files import sealed_file_name
from warehouse.connection import connect
from warehouse.raw_tables import raw_table

INT64_MAX = 2**63 - 1
EVENT_TYPES = sorted(EVENT_FIELDS)
ROOT = Path(__file__).resolve().parents[1]

# Each example pays for a full ingest (about 50 warehouse statements), so examples are few but
# each holds many lines of many kinds.
FUZZ = settings(
    max_examples=int(os.environ.get("CREATOR_ECON_FUZZ_EXAMPLES", "20")),
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its example
    # No shrinking: each try costs a full ingest, and a failure already lists every misplaced
    # line with its kind and bytes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LOADED, DUPLICATE, QUARANTINED = "loaded", "duplicate", "quarantined"


@dataclass(frozen=True, repr=False)
class Line:
    """One line to write (without its newline), how it was made, and what ingest may do."""

    data: bytes
    kind: str
    allowed: frozenset[str]
    reason: str | None = None  # the exact quarantine reason, when it is certain
    event: dict[str, Any] | None = None  # what a loaded line must read back as

    def fits(self, outcome: str) -> bool:
        """`outcome` is loaded, duplicate, or the quarantine reason."""
        if outcome in (LOADED, DUPLICATE):
            return outcome in self.allowed
        return QUARANTINED in self.allowed and self.reason in (None, outcome)

    def __repr__(self) -> str:  # short: a failing example may hold lines of megabytes
        more = f"...+{len(self.data) - 120:,} bytes" if len(self.data) > 120 else ""
        return f"Line({self.kind!r}, {self.data[:120]!r}{more})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # what hypothesis prints
        printer.text(repr(self))

    def expected(self) -> str:
        return " or ".join(
            sorted(self.reason or x if x == QUARANTINED else x for x in self.allowed)
        )


@dataclass(frozen=True)
class SealedFile:
    name: str
    lines: tuple[Line, ...]
    compressed: bool = False
    torn_tail: bool = False  # the last line has no newline

    def data(self) -> bytes:
        body = b"\n".join(line.data for line in self.lines)
        if self.lines and not self.torn_tail:
            body += b"\n"
        return gzip.compress(body, mtime=0) if self.compressed else body


def loaded(data: bytes, kind: str, event: dict[str, Any] | None) -> Line:
    return Line(data, kind, frozenset({LOADED}), event=event)


def quarantined(data: bytes, kind: str, reason: str | None = None) -> Line:
    return Line(data, kind, frozenset({QUARANTINED}), reason)


def either(
    data: bytes, kind: str, event: dict[str, Any] | None = None, reason: str | None = None
) -> Line:
    """A line the contract does not decide (loaded or quarantined), which must still end
    in exactly one place, if loaded read back as sent, and if quarantined have `reason`
    (when docs/ingest.md names the one it must have)."""
    return Line(data, kind, frozenset({LOADED, QUARANTINED}), reason, event)


# The warehouse's JSON parser (simdjson) reads at most this many levels of nesting; a deeper
# line is "nested too deep for the parser", which docs/ingest.md quarantines as `not_json`.
PARSER_MAX_DEPTH = 1024


class _Pairs(list):
    """A JSON object's (key, value) pairs as read, so a repeated key is still visible."""


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def json_reason(data: bytes) -> str | None:
    """The quarantine reason docs/ingest.md gives a line that is not a usable event, decided by
    Python's own strict UTF-8 and JSON readers (not by ingest); None where the contract does
    not decide (a byte order mark, a number past a double) or the line may be an event."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    if text.startswith("\ufeff"):
        return None
    too_large = False

    def number(literal: str) -> float:
        nonlocal too_large
        value = float(literal)
        too_large |= math.isinf(value)
        return value

    try:
        value = json.loads(
            text, parse_constant=_refuse, parse_float=number, object_pairs_hook=_Pairs
        )
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate escape
    except (ValueError, UnicodeEncodeError):  # JSONDecodeError is a ValueError
        return "not_json"
    except RecursionError:
        return None
    if too_large:
        return None
    if not isinstance(value, _Pairs):
        return "not_json_object"
    keys = [key for key, _ in value]
    if len(set(keys)) != len(keys):
        return "duplicate_key"
    return None if "event_id" in keys else "missing_field:event_id"


# ---------------------------------------------------------------------------------------------
# Valid events of every type, built from the event model.

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
MONEY = st.integers(0, 2**60)  # five such terms still fit Int64, so invariants hold exactly


@st.composite
def times(draw: st.DrawFn, years: tuple[int, int] = (2000, 2099)) -> str:
    """An RFC 3339 UTC time with 0 to 6 fraction digits, as the telemetry contract allows."""
    moment = draw(st.datetimes(datetime(years[0], 1, 1), datetime(years[1], 12, 31, 23, 59)))
    digits = draw(st.integers(0, 6))
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"
    fraction = f"{moment.microsecond:06d}"[:digits]
    return f"{text}.{fraction}Z" if digits else f"{text}Z"


def parse_time(text: str) -> datetime:
    fraction = text[20:-1] if len(text) > 20 else ""
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(
        microsecond=int(fraction.ljust(6, "0")[:6])
    )


def value_strategy(field: Field) -> st.SearchStrategy[Any]:
    if field.allowed:
        return st.sampled_from(sorted(field.allowed))
    if field.name == "currency":
        return st.sampled_from(sorted(CURRENCIES))
    if field.name == "coins":
        return st.integers(1, INT64_MAX)
    if field.name == "quantity":
        return st.integers(1, 10**6)
    return {
        "string": TEXT,
        "nullable_string": st.none() | TEXT,
        "int": MONEY if field.is_money else st.integers(0, INT64_MAX),
        "number": st.floats(0, allow_nan=False, allow_infinity=False) | st.integers(0, 2**53),
        "time": times(),
        "date": st.dates(date(2000, 1, 1), date(2099, 12, 31)).map(date.isoformat),
        "strings": st.lists(TEXT, min_size=1, max_size=4),
        "splits": st.lists(
            st.fixed_dictionaries({"creator_id": TEXT, "share_minor": MONEY}), max_size=4
        ),
    }[field.kind]


@st.composite
def events(draw: st.DrawFn, event_type: str | None = None) -> dict[str, Any]:
    """A valid event (its event_id is filled in by the caller) with every invariant kept."""
    event_type = event_type or draw(st.sampled_from(EVENT_TYPES))
    event: dict[str, Any] = {
        "event_id": "",
        "event_type": event_type,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": draw(times()),
        "source": draw(TEXT),
    }
    for field in EVENT_FIELDS[event_type]:
        event[field.name] = draw(value_strategy(field))
    if event_type == "gift_sent":
        shares = sum(s["share_minor"] for s in event["splits"])
        event["value_minor"] = shares + event["platform_fee_minor"]
    if event_type == "order_paid":
        fees = event["payment_fee_minor"] + event["commission_minor"]
        event["gross_minor"] = event["creator_net_minor"] + fees
    if event_type == "media_usage" and parse_time(event["interval_end"]) < parse_time(
        event["interval_start"]
    ):
        event["interval_start"], event["interval_end"] = (
            event["interval_end"],
            event["interval_start"],
        )
    if event_type == "payout_issued":
        first, last = sorted([event["period_start"], event["period_end"]])
        event["period_start"], event["period_end"] = first, last
    return event


@st.composite
def layouts(draw: st.DrawFn, event: dict[str, Any]) -> bytes:
    """The event as one JSON line in any layout a producer may use: key order, spacing,
    escaped or raw UTF-8."""
    order = draw(st.permutations(list(event)))
    compact = draw(st.booleans())
    text = json.dumps(
        {k: event[k] for k in order},
        separators=(",", ":") if compact else (", ", ": "),
        ensure_ascii=draw(st.booleans()),
    )
    return text.encode()


def dump(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def fields_of(event: dict[str, Any]) -> list[Field]:
    return [*ENVELOPE, *EVENT_FIELDS[event["event_type"]]]


# ---------------------------------------------------------------------------------------------
# Broken lines. Each maker gets a fresh valid event and its serialized line.

Maker = Callable[[st.DrawFn, dict[str, Any], bytes], Line]

WRONG_TYPES: dict[str, list[Any]] = {
    "string": [5, 1.5, True, None, [], {}, ["x"]],
    "nullable_string": [5, 1.5, True, [], {}, ["x"]],
    "int": ["5", 5.5, 1e3, True, None, [], {}, "abc"],  # 1e3 is written 1000.0
    "number": ["5", True, None, [], {}, "abc"],
    "time": [5, 1.5, True, None, [], {}],
    "date": [5, True, None, [], {}],
    "strings": ["x", 5, None, {}, [], [5], [None], [["x"]]],
    "splits": ["x", 5, None, {}, [5], [None], ["x"]],
}
BEYOND_INT64 = [2**63, 2**64 - 1, 2**64, 2**64 + 1, 10**30, -(2**63) - 1, -(10**30)]
BAD_UTF8 = [
    b"\xff",
    b"\xfe\xfe",
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
]
NOT_OBJECTS = [b"null", b"[]", b"[1,2]", b'"event"', b"5", b"-1.5e3", b"true", b"false"]
FAR_YEARS = [1, 1000, 1899, 1900, 1969, 1999, 2100, 2200, 2299, 2300, 9999]
# Strings shaped like times (or not) that name no real instant.
BAD_TIMES = [
    "yesterday",
    "",
    "2026-10-01",
    "2026-10-01 10:00:00",
    "2026-10-01T10:00:00+02:00",
    "2026-10-01T10:00:00.000000z",
    "2026-13-01T00:00:00.000000Z",
    "2026-02-30T00:00:00.000000Z",
    "2026-00-01T00:00:00.000000Z",
    "2026-10-00T00:00:00.000000Z",
    "2026-10-01T24:00:00.000000Z",
    "2026-10-01T23:60:00.000000Z",
    "2026-10-01T99:99:99.000000Z",
    "0000-01-01T00:00:00.000000Z",
]
BAD_DATES = ["tomorrow", "", "2026/10/01", "20261001", "2026-02-30", "2026-13-01", "2026-01-00"]
FAR_DATE_YEARS = [0, 1, 1899, 1900, 2200, 2299, 2300, 9999]


def _valid(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    return loaded(data, "valid", event)


def _whitespace(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    before = draw(st.sampled_from([b"", b" ", b"\t", b"  "]))
    after = draw(st.sampled_from([b"\r", b" ", b"\t", b" \r", b"\r\r"]))
    return loaded(before + data + after, "whitespace or \\r\\n ending", event)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def _extra_field(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    name = draw(TEXT.filter(lambda n: n not in event))
    value = draw(JSON_VALUES)
    return loaded(draw(layouts({**event, name: value})), "extra field", event)


def _deep_extra(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    depth = draw(st.integers(1, 20_000))
    nested = b"[" * depth + b"]" * depth
    line, kind = data[:-1] + b',"nested":' + nested + b"}", f"extra field {depth} deep"
    if 1 + depth <= PARSER_MAX_DEPTH:  # the event's object holds the extra field
        return loaded(line, kind, event)
    return quarantined(line, kind, "not_json")


def _huge(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    size = draw(st.sampled_from([1 << 16, 1 << 20, 4 << 20]))
    padding = b',"padding":"' + b"x" * size + b'"}'
    return loaded(data[:-1] + padding, f"huge line (+{size:,} bytes)", event)


def _deep_line(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    depth = draw(st.integers(1, 100_000))
    too_deep = depth > PARSER_MAX_DEPTH
    if draw(st.booleans()):
        reason = "not_json" if too_deep else "not_json_object"
        return quarantined(b"[" * depth + b"]" * depth, f"array {depth} deep", reason)
    reason = "not_json" if too_deep else "missing_field:event_id"
    return quarantined(b'{"a":' * depth + b"1" + b"}" * depth, f"object {depth} deep", reason)


def _deep_field(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(fields_of(event)))
    depth = draw(st.integers(2, 5_000))
    nested = b"[" * depth + b"]" * depth
    body = dump({**event, field.name: "@@nested@@"}).replace(b'"@@nested@@"', nested)
    # An array where the field's value belongs is of the wrong JSON type for every kind.
    reason = "not_json" if 1 + depth > PARSER_MAX_DEPTH else f"invalid_field:{field.name}"
    return quarantined(body, f"{field.name} {depth} deep", reason)


def _truncated(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    cut = draw(st.integers(0, len(data) - 1))
    reason = json_reason(data[:cut])  # torn: not JSON, or not UTF-8 when cut inside a character
    assert reason in ("not_json", "not_utf8"), (data[:cut], reason)
    return quarantined(data[:cut], f"truncated at byte {cut}", reason)


def _not_utf8(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    at = draw(st.integers(0, len(data)))
    broken = data[:at] + draw(st.sampled_from(BAD_UTF8)) + data[at:]
    return quarantined(broken, "not UTF-8", "not_utf8")


def _garbage(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    noise = draw(st.binary(max_size=64).map(lambda b: b.replace(b"\n", b"")))
    return quarantined(noise, "random bytes", json_reason(noise))


def _not_an_object(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    return quarantined(
        draw(st.sampled_from(NOT_OBJECTS)), "JSON but not an object", "not_json_object"
    )


def _blank(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    return quarantined(
        draw(st.sampled_from([b"", b" ", b"\r", b"\t \r"])), "blank line", "not_json"
    )


def _empty_object(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    return quarantined(b"{}", "empty object", "missing_field:event_id")


def _wrong_type(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(fields_of(event)))
    value = draw(st.sampled_from(WRONG_TYPES[field.kind]))
    line = draw(layouts({**event, field.name: value}))
    return quarantined(line, f"{field.name} = {value!r}", f"invalid_field:{field.name}")


def _int_fields(event: dict) -> list[Field]:
    return [f for f in fields_of(event) if f.kind == "int"]


def _float_for_int(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(_int_fields(event)))
    value = float(event[field.name]) + draw(st.sampled_from([0.0, 0.5]))
    line = draw(layouts({**event, field.name: value}))
    return quarantined(line, f"{field.name} = {value!r}", f"invalid_field:{field.name}")


def _beyond_int64(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(_int_fields(event)))
    value = draw(st.sampled_from(BEYOND_INT64))
    line = draw(layouts({**event, field.name: value}))
    return quarantined(line, f"{field.name} = {value}", f"invalid_field:{field.name}")


def _negative(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    """A negative amount, usage or coin count: each has its own invariant."""
    usage = event["event_type"] == "media_usage"
    candidates = [
        f
        for f in EVENT_FIELDS[event["event_type"]]
        if f.is_money or f.name == "coins" or (usage and f.kind in ("int", "number"))
    ]
    if not candidates:
        return _valid(draw, event, data)
    field = draw(st.sampled_from(candidates))
    value = -draw(st.integers(1, INT64_MAX)) if field.kind == "int" else -0.5
    reason = "coins_not_positive" if field.name == "coins" else f"negative_{field.name}"
    line = draw(layouts({**event, field.name: value}))
    return quarantined(line, f"{field.name} = {value}", f"invariant:{reason}")


def _overflowing_invariant(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    """Amounts each within Int64 whose invariant holds only modulo 2**64."""
    low = 2**63 - 2**61  # three such terms pass 2**64
    big = st.integers(low, INT64_MAX)
    if draw(st.booleans()):
        gift = {**draw(events("gift_sent")), "event_id": event["event_id"]}
        a, b, fee = draw(big), draw(big), draw(big)
        gift["splits"] = [
            {"creator_id": "a", "share_minor": a},
            {"creator_id": "b", "share_minor": b},
        ]
        gift["platform_fee_minor"] = fee
        gift["value_minor"] = a + b + fee - 2**64
        return quarantined(dump(gift), "gift shares wrap Int64", "invariant:gift_split_sum")
    order = {**draw(events("order_paid")), "event_id": event["event_id"]}
    gross, payment, commission = draw(st.integers(0, 2**61)), draw(big), draw(big)
    order.update(gross_minor=gross, payment_fee_minor=payment, commission_minor=commission)
    order["creator_net_minor"] = gross - payment - commission + 2**64
    return quarantined(dump(order), "order net wraps Int64", "invariant:order_net")


def _time_fields(event: dict) -> list[Field]:
    return [f for f in fields_of(event) if f.kind == "time"]


def _far_time(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(_time_fields(event)))
    year = draw(st.sampled_from(FAR_YEARS))
    value = draw(times((year, year)))
    line = draw(layouts({**event, field.name: value}))
    return quarantined(line, f"{field.name} = {value}", f"invalid_field:{field.name}")


def _bad_time(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(_time_fields(event)))
    value = draw(st.sampled_from(BAD_TIMES))
    line = draw(layouts({**event, field.name: value}))
    return quarantined(line, f"{field.name} = {value!r}", f"invalid_field:{field.name}")


def _payout(draw: st.DrawFn, event: dict) -> dict:
    return {**draw(events("payout_issued")), "event_id": event["event_id"]}


def _far_date(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    """Dates have no window in the contract: either outcome, but a loaded one reads back."""
    payout = _payout(draw, event)
    name = draw(st.sampled_from(["period_start", "period_end"]))
    month, day = int(payout[name][5:7]), min(int(payout[name][8:10]), 28)
    payout[name] = f"{draw(st.sampled_from(FAR_DATE_YEARS)):04d}-{month:02d}-{day:02d}"
    return either(dump(payout), f"{name} = {payout[name]}", payout, f"invalid_field:{name}")


def _bad_date(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    payout = _payout(draw, event)
    name = draw(st.sampled_from(["period_start", "period_end"]))
    payout[name] = draw(st.sampled_from(BAD_DATES))
    return quarantined(dump(payout), f"{name} = {payout[name]!r}", f"invalid_field:{name}")


def _broken_invariant(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    which = draw(st.sampled_from(["split_sum", "negative_share", "order_net", "interval", "coins"]))
    if which == "split_sum":
        gift = {**draw(events("gift_sent")), "event_id": event["event_id"]}
        off = draw(st.integers(1, 2**60))
        value = gift["value_minor"]
        gift["value_minor"] = value + off if value < off else value - off
        return quarantined(dump(gift), "gift value != shares + fee", "invariant:gift_split_sum")
    if which == "negative_share":
        gift = {**draw(events("gift_sent")), "event_id": event["event_id"]}
        share = -draw(st.integers(1, 2**60))
        gift["splits"] = [*gift["splits"], {"creator_id": "x", "share_minor": share}]
        gift["platform_fee_minor"] -= share  # the sum still holds: only the sign is wrong
        gift["value_minor"] = (
            sum(s["share_minor"] for s in gift["splits"]) + gift["platform_fee_minor"]
        )
        return quarantined(dump(gift), "negative share", "invariant:negative_share")
    if which == "order_net":
        order = {**draw(events("order_paid")), "event_id": event["event_id"]}
        off = draw(st.integers(1, 2**60))
        net = order["creator_net_minor"]
        order["creator_net_minor"] = net + off if net < off else net - off
        return quarantined(dump(order), "order net != gross - fees", "invariant:order_net")
    if which == "interval":
        usage = {**draw(events("media_usage")), "event_id": event["event_id"]}
        start, end = sorted(
            draw(st.lists(times(), min_size=2, max_size=2, unique=True)), key=parse_time
        )
        if parse_time(start) == parse_time(end):
            return loaded(dump(usage), "valid media usage", usage)
        usage["interval_start"], usage["interval_end"] = end, start
        return quarantined(
            dump(usage), "interval ends before it starts", "invariant:interval_order"
        )
    kind = draw(st.sampled_from(["gift_sent", "coins_purchased"]))
    paid = {**draw(events(kind)), "event_id": event["event_id"], "coins": 0}
    return quarantined(dump(paid), "zero coins", "invariant:coins_not_positive")


def _unknown_type(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    name = draw(TEXT.filter(lambda t: t not in EVENT_FIELDS))
    line = draw(layouts({**event, "event_type": name}))
    return quarantined(line, f"event_type = {name!r}", "unknown_event_type")


def _unknown_version(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    version = draw(st.integers(-(2**63), INT64_MAX).filter(lambda v: v != SCHEMA_VERSION))
    line = draw(layouts({**event, "schema_version": version}))
    return quarantined(line, f"schema_version = {version}", "unknown_schema_version")


def _unknown_currency(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    if "currency" not in event:
        return _valid(draw, event, data)
    code = draw(
        st.sampled_from(["usd", "XXX", "US", ""]) | TEXT.filter(lambda c: c not in CURRENCIES)
    )
    line = draw(layouts({**event, "currency": code}))
    return quarantined(line, f"currency = {code!r}", "unknown_currency")


def _missing(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    field = draw(st.sampled_from(fields_of(event)))
    line = draw(layouts({k: v for k, v in event.items() if k != field.name}))
    return quarantined(line, f"no {field.name}", f"missing_field:{field.name}")


def _duplicate_key(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    name = draw(st.sampled_from(list(event)))
    value = draw(st.sampled_from([event[name], "other", 0]))
    again = json.dumps({name: value}, separators=(",", ":")).encode()[1:-1]
    return quarantined(b"{" + again + b"," + data[1:], f"{name} twice", "duplicate_key")


def _byte_order_mark(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    return either(b"\xef\xbb\xbf" + data, "byte order mark", event, "not_json")


def _lone_surrogate(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    # Valid JSON syntax, but no Unicode text: "\ud800" names half of a character.
    return quarantined(data[:-1] + b',"note":"a\\ud800b"}', "lone surrogate escape", "not_json")


def _nul_byte(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    at = draw(st.integers(1, len(data) - 1))
    line = data[:at] + b"\x00" + data[at:]
    reason = json_reason(line)  # a raw control byte; not UTF-8 when it splits a character
    assert reason in ("not_json", "not_utf8"), (line, reason)
    return quarantined(line, "raw NUL byte", reason)


def _uuid_spelling(draw: st.DrawFn, event: dict, data: bytes) -> Line:
    spelled = draw(
        st.sampled_from([str.upper, lambda u: u.replace("-", ""), lambda u: "{" + u + "}"])
    )(event["event_id"])
    return either(
        dump({**event, "event_id": spelled}), f"event_id {spelled}", event, "invalid_field:event_id"
    )


MAKERS: dict[str, Maker] = {
    "valid": _valid,
    "whitespace": _whitespace,
    "extra_field": _extra_field,
    "deep_extra": _deep_extra,
    "huge": _huge,
    "deep_line": _deep_line,
    "deep_field": _deep_field,
    "truncated": _truncated,
    "not_utf8": _not_utf8,
    "garbage": _garbage,
    "not_an_object": _not_an_object,
    "blank": _blank,
    "empty_object": _empty_object,
    "wrong_type": _wrong_type,
    "float_for_int": _float_for_int,
    "beyond_int64": _beyond_int64,
    "negative": _negative,
    "overflowing_invariant": _overflowing_invariant,
    "far_time": _far_time,
    "bad_time": _bad_time,
    "far_date": _far_date,
    "bad_date": _bad_date,
    "broken_invariant": _broken_invariant,
    "unknown_type": _unknown_type,
    "unknown_version": _unknown_version,
    "unknown_currency": _unknown_currency,
    "missing": _missing,
    "duplicate_key": _duplicate_key,
    "byte_order_mark": _byte_order_mark,
    "lone_surrogate": _lone_surrogate,
    "nul_byte": _nul_byte,
    "uuid_spelling": _uuid_spelling,
}
REPEATS = ["repeat", "conflict"]


def _repeat(draw: st.DrawFn, earlier: list[Line]) -> Line | None:
    """An earlier line again, byte for byte: a duplicate if that one loaded, else the same."""
    certain = [x for x in earlier if len(x.allowed) == 1]
    if not certain:
        return None
    first = draw(st.sampled_from(certain))
    allowed = frozenset({DUPLICATE}) if first.allowed == {LOADED} else first.allowed
    return Line(first.data, f"repeat of {first.kind}", allowed, first.reason)


def _conflict(draw: st.DrawFn, earlier: list[Line]) -> Line | None:
    """A loaded event_id again with other bytes: re-serialized equal, or a changed payload."""
    originals = [x for x in earlier if x.allowed == {LOADED} and x.event is not None]
    if not originals:
        return None
    first = draw(st.sampled_from(originals))
    assert first.event is not None
    if draw(st.booleans()):
        other = first.event | {
            "occurred_at": draw(times().filter(lambda t: t != first.event["occurred_at"]))
        }
        data = dump(other)
    else:
        data = first.data + b" "  # the same JSON value, other bytes
    if data == first.data:
        return None
    return quarantined(data, f"conflicting {first.kind}", "conflicting_duplicate")


@st.composite
def telemetry(draw: st.DrawFn) -> list[SealedFile]:
    """One to four sealed files of up to a dozen lines each, lines of any kind."""
    ids = itertools.count(1)
    earlier: list[Line] = []
    files = []
    for sequence in range(1, draw(st.integers(1, 4)) + 1):
        lines: list[Line] = []
        for _ in range(draw(st.integers(0, 12))):
            kind = draw(st.sampled_from([*MAKERS, *REPEATS]))
            line = None
            if kind == "repeat":
                line = _repeat(draw, earlier + lines)
            elif kind == "conflict":
                line = _conflict(draw, earlier + lines)
            if line is None:
                event = {**draw(events()), "event_id": str(uuid.UUID(int=next(ids)))}
                maker = MAKERS.get(kind, _valid)
                line = maker(draw, event, draw(layouts(event)))
            lines.append(line)
        compressed = draw(st.booleans())
        name = sealed_file_name("fuzz", sequence) + (".gz" if compressed else "")
        torn = bool(lines) and lines[-1].data != b"" and draw(st.booleans())
        files.append(SealedFile(name, tuple(lines), compressed, torn))
        earlier += lines
    return files


# ---------------------------------------------------------------------------------------------
# Running ingest and reading what it did.


@pytest.fixture(scope="module")
def fuzz_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One embedded warehouse for the module, emptied before each example."""
    client = connect(f"chdb://{tmp_path_factory.mktemp('fuzz') / 'warehouse'}")
    yield client
    client.close()


def empty_warehouse(client: Client) -> None:
    tables = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    for (table,) in tables:
        client.command(f"TRUNCATE TABLE {table}")


def write_files(root: Path, files: list[SealedFile]) -> None:
    sealed = root / "sealed"
    sealed.mkdir(parents=True, exist_ok=True)
    for f in files:
        (sealed / f.name).write_bytes(f.data())


def run_ingest(
    client: Client, files: list[SealedFile], in_warehouse: bool, batch_bytes: int
) -> IngestReport:
    empty_warehouse(client)
    with tempfile.TemporaryDirectory() as folder:
        write_files(Path(folder), files)
        return ingest(
            client, Path(folder), read_files_in_warehouse=in_warehouse, batch_bytes=batch_bytes
        )


def raw_rows(client: Client) -> Counter[tuple[str, int]]:
    union = " UNION ALL ".join(f"SELECT _file, _line FROM {raw_table(t)}" for t in EVENT_FIELDS)
    return Counter((f, int(n)) for f, n in client.query(union).result_rows)


def quarantine_rows(client: Client) -> dict[tuple[str, int], list[tuple[str, bytes]]]:
    rows: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
    for file, number, reason, raw in client.query(
        "SELECT _file, _line, reason, hex(raw_line) FROM quarantine"
    ).result_rows:
        rows.setdefault((file, int(number)), []).append((reason, bytes.fromhex(raw)))
    return rows


def ingest_log(client: Client) -> dict[str, tuple[int, ...]]:
    rows = client.query(
        "SELECT _file, lines_read, loaded, duplicates, quarantined, conflicting FROM ingest_log"
    ).result_rows
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows}


def describe(f: SealedFile, number: int, line: Line) -> str:
    return f"{f.name}:{number} ({line.kind}): {line.data[:160]!r}"


def check_every_line(client: Client, files: list[SealedFile], report: IngestReport) -> None:
    """Each line in exactly one place, each count in the ingest log adding up to the file, and
    every line where its kind says it belongs (all misplaced lines are listed at once)."""
    log = ingest_log(client)
    assert sorted(log) == sorted(f.name for f in files)
    reported = {
        r.file: (r.lines_read, r.loaded, r.duplicates, r.quarantined, r.conflicting)
        for r in report.files
    }
    assert reported == log
    raw, quarantine = raw_rows(client), quarantine_rows(client)
    written = {(f.name, n) for f in files for n in range(1, len(f.lines) + 1)}
    assert set(raw) <= written and set(quarantine) <= written, "rows for lines never written"
    misplaced: list[str] = []
    for f in files:
        outcomes: Counter[str] = Counter()
        for number, line in enumerate(f.lines, 1):
            where = describe(f, number, line)
            rejected = quarantine.get((f.name, number), [])
            assert raw[(f.name, number)] + len(rejected) <= 1, f"stored twice: {where}"
            outcome = LOADED if raw[(f.name, number)] else QUARANTINED if rejected else DUPLICATE
            outcomes[outcome] += 1
            if rejected:
                reason, stored = rejected[0]
                assert reason, f"no reason: {where}"
                assert stored == line.data, f"raw line changed: {where}"
                outcomes["conflicting"] += reason == "conflicting_duplicate"
                outcome = reason
            if not line.fits(outcome):
                misplaced.append(f"{outcome}, expected {line.expected()}: {where}")
        lines_read, n_loaded, duplicates, n_quarantined, conflicting = log[f.name]
        assert lines_read == len(f.lines) == n_loaded + duplicates + n_quarantined, f.name
        assert (n_loaded, duplicates, n_quarantined, conflicting) == (
            outcomes[LOADED],
            outcomes[DUPLICATE],
            outcomes[QUARANTINED],
            outcomes["conflicting"],
        ), f.name
    assert not misplaced, f"{len(misplaced)} lines misplaced:\n" + "\n".join(misplaced)


def expected_value(field: Field, value: Any) -> Any:
    if field.kind == "time":
        return parse_time(value)
    if field.kind == "date":
        return date.fromisoformat(value)
    if field.kind == "number":
        return float(value)
    return value


def read_back(client: Client, event_type: str) -> dict[tuple[str, int], dict[str, Any]]:
    names = ["event_id", "occurred_at", "source", *(f.name for f in EVENT_FIELDS[event_type])]
    try:
        rows = client.query(
            f"SELECT {', '.join(names)}, _file, _line FROM {raw_table(event_type)}"
        ).named_results()
        return {(r.pop("_file"), int(r.pop("_line"))): r for r in rows}
    except ValueError as exc:  # the driver could not decode a stored value
        raise AssertionError(
            f"{raw_table(event_type)} holds a value it cannot read: {exc}"
        ) from exc


def check_loaded_values(client: Client, files: list[SealedFile]) -> None:
    """A loaded event reads back exactly as it was sent: nothing normalized or wrapped."""
    raw = raw_rows(client)
    by_type: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    for f in files:
        for number, line in enumerate(f.lines, 1):
            if line.event is None or not raw[(f.name, number)]:
                continue
            event = line.event
            if event["event_type"] not in by_type:
                by_type[event["event_type"]] = read_back(client, event["event_type"])
            stored = by_type[event["event_type"]].get((f.name, number))
            assert stored is not None, f"loaded in another table: {describe(f, number, line)}"
            assert str(stored.pop("event_id")) == str(uuid.UUID(event["event_id"]))
            for field in fields_of(event)[3:]:
                assert stored[field.name] == expected_value(field, event[field.name]), (
                    f"{field.name} stored as {stored[field.name]!r}: {describe(f, number, line)}"
                )


# ---------------------------------------------------------------------------------------------
# The properties.


@pytest.mark.parametrize("in_warehouse", [True, False], ids=["file-read", "bytes-sent"])
@FUZZ
@given(files=telemetry(), one_file_per_batch=st.booleans())
def test_every_line_ends_loaded_duplicate_or_quarantined(
    fuzz_warehouse: Client, in_warehouse: bool, files: list[SealedFile], one_file_per_batch: bool
) -> None:
    batch_bytes = 1 if one_file_per_batch else DEFAULTS.batch_bytes
    report = run_ingest(fuzz_warehouse, files, in_warehouse, batch_bytes)
    check_every_line(fuzz_warehouse, files, report)
    check_loaded_values(fuzz_warehouse, files)


@pytest.mark.parametrize("in_warehouse", [True, False], ids=["file-read", "bytes-sent"])
@settings(FUZZ, max_examples=2)
@given(every_type=st.tuples(*(events(t) for t in EVENT_TYPES)), data=st.data())
def test_a_valid_event_of_every_type_loads_as_sent(
    fuzz_warehouse: Client, in_warehouse: bool, every_type: tuple[dict, ...], data: st.DataObject
) -> None:
    lines = []
    for n, event in enumerate(every_type, 1):
        event = {**event, "event_id": str(uuid.UUID(int=n))}
        lines.append(loaded(data.draw(layouts(event)), event["event_type"], event))
    files = [SealedFile(sealed_file_name("types", 1), tuple(lines))]
    check_every_line(fuzz_warehouse, files, run_ingest(fuzz_warehouse, files, in_warehouse, 1))
    check_loaded_values(fuzz_warehouse, files)


# ---------------------------------------------------------------------------------------------
# Fixed examples of what the fuzzing found, so each stays visible on its own.


def ingest_lines(client: Client, *lines: Line, in_warehouse: bool = True) -> list[SealedFile]:
    """The lines as one sealed file, ingested; every misplaced line is reported together."""
    files = [SealedFile(sealed_file_name("fixed", 1), lines)]
    check_every_line(client, files, run_ingest(client, files, in_warehouse, DEFAULTS.batch_bytes))
    return files


def base_event(event_type: str, /, **changes: Any) -> dict[str, Any]:
    """A valid event of `event_type` with `changes`; each call gets a new event_id."""
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=next(_FIXED_IDS))),
        "event_type": event_type,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": "2026-10-01T10:05:00.000000Z",
        "source": "fixed",
    }
    return {**event, **SAMPLES[event_type], **changes}


_FIXED_IDS = itertools.count(1)
SAMPLES: dict[str, dict[str, Any]] = {
    "gift_sent": {
        "gift_id": "g1",
        "session_id": "s1",
        "sender_id": "u1",
        "coins": 10,
        "value_minor": 10,
        "currency": "USD",
        "splits": [{"creator_id": "c1", "share_minor": 5}],
        "platform_fee_minor": 5,
    },
    "order_paid": {
        "order_id": "o1",
        "session_id": None,
        "creator_id": "c1",
        "product_id": "p1",
        "quantity": 1,
        "gross_minor": 1000,
        "currency": "USD",
        "payment_fee_minor": 59,
        "commission_minor": 80,
        "creator_net_minor": 861,
    },
    "payout_issued": {
        "payout_id": "p1",
        "creator_id": "c1",
        "amount_minor": 500,
        "currency": "USD",
        "period_start": "2026-09-01",
        "period_end": "2026-09-30",
    },
}


def test_a_time_that_names_no_real_instant_is_quarantined(fuzz_warehouse):
    """Hours past 23, month or day 00, year 0000: no time, whatever a lenient parser makes of
    it (2026-10-01T99:99:99 must not load as 2026-10-05T04:40:39)."""
    ingest_lines(
        fuzz_warehouse,
        *(
            quarantined(
                dump(base_event("gift_sent", occurred_at=value)),
                "bad time",
                "invalid_field:occurred_at",
            )
            for value in BAD_TIMES
        ),
    )


def test_a_date_that_names_no_real_day_is_quarantined(fuzz_warehouse):
    """2026-02-30 is not 2026-03-02, and 2026-13-01 is not 1900-01-01."""
    ingest_lines(
        fuzz_warehouse,
        *(
            quarantined(
                dump(base_event("payout_issued", period_start=value)),
                "bad date",
                "invalid_field:period_start",
            )
            for value in BAD_DATES
        ),
    )


def test_a_loaded_date_reads_back(fuzz_warehouse):
    """A date of year 0000 must not be stored where the client cannot read it back."""
    event = base_event("payout_issued", period_start="0000-01-01")
    line = either(dump(event), "year 0000", event, "invalid_field:period_start")
    files = ingest_lines(fuzz_warehouse, line)
    check_loaded_values(fuzz_warehouse, files)


def test_money_invariants_do_not_hold_by_integer_wraparound(fuzz_warehouse):
    """Shares of 2 x (2**63 - 1) and a fee of 2 are not a gift worth 0, nor fees of
    2 x (2**63 - 1) on a gross of 0 an order netting 2."""
    top = INT64_MAX
    gift = base_event(
        "gift_sent",
        splits=[{"creator_id": "a", "share_minor": top}, {"creator_id": "b", "share_minor": top}],
        platform_fee_minor=2,
        value_minor=0,
    )
    order = base_event(
        "order_paid",
        gross_minor=0,
        payment_fee_minor=top,
        commission_minor=top,
        creator_net_minor=2,
    )
    ingest_lines(
        fuzz_warehouse,
        quarantined(dump(gift), "gift wraps", "invariant:gift_split_sum"),
        quarantined(dump(order), "order wraps", "invariant:order_net"),
    )


def test_a_value_of_the_wrong_json_type_is_quarantined(fuzz_warehouse):
    """Types are checked on the line as sent: `10.0` and `1e2` are JSON numbers with a
    fraction or exponent, not integers, even though they are whole; and inside `splits`, as at
    the top level, a share is a JSON integer (`true` is not 1 cent, `"5"` is not 5)."""
    mistyped = [
        ("coins 10.0", base_event("gift_sent", coins=10.0), "invalid_field:coins"),
        (
            "schema_version 1.0",
            base_event("gift_sent", schema_version=1.0),
            "invalid_field:schema_version",
        ),
        (
            "fee 5.0",
            base_event("gift_sent", platform_fee_minor=5.0),
            "invalid_field:platform_fee_minor",
        ),
        (
            "gross 1e3",
            base_event("order_paid", gross_minor=1e3, creator_net_minor=861),
            "invalid_field:gross_minor",
        ),
    ]
    entries = {
        "share as a string": ({"creator_id": "c1", "share_minor": "5"}, 5),
        "share as a float": ({"creator_id": "c1", "share_minor": 5.0}, 5),
        "share as a boolean": ({"creator_id": "c1", "share_minor": True}, 9),  # sums if true = 1
        "creator as a number": ({"creator_id": 5, "share_minor": 5}, 5),
        "entry as an array": (["c1", 5], 5),
    }
    for kind, (entry, fee) in entries.items():
        event = base_event("gift_sent", splits=[entry], platform_fee_minor=fee)
        mistyped.append((kind, event, "invalid_field:splits"))
    lines = [quarantined(dump(event), kind, reason) for kind, event, reason in mistyped]
    ingest_lines(fuzz_warehouse, *lines)


@pytest.mark.xfail(
    strict=True,
    reason="the warehouse's JSON reader hands a number past 64 bits to the type check as a "
    "quoted string, so it passes for a string; see docs/ingest.md",
)
def test_a_number_past_64_bits_is_not_a_string(fuzz_warehouse):
    event = base_event("gift_sent", gift_id=10**30)
    ingest_lines(fuzz_warehouse, quarantined(dump(event), "gift_id 1e30", "invalid_field:gift_id"))


@pytest.mark.parametrize("in_warehouse", [True, False], ids=["file-read", "bytes-sent"])
def test_a_corrupt_compressed_file_does_not_stop_the_run(fuzz_warehouse, in_warehouse):
    """A .jsonl.gz cut short must not fail every run on it forever: the readable files load,
    and the broken one is accounted for in the ingest log and the quarantine."""
    event = base_event("gift_sent")
    good = SealedFile(sealed_file_name("fixed", 1), (loaded(dump(event), "valid", event),))
    broken = sealed_file_name("fixed", 2) + ".gz"
    empty_warehouse(fuzz_warehouse)
    with tempfile.TemporaryDirectory() as folder:
        write_files(Path(folder), [good])
        cut = gzip.compress(b'{"a":1}\n' * 1000, mtime=0)[:-30]
        (Path(folder) / "sealed" / broken).write_bytes(cut)
        ingest(fuzz_warehouse, Path(folder), read_files_in_warehouse=in_warehouse)
    log = ingest_log(fuzz_warehouse)
    # (lines_read, loaded, duplicates, quarantined, conflicting)
    assert log == {good.name: (1, 1, 0, 0, 0), broken: (1, 0, 0, 1, 0)}
    # docs/ingest.md: logged as one line, quarantined as `unreadable_file` with the error as
    # its raw line (not any line of the file).
    rows = [(key, found) for key, found in quarantine_rows(fuzz_warehouse).items()]
    assert len(rows) == 1
    ((file, _), [(reason, raw_line)]) = rows[0]
    assert (file, reason) == (broken, "unreadable_file")
    assert raw_line.strip() and b'{"a":1}' not in raw_line


# ---------------------------------------------------------------------------------------------
# The real command over a folder of bad files.


def cli_lines() -> list[Line]:
    """Valid gifts, a redelivery, a conflict, and one line of each kind of damage."""
    gifts = [base_event("gift_sent", gift_id=f"g_cli_{n}") for n in range(3)]
    ok = [loaded(dump(g), "valid", g) for g in gifts]
    big = base_event("order_paid", padding="x" * (2 << 20))
    damaged = [
        (dump(base_event("gift_sent"))[:40], "not_json"),
        (dump(base_event("gift_sent", gift_id="g")).replace(b'"g"', b'"\xff"'), "not_utf8"),
        (b"[" * 50_000 + b"]" * 50_000, "not_json"),
        (b"", "not_json"),
        (b"null", "not_json_object"),
        (b"[1,2]", "not_json_object"),
        (b"\x00\x01 not json \r", "not_json"),
        (dump(base_event("gift_sent", coins="10")), "invalid_field:coins"),
        (dump(base_event("gift_sent", coins=10.0)), "invalid_field:coins"),
        (dump(base_event("order_paid", gross_minor=2**64)), "invalid_field:gross_minor"),
        (
            dump(base_event("gift_sent", occurred_at="1900-01-01T00:00:00Z")),
            "invalid_field:occurred_at",
        ),
        (
            dump(base_event("gift_sent", occurred_at="9999-12-31T00:00:00Z")),
            "invalid_field:occurred_at",
        ),
        (dump(base_event("gift_sent", occurred_at="yesterday")), "invalid_field:occurred_at"),
        (dump(base_event("gift_sent", event_type="gift_exploded")), "unknown_event_type"),
        (dump(base_event("gift_sent", schema_version=2)), "unknown_schema_version"),
        (dump(base_event("gift_sent", currency="XXX")), "unknown_currency"),
        (dump(base_event("gift_sent", value_minor=11)), "invariant:gift_split_sum"),
        (dump(base_event("order_paid", creator_net_minor=1)), "invariant:order_net"),
        (b'{"coins":1,' + dump(base_event("gift_sent"))[1:], "duplicate_key"),
        (dump(base_event("gift_sent"))[:-1] + b',"note":"\\ud800"}', "not_json"),
    ]
    return [
        *ok,
        loaded(dump(big), "huge", big),
        Line(ok[0].data, "redelivery", frozenset({DUPLICATE})),
        quarantined(ok[1].data + b" ", "conflict", "conflicting_duplicate"),
        *(quarantined(data, "damaged", reason) for data, reason in damaged),
    ]


def test_the_run_command_survives_a_folder_of_bad_files(tmp_path):
    lines = cli_lines()
    telemetry = tmp_path / "telemetry"
    files = [
        SealedFile(sealed_file_name("bad", 1), tuple(lines[:12])),
        SealedFile(sealed_file_name("bad", 2) + ".gz", tuple(lines[12:]), compressed=True),
        SealedFile(sealed_file_name("bad", 3), ()),
        SealedFile(sealed_file_name("bad", 4), (lines[-1],), torn_tail=True),
    ]
    write_files(telemetry, files)
    done = subprocess.run(
        [sys.executable, "-m", "creator_econ.cli", "run", "--telemetry", str(telemetry),
         "--marts", str(tmp_path / "marts"), "--data", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    summary = re.search(
        r"ingest done in [\d.]+s: (\d+) files, ([\d,]+) lines: ([\d,]+) loaded, "
        r"([\d,]+) duplicates, ([\d,]+) quarantined \(([\d,]+) conflicting duplicates\)",
        output,
    )
    assert summary, output[-3000:]
    n_files, read, n_loaded, duplicates, n_quarantined, conflicting = (
        int(v.replace(",", "")) for v in summary.groups()
    )
    assert n_files == len(files)
    assert read == sum(len(f.lines) for f in files) == n_loaded + duplicates + n_quarantined
    expected = Counter(next(iter(x.allowed)) for f in files for x in f.lines)
    assert (n_loaded, duplicates, n_quarantined) == (
        expected[LOADED],
        expected[DUPLICATE],
        expected[QUARANTINED],
    )
    assert conflicting == 1
    # Each damaged line under the reason docs/ingest.md gives it, as the data health page
    # publishes them (the command's own output, without opening the warehouse).
    reasons = pq.read_table(tmp_path / "marts" / "health" / "quarantine_reasons.parquet")
    published = dict(zip(reasons["reason"].to_pylist(), reasons["lines"].to_pylist(), strict=True))
    assert published == Counter(x.reason for f in files for x in f.lines if x.reason)
