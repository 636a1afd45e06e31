"""Telemetry JSON Lines built in bulk from columns, driven by the event model in events.py.

Formatting one event at a time with dicts and json.dumps is far too slow for millions of
events. Instead the fixed-width start of every line (event id, type, time, source) is laid
out in numpy arrays with table lookups, and the fields are appended by one polars string
expression per event type. All strings the simulator writes are ids, enums and numbers, so
no JSON escaping is needed.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from telemetry.events import EVENT_FIELDS, SCHEMA_VERSION, Field

# Order of event types that share an instant: a session starts before anyone joins it, and
# people leave and usage is reported before it ends. A coin refund comes after the gifts of
# its instant, which spend from the wallet before it takes coins back (simulator/cashflow.py).
TIE_ORDER: tuple[str, ...] = (
    "session_started",
    "host_joined",
    "viewer_joined",
    "coins_purchased",
    "gift_sent",
    "gift_failed",
    "order_paid",
    "checkout_failed",
    "order_refunded",
    "coins_refunded",
    "payout_issued",
    "viewer_left",
    "host_left",
    "media_usage",
    "session_ended",
)


def _text_table(texts: list[bytes]) -> np.ndarray:
    """Equal-length ASCII texts as one void item each, for fast gathers with np.take."""
    width = len(texts[0])
    return np.frombuffer(b"".join(texts), dtype=np.uint8).view(f"V{width}").copy()


def _gather(out: np.ndarray, table: np.ndarray, index: np.ndarray) -> None:
    """Writes table rows into the (n, width) slice `out`."""
    out[:] = np.take(table, index).view(np.uint8).reshape(len(index), -1)


# The four hex digits of each 16-bit value, in the byte order of a little-endian view.
_HEX4 = _text_table([f"{v & 0xFF:02x}{v >> 8:02x}".encode() for v in range(1 << 16)])
# (text column, first digit, end digit) of each dash-separated group of a UUID's 32 digits.
_UUID_GROUPS = ((0, 0, 8), (9, 8, 12), (14, 12, 16), (19, 16, 20), (24, 20, 32))
_UUID_DASHES = [8, 13, 18, 23]
_CLOCK = _text_table(
    [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.".encode() for s in range(86_400)]
)
_DIGITS3 = _text_table([f"{v:03d}".encode() for v in range(1000)])
_EPOCH = date(1970, 1, 1)
SLICE_ROWS = 65_536  # rows formatted or written at a time
_DAY_US = 86_400_000_000


def ascii_series(matrix: np.ndarray) -> pl.Series:
    """A string Series from an (n, width) uint8 matrix of ASCII, without a Python loop."""
    rows, width = matrix.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    array = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))
    return pl.Series(array)


def _fill_uuid4(out: np.ndarray, rng: np.random.Generator) -> None:
    """Writes UUIDs with the version-4 layout, drawn from the seeded generator, into (n, 36)."""
    raw = rng.bit_generator.random_raw(2 * len(out)).view(np.uint8).reshape(len(out), 16)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = np.take(_HEX4, raw.view("<u2")).view(np.uint8).reshape(len(out), 32)
    for column, first, last in _UUID_GROUPS:
        out[:, column : column + last - first] = digits[:, first:last]
    out[:, _UUID_DASHES] = ord("-")


def uuid4_strings(rng: np.random.Generator, n: int) -> pl.Series:
    """UUIDs drawn from the seeded generator (not uuid.uuid4()), so runs repeat exactly."""
    out = np.empty((n, 36), dtype=np.uint8)
    _fill_uuid4(out, rng)
    return ascii_series(out)


def _fill_time(out: np.ndarray, t_us: np.ndarray) -> None:
    """Writes microseconds since the epoch as events.TIME_FORMAT text into (n, 27)."""
    if len(t_us) == 0:
        return
    day, micros = np.divmod(t_us, _DAY_US)
    first = int(day.min())
    days = [
        (_EPOCH + timedelta(days=first + i)).strftime("%Y-%m-%dT").encode()
        for i in range(int(day.max()) - first + 1)
    ]
    second, fraction = np.divmod(micros, 1_000_000)
    _gather(out[:, 0:11], _text_table(days), day - first)
    _gather(out[:, 11:20], _CLOCK, second)
    _gather(out[:, 20:23], _DIGITS3, fraction // 1000)
    _gather(out[:, 23:26], _DIGITS3, fraction % 1000)
    out[:, 26] = ord("Z")


def time_strings(t_us: np.ndarray) -> pl.Series:
    """RFC 3339 UTC text of microseconds since the epoch, exactly like events.TIME_FORMAT."""
    out = np.empty((len(t_us), 27), dtype=np.uint8)
    _fill_time(out, np.asarray(t_us, dtype=np.int64))
    return ascii_series(out)


def _envelope(
    event_type: str, t_us: np.ndarray, source: str, rng: np.random.Generator
) -> pl.Series:
    """The envelope of each event up to its first field; it has a fixed width per type."""
    head = b'{"event_id":"'
    middle = f'","event_type":"{event_type}","schema_version":{SCHEMA_VERSION},"occurred_at":"'
    tail = f'","source":"{source}"'.encode()
    template = head + b"-" * 36 + middle.encode() + b"-" * 27 + tail
    event_id = np.empty((len(t_us), 36), dtype=np.uint8)
    _fill_uuid4(event_id, rng)
    occurred_at = np.empty((len(t_us), 27), dtype=np.uint8)
    _fill_time(occurred_at, t_us)
    # Filled narrow then copied in: writing strided columns of the wide rows is much slower.
    out = np.empty((len(t_us), len(template)), dtype=np.uint8)
    out[:] = np.frombuffer(template, dtype=np.uint8)
    out[:, len(head) : len(head) + 36] = event_id
    at = len(head) + 36 + len(middle)
    out[:, at : at + 27] = occurred_at
    return ascii_series(out)


def labels(names: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    """The names of integer codes, e.g. region codes to region names."""
    return pl.Series(names).gather(np.asarray(codes, dtype=np.int64))


def prefixed_id(prefix: str, column: str, width: int) -> pl.Expr:
    """A readable id such as `cr_000042` from an integer column, under the column's name."""
    return (pl.lit(prefix) + pl.col(column).cast(pl.String).str.zfill(width)).alias(column)


