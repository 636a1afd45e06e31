"""Loading sealed telemetry files into the warehouse exactly once.

Files are taken in delivery order and loaded in batches: stage the lines, parse and validate
them in one SQL pass, classify each line (loaded, duplicate, quarantined) against the event
index and the rest of the batch, then write the raw tables, the index, the quarantine, and last
the per-file ingest log. A file with a started but uncommitted load is rolled back first, so a
crash at any point followed by a rerun neither loses nor doubles an event.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.schema import (
    EVENT_INDEX,
    INGEST_ATTEMPTS,
    INGEST_LOG,
    MARTS_DIRTY_DAYS,
    QUARANTINE,
    ensure_schema,
    raw_table,
)
from ingest.validate import parse_select_sql, parsed_columns_ddl
from live_runtime.events import EVENT_FIELDS
from live_runtime.telemetry import list_sealed

FILE_SHIFT = 40  # a line's position is (file index << 40) | line number
DEFAULT_BATCH_BYTES = 512 * 1024 * 1024

LINES, PARSED, CLASSIFIED = "_stage_lines", "_stage_parsed", "_stage_classified"
NOT_QUARANTINED = ("loaded", "duplicate")


@dataclass(frozen=True)
class FileReport:
    file: str
    lines_read: int
    loaded: int
    duplicates: int
    quarantined: int
    conflicting: int


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)
    seconds: float = 0.0
    touched_days: set[date] = field(default_factory=set)  # days whose marts may have changed

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def lines_read(self) -> int:
        return self.total("lines_read")

    def summary(self) -> str:
        return (
            f"{len(self.files)} files, {self.lines_read:,} lines: {self.total('loaded'):,} loaded, "
            f"{self.total('duplicates'):,} duplicates, {self.total('quarantined'):,} quarantined "
            f"({self.total('conflicting'):,} conflicting duplicates)"
        )


def pending_files(client: Client, telemetry_dir: Path) -> list[Path]:
    """Sealed files not yet committed to the ingest log, in delivery order."""
    done = {r[0] for r in client.query(f"SELECT _file FROM {INGEST_LOG}").result_rows}
    return [p for p in list_sealed(telemetry_dir) if p.name not in done]


def ingest(
    client: Client,
    telemetry_dir: Path,
    *,
    read_files_in_warehouse: bool,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Callable[[str], None] | None = None,
    deduplicate: bool = True,
) -> IngestReport:
    """Load every new sealed file. `read_files_in_warehouse` lets an embedded warehouse read the
    files itself; a server gets their bytes sent over the connection. `deduplicate=False`
    loads every valid line, duplicates included: it exists only to measure what exactly-once
    costs, and must not be used on a real warehouse."""
    started = time.perf_counter()
    say = progress or (lambda line: None)
    ensure_schema(client)
    _create_stage_tables(client)
    _roll_back_interrupted(client)
    report = IngestReport()
    files = pending_files(client, telemetry_dir)
    batches = list(_batches(files, batch_bytes))
    for number, batch in enumerate(batches, 1):
        step = partial(_say_step, say, f"ingest: batch {number}/{len(batches)}")
        reports, days = _load_batch(client, batch, read_files_in_warehouse, deduplicate, step)
        report.files += reports
        report.touched_days |= days
        done = sum(len(b) for b in batches[:number])
        say(f"ingest: {done}/{len(files)} files, {report.summary().split(': ', 1)[1]}")
    report.seconds = time.perf_counter() - started
    return report


def _say_step(say: Callable[[str], None], prefix: str, what: str) -> None:
    say(f"{prefix}: {what}")


def _batches(files: list[Path], batch_bytes: int) -> list[list[Path]]:
    batches: list[list[Path]] = []
    size = 0
    for path in files:
        length = path.stat().st_size
        if not batches or size + length > batch_bytes:
            batches.append([])
            size = 0
        batches[-1].append(path)
        size += length
    return batches


def _create_stage_tables(client: Client) -> None:
    """Staging lives in memory and is emptied per batch; it never outlives a load."""
    fields = parsed_columns_ddl()
    ddl = {
        # The event type read cheaply at staging routes each line to its type's parse query.
        LINES: "pos UInt64, line String, "
        "type_hint LowCardinality(String) DEFAULT JSONExtractString(line, 'event_type')",
        PARSED: f"pos UInt64,\n  {fields},\n  event_id_uuid Nullable(UUID),\n"
        "  payload_hash UInt64,\n  quarantine_reason String",
    }
    ddl[CLASSIFIED] = ddl[PARSED] + ",\n  outcome LowCardinality(String)"
    for table, columns in ddl.items():
        client.command(f"DROP TABLE IF EXISTS {table}")
        client.command(f"CREATE TABLE {table} ({columns}) ENGINE = Memory")


def _truncate_stage(client: Client) -> None:
    for table in (LINES, PARSED, CLASSIFIED):
        client.command(f"TRUNCATE TABLE {table}")


def _roll_back_interrupted(client: Client) -> None:
    """Delete every row of a load that started but never reached the ingest log."""
    rows = client.query(
        f"SELECT DISTINCT _file FROM {INGEST_ATTEMPTS} "
        f"WHERE _file NOT IN (SELECT _file FROM {INGEST_LOG})"
    ).result_rows
    files = [r[0] for r in rows]
    if not files:
        return
    for table in [raw_table(t) for t in EVENT_FIELDS] + [EVENT_INDEX, QUARANTINE]:
        client.command(
            f"DELETE FROM {table} WHERE _file IN {{files:Array(String)}}",
            parameters={"files": files},
        )


def _stage_file(client: Client, index: int, path: Path, read_in_warehouse: bool) -> None:
    base = index << FILE_SHIFT
    if read_in_warehouse:
        client.command(
            f"INSERT INTO {LINES} (pos, line) SELECT {{base:UInt64}} + _row_number + 1, line "
            "FROM file({path:String}, LineAsString)",
            parameters={"base": base, "path": str(path.resolve())},
        )
        return
    client.insert_arrow(LINES, _lines_table(path, base))


def _lines_table(path: Path, base: int) -> pa.Table:
    """The file's lines as Arrow, for a warehouse that cannot read the file itself.

    Built with array operations only: the newline bytes are dropped from the buffer and the
    line boundaries become the Arrow offsets, so millions of lines cost no Python loop.
    """
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buffer = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buffer == 10)
    offsets = np.concatenate([[0], newlines - np.arange(len(newlines))]).astype(np.int64)
    content = np.delete(buffer, newlines)
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(newlines), [None, pa.py_buffer(offsets), pa.py_buffer(content)]
    )
    positions = pa.array(np.arange(1, len(newlines) + 1, dtype=np.uint64) + np.uint64(base))
    return pa.table({"pos": positions, "line": lines})


def _load_batch(
    client: Client,
    files: list[Path],
    read_in_warehouse: bool,
    deduplicate: bool,
    step: Callable[[str], None],
) -> tuple[list[FileReport], set[date]]:
    """One batch, in the order that makes a crash anywhere safe: the ingest log comes last."""
    names = [p.name for p in files]
    _truncate_stage(client)
    client.insert(
        INGEST_ATTEMPTS,
        [[name, _now()] for name in names],
        column_names=["_file", "started_at"],
    )
    unreadable: dict[int, str] = {}
    for index, path in enumerate(files):
        if problem := _unreadable(path):
            unreadable[index] = problem
            continue
        _stage_file(client, index, path, read_in_warehouse)
    step(f"read {len(files)} files")
    for event_type in [*EVENT_FIELDS, None]:
        columns, select = parse_select_sql(LINES, event_type)
        client.command(f"INSERT INTO {PARSED} ({', '.join(columns)}) {select}")
    client.command(_classify_sql() if deduplicate else _accept_all_sql())
    client.command(f"TRUNCATE TABLE {PARSED}")
    step("parsed and classified")
    days = _touched_days(client)
    params = {"files": names}
    file_name = f"{{files:Array(String)}}[bitShiftRight(pos, {FILE_SHIFT}) + 1]"
    line_no = f"bitAnd(pos, {(1 << FILE_SHIFT) - 1})"
    for event_type, fields in EVENT_FIELDS.items():
        columns = ["event_id", "occurred_at", "source", *(f.name for f in fields)]
        values = ["event_id_uuid", "occurred_at", "source", *(f.name for f in fields)]
        client.command(
            f"INSERT INTO {raw_table(event_type)} ({', '.join(columns)}, _file, _line) "
            f"SELECT {', '.join(values)}, {file_name}, {line_no} FROM {CLASSIFIED} "
            f"WHERE outcome = 'loaded' AND event_type = '{event_type}'",
            parameters=params,
        )
    if deduplicate:
        client.command(
            f"INSERT INTO {EVENT_INDEX} (event_id, payload_hash, event_type, _file) "
            f"SELECT event_id_uuid, payload_hash, event_type, {file_name} FROM {CLASSIFIED} "
            "WHERE outcome = 'loaded'",
            parameters=params,
        )
    client.command(
        f"INSERT INTO {QUARANTINE} "
        f"SELECT {file_name}, {line_no}, q.outcome, ifNull(q.event_id, ''), "
        f"ifNull(q.event_type, ''), l.line, now64(6) "
        f"FROM {LINES} AS l INNER JOIN (SELECT pos, outcome, event_id, event_type "
        f"FROM {CLASSIFIED} WHERE outcome NOT IN {NOT_QUARANTINED}) AS q USING pos",
        parameters=params,
    )
    reports = _file_reports(client, names)
    if unreadable:
        reports = _quarantine_unreadable(client, names, reports, unreadable)
    # Noted before the ingest log: once a file counts as loaded, the days it touched are on
    # record until the marts covering them are published. A crash before the log rolls the
    # batch back and leaves at most a few extra notes, which only cost a recompute.
    note_dirty_days(client, days)
    step("raw tables, index and quarantine written; writing the ingest log")
    client.insert(
        INGEST_LOG,
        [
            [
                r.file,
                r.lines_read,
                r.loaded,
                r.duplicates,
                r.quarantined,
                r.conflicting,
                p.stat().st_size,
                _now(),
            ]
            for r, p in zip(reports, files, strict=True)
        ],
        column_names=[
            "_file",
            "lines_read",
            "loaded",
            "duplicates",
            "quarantined",
            "conflicting",
            "bytes",
            "ingested_at",
        ],
    )
    _truncate_stage(client)
    return reports, days


def _unreadable(path: Path) -> str | None:
    """Why a sealed file cannot be read at all (a cut-off .gz, an I/O error), or None.

    Such a file must not stop every later run: it is logged as one quarantined line."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                while stream.read(1 << 24):
                    pass
        else:
            with open(path, "rb"):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"unreadable file: {type(exc).__name__}: {exc}"
    return None


