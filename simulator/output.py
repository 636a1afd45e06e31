"""Writing event lines in time order into sealed telemetry files, with redeliveries."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from simulator.lines import SLICE_ROWS, TIE_ORDER
from telemetry.files import TelemetryWriter

_LINES_SCHEMA = {"t": pl.Int64, "tie": pl.Int8, "line": pl.String}
_MAX_BYTES_IN_FLIGHT = 256 * 1024 * 1024


class EventSink:
    """Writes lines (`t`, `tie`, `line`) in order of time, then tie order, across files.

    Lines arrive a day at a time, and a day's lines include events that happen later (a
    session running past midnight, a refund days after its order); those wait until every
    earlier event has been written. Files are cut only at line boundaries and only by size,
    so the same lines always give the same files.

    Delivery is at-least-once: a sampled share of lines is delivered again, byte-identical,
    at the start of the next file. Redeliveries from the last file go into one more file, or
    to the end of the file when the whole run fits in one.

    Files are written and sealed (fsynced) by a background thread, in the order decided
    here, so disk waits overlap with building the next day's lines.
    """

    def __init__(
        self,
        out_dir: Path,
        source: str,
        max_file_bytes: int,
        duplicate_rate: float,
        rng: np.random.Generator,
    ) -> None:
        self._writer = TelemetryWriter(
            out_dir, source, max_bytes=max_file_bytes, max_age_seconds=math.inf
        )
        self._max_file_bytes = max_file_bytes
        self._duplicate_rate = duplicate_rate
        self._rng = rng
        self._waiting = pl.DataFrame(schema=_LINES_SCHEMA)
        self._again: list[tuple[bytes, int]] = []  # (line, tie) to redeliver after this file
        self._file_bytes = 0
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telemetry-writer")
        self._in_flight: deque[tuple[Future, int]] = deque()
        self.files = 0
        self.events = 0
        self.bytes = 0
        self.duplicates = 0
        self.by_tie = np.zeros(len(TIE_ORDER), dtype=np.int64)

    @property
    def by_type(self) -> dict[str, int]:
        return {kind: int(n) for kind, n in zip(TIE_ORDER, self.by_tie, strict=True) if n}

    def push(self, batches: list[pl.DataFrame], until_us: int) -> None:
        """Adds lines, then writes every waiting line of an event before `until_us`.

        The caller promises that no later batch holds an event before `until_us`.
        """
        merged = pl.concat([self._waiting, *batches]).sort(["t", "tie"], maintain_order=True)
        ready = merged["t"].search_sorted(until_us, side="left")
        self._waiting = merged.slice(ready)
        self._write_fresh(merged.head(ready))

    def close(self) -> None:
        """Writes what is still waiting and the last redeliveries, and seals the last file."""
        self.push([], np.iinfo(np.int64).max)
        if self._again and self.files > 0:
            self._next_file()
        self._redeliver()
        self._seal()
        self._drain(0)
        self._disk.shutdown()

    def __enter__(self) -> EventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        """Lets queued writes finish; a run that failed leaves its last file unsealed in open/."""
        self._disk.shutdown(wait=True)

    def _write_fresh(self, lines: pl.DataFrame) -> None:
        """Writes lines in slices, sampling the ones to deliver again."""
        for part in lines.iter_slices(SLICE_ROWS):
            array = part["line"].to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string
            start = array.offset
            offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
            ties = part["tie"].to_numpy()
            again = self._rng.random(len(ties)) < self._duplicate_rate
            self.by_tie += np.bincount(ties, minlength=len(TIE_ORDER))
            data = memoryview(array.buffers()[2])
            self._write(data, offsets[start : start + len(array) + 1], ties, again)

    def _write(
        self,
        data: memoryview,
        offsets: np.ndarray,
        ties: np.ndarray,
        again: np.ndarray | None,
    ) -> None:
        """Writes lines `data[offsets[i]:offsets[i + 1]]`, starting a new file when one is full."""
        position, count = 0, len(offsets) - 1
        while position < count:
            room = self._max_file_bytes - self._file_bytes
            end = int(np.searchsorted(offsets, offsets[position] + room, side="right")) - 1
            if end <= position:
                if self._file_bytes:
                    self._next_file()
                    continue
                end = position + 1  # a line longer than a whole file gets a file of its own
            lo, hi = int(offsets[position]), int(offsets[end])
            self._submit(self._writer.write, bytes(data[lo:hi]))
            self._file_bytes += hi - lo
            self.bytes += hi - lo
            self.events += end - position
            if again is not None:
                for i in position + np.flatnonzero(again[position:end]):
                    self._again.append((bytes(data[offsets[i] : offsets[i + 1]]), int(ties[i])))
            position = end

    def _next_file(self) -> None:
        """Seals the current file and opens the next with the redeliveries of the sealed one."""
        self._seal()
        self._redeliver()

    def _redeliver(self) -> None:
        again, self._again = self._again, []
        if not again:
            return
        lines = [line for line, _ in again]
        ties = np.array([tie for _, tie in again], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([len(line) for line in lines])])
        self.duplicates += len(lines)
        self.by_tie += np.bincount(ties, minlength=len(TIE_ORDER))
        self._write(memoryview(b"".join(lines)), offsets, ties, None)

    def _seal(self) -> None:
        if self._file_bytes:
            self._submit(self._writer.seal)
            self.files += 1
        self._file_bytes = 0

    def _submit(self, task: Callable[..., object], *args: bytes) -> None:
        size = sum(len(a) for a in args)
        self._in_flight.append((self._disk.submit(task, *args), size))
        self._drain(_MAX_BYTES_IN_FLIGHT)

    def _drain(self, max_bytes: int) -> None:
        """Waits for queued disk work until at most `max_bytes` are queued; raises its errors."""
        queued = sum(size for _, size in self._in_flight)
        while self._in_flight and (queued > max_bytes or self._in_flight[0][0].done()):
            future, size = self._in_flight.popleft()
            future.result()
            queued -= size
