"""One ingest batch as an explicit list of steps, in the order that makes a crash anywhere safe.

Each step before the last writes only the in-memory staging tables, or warehouse rows tagged
with the batch's file names (`_file`): for a file with a load attempt but no ingest log row,
`roll_back_interrupted` deletes those rows before the next load. The last step writes the
ingest log, and that row is the commit point. So a crash before it is rolled back and repeated,
and a crash after it leaves a loaded file that is never read again. Dirty-day notes are written
before the commit: a rolled-back batch leaves a few extra notes, which only cost a recompute.

`STEPS` is that order; tests stop a batch before each step in turn and check the rerun.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from ingest import batch_sql as sql
from ingest.dirty_days import note_dirty_days
from ingest.staging import stage_file, unreadable
from ingest.validate import parse_select_sql
from telemetry.events import EVENT_FIELDS
from warehouse.bookkeeping import INGEST_ATTEMPTS, INGEST_LOG, QUARANTINE
from warehouse.staging_tables import LINES, STAGING_TABLES, parsed_table


@dataclass(frozen=True)
class FileReport:
    file: str
    lines_read: int
    loaded: int
    duplicates: int
    quarantined: int
    conflicting: int


@dataclass
class Batch:
    """A batch of sealed files and what its steps learn along the way."""

    client: Client
    files: list[Path]
    read_in_warehouse: bool  # the embedded warehouse reads the files itself
    deduplicate: bool = True  # off only to measure what exactly-once costs
    unreadable: dict[int, str] = field(default_factory=dict)  # file index -> why
    touched_days: set[date] = field(default_factory=set)
    reports: list[FileReport] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.files]

    def command(self, statement: str) -> None:
        """A statement that names lines by file: the batch's file names are bound."""
        self.client.command(statement, parameters={"files": self.names})


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Batch], None]
    announce: bool = False  # a progress line before it


def _note_attempt(batch: Batch) -> None:
    truncate_staging(batch.client)
    now = datetime.now(UTC)
    batch.client.insert(
        INGEST_ATTEMPTS, [[name, now] for name in batch.names], column_names=sql.ATTEMPT_COLUMNS
    )


def _stage(batch: Batch) -> None:
    for index, path in enumerate(batch.files):
        if problem := unreadable(path):
            batch.unreadable[index] = problem
        else:
            stage_file(batch.client, index, path, batch.read_in_warehouse)


def _parse(batch: Batch) -> None:
    """Each line once, by the query of its type, into that type's typed columns."""
    for event_type in sql.PARSED_TYPES:
        columns, select = parse_select_sql(LINES, event_type)
        table = parsed_table(event_type)
        batch.client.command(f"INSERT INTO {table} ({', '.join(columns)}) {select}")
        batch.client.command(sql.verdicts_sql(event_type))


def _classify(batch: Batch) -> None:
    batch.client.command(sql.CLASSIFY if batch.deduplicate else sql.ACCEPT_ALL)
    batch.client.command(sql.MARK_LOADED)


def _find_touched_days(batch: Batch) -> None:
    batch.touched_days = {r[0] for r in batch.client.query(sql.TOUCHED_DAYS).result_rows}


def _write_raw_tables(batch: Batch) -> None:
    for event_type in EVENT_FIELDS:
        batch.command(sql.write_raw_sql(event_type))


def _write_event_index(batch: Batch) -> None:
    if batch.deduplicate:
        batch.command(sql.WRITE_INDEX)


def _write_aggregates(batch: Batch) -> None:
    for statement in sql.WRITE_AGGREGATES:
        batch.command(statement)


def _write_quarantine(batch: Batch) -> None:
    batch.command(sql.WRITE_QUARANTINE)
    batch.client.command(f"TRUNCATE TABLE {LINES}")  # the last read of the lines themselves
    if batch.unreadable:
        now = datetime.now(UTC)
        batch.client.insert(
            QUARANTINE,
            [
                [batch.names[i], 0, "unreadable_file", "", "", problem, now]
                for i, problem in batch.unreadable.items()
            ],
            column_names=sql.QUARANTINE_COLUMNS,
        )


def _count_lines(batch: Batch) -> None:
    counts = {int(r[0]): r[1:] for r in batch.client.query(sql.FILE_COUNTS).result_rows}
    batch.reports = [
        # An unreadable file is one quarantined line (its error).
        FileReport(name, 1, 0, 0, 1, 0)
        if i in batch.unreadable
        else FileReport(name, *(int(v) for v in counts.get(i, (0, 0, 0, 0, 0))))
        for i, name in enumerate(batch.names)
    ]


def _note_dirty_days(batch: Batch) -> None:
    note_dirty_days(batch.client, batch.touched_days)


def _write_ingest_log(batch: Batch) -> None:
    now = datetime.now(UTC)
    rows = [
        [r.file, r.lines_read, r.loaded, r.duplicates, r.quarantined, r.conflicting,
         p.stat().st_size, now]
        for r, p in zip(batch.reports, batch.files, strict=True)
    ]  # fmt: skip
    batch.client.insert(INGEST_LOG, rows, column_names=sql.INGEST_LOG_COLUMNS)
    truncate_staging(batch.client)


STEPS: tuple[Step, ...] = (
    Step("note the load attempt", _note_attempt),
    Step("stage the files", _stage, announce=True),
    Step("parse each line into its type's columns", _parse, announce=True),
    Step("classify each line", _classify),
    Step("write the quarantine", _write_quarantine),
    Step("find the days the new events touch", _find_touched_days),
    Step("write the raw tables", _write_raw_tables, announce=True),
    Step("write the event index", _write_event_index),
    Step("write the day and session aggregates", _write_aggregates),
    Step("count lines per file", _count_lines),
    Step("note dirty days", _note_dirty_days),
    Step("write the ingest log", _write_ingest_log, announce=True),  # the commit point
)


def load_batch(batch: Batch, before: Callable[[Step], None] = lambda step: None) -> None:
    """Runs the steps in order; `before` sees each step first (progress, or a test's crash)."""
    for step in STEPS:
        before(step)
        step.run(batch)


def truncate_staging(client: Client) -> None:
    for table in STAGING_TABLES:
        client.command(f"TRUNCATE TABLE {table}")


def roll_back_interrupted(client: Client) -> list[str]:
    """Deletes every row of a load that started but never reached the ingest log; returns the
    files rolled back."""
    files = [r[0] for r in client.query(sql.INTERRUPTED_FILES).result_rows]
    if files:
        for table in sql.ROLLED_BACK_TABLES:
            client.command(sql.delete_files_sql(table), parameters={"files": files})
    return files