def _quarantine_unreadable(
    client: Client, names: list[str], reports: list[FileReport], unreadable: dict[int, str]
) -> list[FileReport]:
    client.insert(
        QUARANTINE,
        [
            [names[i], 0, "unreadable_file", "", "", problem, _now()]
            for i, problem in unreadable.items()
        ],
        column_names=[
            "_file",
            "_line",
            "reason",
            "event_id",
            "event_type",
            "raw_line",
            "quarantined_at",
        ],
    )
    return [
        FileReport(r.file, 1, 0, 0, 1, 0) if i in unreadable else r for i, r in enumerate(reports)
    ]


def _accept_all_sql() -> str:
    """Classification without deduplication, for measuring what deduplication costs."""
    return (
        f"INSERT INTO {CLASSIFIED} SELECT p.*, if(p.quarantine_reason != '', "
        f"p.quarantine_reason, 'loaded') FROM {PARSED} AS p"
    )


def _touched_days(client: Client) -> set[date]:
    """Days whose metrics the batch's new events can change: their own day, for usage the day
    of the interval's start, which is the day its cost belongs to, and for a newly paid order
    the days of its refunds and other paid events (a refund counts once its order is known,
    and an order is dated by its first paid event)."""
    new_orders = (
        f"SELECT order_id FROM {CLASSIFIED} "
        "WHERE outcome = 'loaded' AND event_type = 'order_paid' AND order_id IS NOT NULL"
    )
    rows = client.query(
        f"SELECT DISTINCT toDate(occurred_at) FROM {CLASSIFIED} WHERE outcome = 'loaded' "
        f"UNION DISTINCT SELECT DISTINCT toDate(interval_start) FROM {CLASSIFIED} "
        "WHERE outcome = 'loaded' AND event_type = 'media_usage' "
        f"UNION DISTINCT SELECT DISTINCT toDate(occurred_at) FROM {raw_table('order_refunded')} "
        f"WHERE order_id IN ({new_orders}) "
        f"UNION DISTINCT SELECT DISTINCT toDate(occurred_at) FROM {raw_table('order_paid')} "
        f"WHERE order_id IN ({new_orders})"
    ).result_rows
    return {r[0] for r in rows}


