"""Loading sealed telemetry files into the warehouse exactly once (docs/ingest.md).

New files are taken in delivery order and loaded in batches of about `batch_bytes`, each batch
by the ordered steps of `ingest.batch`. A load that a crash interrupted is rolled back first, so
a crash at any point followed by a rerun neither loses nor doubles an event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from clickhouse_connect.driver.client import Client

from creator_econ.settings import DEFAULTS
from ingest.batch import Batch, FileReport, Step, load_batch, roll_back_interrupted
from ingest.batch_sql import LOADED_FILES
from telemetry.files import list_sealed
from warehouse.registry import create_staging_tables, ensure_warehouse_schema


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


@dataclass(frozen=True)
class Progress:
    """How far an ingest is, after each batch: for a bar with a rate and the time left."""

    files_done: int
    files: int
    bytes_done: int
    bytes: int
    report: IngestReport
    seconds: float

    def describe(self) -> str:
        loaded = self.report.total("loaded")
        rate = self.report.lines_read / self.seconds if self.seconds else 0.0
        return (
            f"{self.files_done:,}/{self.files:,} files, {loaded:,} events loaded "
            f"({rate:,.0f} lines/s)"
        )


def pending_files(client: Client, telemetry_dir: Path) -> list[Path]:
    """Sealed files not yet committed to the ingest log, in delivery order."""
    done = {r[0] for r in client.query(LOADED_FILES).result_rows}
    return [p for p in list_sealed(telemetry_dir) if p.name not in done]


def ingest(
    client: Client,
    telemetry_dir: Path,
    *,
    read_files_in_warehouse: bool,
    batch_bytes: int = DEFAULTS.batch_bytes,
    progress: Callable[[str], None] | None = None,
    deduplicate: bool = True,
    before_step: Callable[[Step], None] | None = None,
    on_batch: Callable[[Progress], None] | None = None,
) -> IngestReport:
    """Load every new sealed file. `read_files_in_warehouse` lets an embedded warehouse read the
    files itself; a server gets their bytes sent over the connection. `deduplicate=False`
    loads every valid line, duplicates included: it exists only to measure what exactly-once
    costs, and must not be used on a real warehouse. `before_step` sees each step of each batch
    before it runs (tests use it to stop a batch at a chosen step); `on_batch` hears how far
    the ingest is after each batch."""
    started = time.perf_counter()
    say = progress or (lambda line: None)
    ensure_warehouse_schema(client)
    create_staging_tables(client)
    roll_back_interrupted(client)
    report = IngestReport()
    files = pending_files(client, telemetry_dir)
    batches = _batches(files, batch_bytes)
    total_bytes = sum(p.stat().st_size for p in files)
    done_bytes = 0
    if on_batch is not None:
        on_batch(Progress(0, len(files), 0, total_bytes, report, 0.0))
    for number, paths in enumerate(batches, 1):
        prefix = f"ingest: batch {number}/{len(batches)}"

        def before(step: Step, prefix: str = prefix) -> None:
            if step.announce:
                say(f"{prefix}: {step.name}")
            if before_step is not None:
                before_step(step)

        batch = Batch(client, paths, read_files_in_warehouse, deduplicate)
        load_batch(batch, before)
        report.files += batch.reports
        report.touched_days |= batch.touched_days
        done = sum(len(b) for b in batches[:number])
        done_bytes += sum(p.stat().st_size for p in paths)
        say(f"ingest: {done}/{len(files)} files, {report.summary().split(': ', 1)[1]}")
        if on_batch is not None:
            elapsed = time.perf_counter() - started
            on_batch(Progress(done, len(files), done_bytes, total_bytes, report, elapsed))
    report.seconds = time.perf_counter() - started
    return report


def _batches(files: list[Path], batch_bytes: int) -> list[list[Path]]:
    """Consecutive files of about `batch_bytes` in all; a larger file is a batch of its own."""
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
