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
) -> IngestReport:
    """Load every new sealed file. `read_files_in_warehouse` lets an embedded warehouse read the
    files itself; a server gets their bytes sent over the connection. `deduplicate=False`
    loads every valid line, duplicates included: it exists only to measure what exactly-once
    costs, and must not be used on a real warehouse. `before_step` sees each step of each batch
    before it runs (tests use it to stop a batch at a chosen step)."""
    started = time.perf_counter()
    say = progress or (lambda line: None)
    ensure_warehouse_schema(client)
    create_staging_tables(client)
    roll_back_interrupted(client)
    report = IngestReport()
    files = pending_files(client, telemetry_dir)
    batches = _batches(files, batch_bytes)
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
        say(f"ingest: {done}/{len(files)} files, {report.summary().split(': ', 1)[1]}")
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