def json_list(items: list[pl.Expr]) -> pl.Expr:
    """A JSON array of the non-null items, which are already JSON text."""
    return pl.concat_str(
        [pl.lit("["), pl.concat_str(items, separator=",", ignore_nulls=True), pl.lit("]")]
    )


def _json_parts(field: Field) -> tuple[str, pl.Expr, str]:
    """(text before, column text, text after) of one field's JSON value, by its kind."""
    column = pl.col(field.name)
    match field.kind:
        case "string" | "time":  # times are already text, see event_lines
            return '"', column, '"'
        case "nullable_string":
            quoted = pl.concat_str([pl.lit('"'), column, pl.lit('"')])
            return "", pl.when(column.is_null()).then(pl.lit("null")).otherwise(quoted), ""
        case "int" | "number":
            return "", column.cast(pl.Int64).cast(pl.String), ""
        case "date":
            return '"', column.dt.strftime("%Y-%m-%d"), '"'
        case "strings" | "splits":
            return "", column, ""
    raise ValueError(f"unknown field kind {field.kind!r}")


def event_lines(
    event_type: str, frame: pl.DataFrame, source: str, rng: np.random.Generator
) -> pl.LazyFrame:
    """Lines (`t`, `tie`, `line`) for events of one type.

    `frame` holds `t` (occurred_at, microseconds since the epoch) and exactly the fields of
    the type; anything else is a bug that would break the contract, so it raises. Rows are
    formatted in slices, because fresh memory is costly and small buffers get reused.
    """
    fields = EVENT_FIELDS[event_type]
    expected = {"t", *(f.name for f in fields)}
    if set(frame.columns) != expected:
        raise ValueError(f"{event_type} columns {sorted(frame.columns)} != {sorted(expected)}")
    pieces, text = [pl.col("envelope")], ""
    for field in fields:
        before, value, after = _json_parts(field)
        pieces += [pl.lit(f'{text},"{field.name}":{before}'), value]
        text = after
    pieces.append(pl.lit(text + "}\n"))
    line = pl.concat_str(pieces).alias("line")
    tie = pl.lit(TIE_ORDER.index(event_type), dtype=pl.Int8).alias("tie")
    times = [f.name for f in fields if f.kind == "time"]
    parts = [
        part.drop(times)
        .hstack(
            [
                *(time_strings(part[name].to_numpy()).alias(name) for name in times),
                _envelope(event_type, part["t"].to_numpy(), source, rng).alias("envelope"),
            ]
        )
        .lazy()
        .select(pl.col("t").cast(pl.Int64), tie, line)
        for part in frame.iter_slices(SLICE_ROWS)
    ]
    return pl.concat(parts)
