"""The memory budget of a run, split between the process and its engines.

A run is one Python process holding the embedded ClickHouse engine, DuckDB and the libraries
of the pipeline. The budget (`--memory-gb`, 2 GiB by default) pays first for the process
itself (the libraries loaded and the small tables it keeps), then for ClickHouse:

- an ingest batch stages at most a quarter of the engine's share (its lines, their typed
  columns and verdicts took up to about four times the bytes of its files at 10M events);
- every query is held to three quarters of it (`max_memory_usage`): one past it fails with a
  memory error, which the run reports in one line instead of the machine killing the process;
- grouping, sorting and joins spill to disk past half a query's share, at fixed sizes (not as
  a share of the server's memory, which with the engine in-process is the machine's);
- the engine's caches of marks and primary keys are small.

A server-wide limit (`max_server_memory_usage`) is not set: measured here it slowed every
query of an ingest by about 45%, and the limits above already bound what a run holds.
DuckDB, which only models small aggregates, gets a fixed slice.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2
PROCESS_BYTES = 768 * MIB  # the interpreter, Dagster, Great Expectations, DuckDB, Arrow, chDB
DUCKDB_BYTES = 256 * MIB
SMALLEST_ENGINE = 512 * MIB
CACHE_BYTES = 32 * MIB  # each of the engine's caches of marks and primary keys


class MemoryBudgetError(ValueError):
    """The budget cannot hold the run as configured; the message says what to change."""


@dataclass(frozen=True)
class MemoryBudget:
    total_bytes: int

    @classmethod
    def of_gib(cls, gib: float) -> MemoryBudget:
        budget = cls(int(gib * GIB))
        smallest = (PROCESS_BYTES + DUCKDB_BYTES + SMALLEST_ENGINE) / GIB
        if budget.engine_bytes < SMALLEST_ENGINE:
            raise MemoryBudgetError(
                f"a memory budget of {gib:g} GiB leaves the warehouse engine too little: give "
                f"at least {smallest:.2f} GiB (--memory-gb)"
            )
        return budget

    @property
    def engine_bytes(self) -> int:
        """What ClickHouse may hold at once: its queries, a staged batch and its caches."""
        return self.total_bytes - PROCESS_BYTES - DUCKDB_BYTES

    @property
    def query_bytes(self) -> int:
        return self.engine_bytes * 3 // 4

    @property
    def largest_batch_bytes(self) -> int:
        """Telemetry one ingest batch may stage: its lines, their typed columns and verdicts
        take up to about four times the bytes of the files (measured: peak RSS 2.07 GiB with
        a third of the engine's share per batch, under the default 2 GiB budget)."""
        return self.engine_bytes // 4

    def chdb_options(self) -> dict[str, int]:
        """Server settings of the embedded engine, fixed when it starts."""
        return {
            "mark_cache_size": CACHE_BYTES,
            "index_mark_cache_size": CACHE_BYTES,
            "primary_index_cache_size": CACHE_BYTES,
            "uncompressed_cache_size": 0,
        }

    def query_settings(self) -> dict[str, int]:
        """Per-query limits, for an embedded engine or a server alike."""
        spill = self.query_bytes // 2
        return {
            "max_memory_usage": self.query_bytes,
            "max_bytes_before_external_group_by": spill,
            "max_bytes_before_external_sort": spill,
            "max_bytes_before_external_join": spill,
            "max_bytes_ratio_before_external_group_by": 0,
            "max_bytes_ratio_before_external_sort": 0,
            "max_bytes_ratio_before_external_join": 0,
        }


def out_of_memory(message: str) -> bool:
    """Whether an engine error is a memory limit reached."""
    return "MEMORY_LIMIT_EXCEEDED" in message or "Out of Memory Error" in message
