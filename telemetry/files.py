"""Telemetry files per docs/telemetry.md: append to `open/`, seal atomically into `sealed/`."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Self

SEQUENCE_DIGITS = 12
_SEALED_NAME = re.compile(r"^(?P<source>.+)-(?P<seq>\d{12})\.jsonl(?:\.gz)?$")


def sealed_file_name(source: str, sequence: int) -> str:
    return f"{source}-{sequence:0{SEQUENCE_DIGITS}d}.jsonl"


def parse_sealed_name(name: str) -> tuple[str, int] | None:
    """(source, sequence) of a sealed file name, or None for a file that is not one."""
    match = _SEALED_NAME.match(name)
    return (match["source"], int(match["seq"])) if match else None


def list_sealed(telemetry_dir: Path) -> list[Path]:
    """Sealed files in delivery order: by source, then sequence."""
    sealed = Path(telemetry_dir) / "sealed"
    if not sealed.is_dir():
        return []
    named = [(parse_sealed_name(p.name), p) for p in sealed.iterdir() if p.is_file()]
    return [p for key, p in sorted((k, p) for k, p in named if k is not None)]


class TelemetryWriter:
    """Appends JSON Lines for one source and seals a file when it reaches its size or age limit.

    A file is only ever visible to readers once it is complete: it is flushed, fsynced and
    renamed into `sealed/` in one atomic step.
    """

    def __init__(
        self,
        telemetry_dir: Path | str,
        source: str,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_seconds: float = 60.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*", source):
            raise ValueError(f"source {source!r} must be letters, digits, '_', '.' or '-'")
        self.root = Path(telemetry_dir)
        self.source = source
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        (self.root / "open").mkdir(parents=True, exist_ok=True)
        (self.root / "sealed").mkdir(parents=True, exist_ok=True)
        self._sequence = self._next_sequence()
        self._file = None
        self._written = 0
        self._opened_at = 0.0

    def _next_sequence(self) -> int:
        used = [
            key[1]
            for folder in ("open", "sealed")
            for p in (self.root / folder).iterdir()
            if (key := parse_sealed_name(p.name)) and key[0] == self.source
        ]
        return max(used, default=0) + 1

    @property
    def _open_path(self) -> Path:
        return self.root / "open" / sealed_file_name(self.source, self._sequence)

    def write(self, data: bytes) -> None:
        """Append whole `\\n`-terminated lines; seals first when the file is full or old."""
        if not data:
            return
        if not data.endswith(b"\n"):
            raise ValueError("telemetry data must be whole lines ending in \\n")
        if self._file is not None and (
            self._written + len(data) > self.max_bytes
            or time.monotonic() - self._opened_at > self.max_age_seconds
        ):
            self.seal()
        if self._file is None:
            self._file = open(self._open_path, "ab")
            self._written = 0
            self._opened_at = time.monotonic()
        self._file.write(data)
        self._written += len(data)

    def write_lines(self, lines: list[bytes]) -> None:
        """Append many lines, sealing at size boundaries without splitting a line."""
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > self.max_bytes:
                self.write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self.write(b"".join(chunk))

    def sync(self) -> None:
        """Makes what was written durable in the open file, without sealing it."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def seal_if_due(self) -> Path | None:
        """Seals the open file once it is older than the age limit, even with no new writes."""
        if self._file is not None and time.monotonic() - self._opened_at > self.max_age_seconds:
            return self.seal()
        return None

    def seal(self) -> Path | None:
        """Flush, fsync and atomically move the open file into `sealed/`."""
        if self._file is None:
            return None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        target = self.root / "sealed" / self._open_path.name
        os.replace(self._open_path, target)
        fsync_dir(target.parent)
        self._sequence += 1
        return target

    def close(self) -> None:
        self.seal()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new file in `path` durable: the directory entry is synced too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