def note_dirty_days(client: Client, days: set[date]) -> None:
    """Record days whose mart partitions the new events make stale."""
    if days:
        now = _now()
        client.insert(
            MARTS_DIRTY_DAYS, [[d, now] for d in sorted(days)], column_names=["day", "noted_at"]
        )


def pending_dirty_days(client: Client) -> tuple[frozenset[date], datetime | None]:
    """The days noted as stale and the time of the latest note (None when there is none)."""
    ensure_schema(client)
    rows = client.query(
        f"SELECT day, max(noted_at) FROM {MARTS_DIRTY_DAYS} GROUP BY day"
    ).result_rows
    if not rows:
        return frozenset(), None
    return frozenset(r[0] for r in rows), max(r[1] for r in rows)


def clear_dirty_days(client: Client, noted_until: datetime) -> None:
    """Forget the notes up to `noted_until`: the marts covering them are published. Notes
    written later (a load that ran meanwhile) stay for the next publish."""
    client.command(
        f"DELETE FROM {MARTS_DIRTY_DAYS} WHERE noted_at <= {{until:DateTime64(6, 'UTC')}}",
        parameters={"until": noted_until},
    )


def _classify_sql() -> str:
    """Each valid line is new, an exact duplicate, or a conflicting duplicate of the first
    occurrence of its event_id: in the index if already loaded, else earliest in this batch."""
    return f"""
INSERT INTO {CLASSIFIED}
SELECT p.*,
  multiIf(
    p.quarantine_reason != '', p.quarantine_reason,
    k.known = 1 AND k.known_hash = p.payload_hash, 'duplicate',
    k.known = 1, 'conflicting_duplicate',
    f.first_pos != 0 AND f.first_pos != p.pos AND f.first_hash = p.payload_hash, 'duplicate',
    f.first_pos != 0 AND f.first_pos != p.pos, 'conflicting_duplicate',
    'loaded')
FROM {PARSED} AS p
LEFT JOIN (
  SELECT event_id AS id, any(payload_hash) AS known_hash, toUInt8(1) AS known
  FROM {EVENT_INDEX}
  WHERE event_id IN (SELECT event_id_uuid FROM {PARSED} WHERE quarantine_reason = '')
  GROUP BY event_id
) AS k ON p.event_id_uuid = k.id
LEFT JOIN (
  SELECT event_id_uuid AS id, argMin(payload_hash, pos) AS first_hash, min(pos) AS first_pos
  FROM {PARSED} WHERE quarantine_reason = ''
  GROUP BY event_id_uuid
  HAVING count() > 1  -- ids seen once in the batch need no lookup: keeps the join small
) AS f ON p.event_id_uuid = f.id"""


def _file_reports(client: Client, names: list[str]) -> list[FileReport]:
    rows = client.query(
        f"SELECT bitShiftRight(pos, {FILE_SHIFT}) AS file_index, count(), "
        "countIf(outcome = 'loaded'), countIf(outcome = 'duplicate'), "
        f"countIf(outcome NOT IN {NOT_QUARANTINED}), countIf(outcome = 'conflicting_duplicate') "
        f"FROM {CLASSIFIED} GROUP BY file_index"
    ).result_rows
    counts = {int(r[0]): r[1:] for r in rows}
    return [
        FileReport(name, *(int(v) for v in counts.get(i, (0, 0, 0, 0, 0))))
        for i, name in enumerate(names)
    ]


def _now() -> datetime:
    return datetime.now(UTC)
