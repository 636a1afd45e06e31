"""Reads every telemetry line a runtime left on disk, refusing torn or malformed lines.

Crash tests need the raw lines (to compare with the outbox byte for byte) and where each came
from (to tell a sealed file from one left in `open/`), so this reads files directly rather
than through ingest, which would quarantine a bad line instead of failing.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDERS = ("sealed", "open")


@dataclass(frozen=True)
class TelemetryLine:
    """One event line: the file it is in, its 1-based line number, its text and parsed event."""

    path: Path
    number: int
    text: str
    event: dict[str, Any]


class TornTelemetry(AssertionError):
    """A file whose last line has no newline, or a line that is not one JSON object."""


def telemetry_files(telemetry_dir: Path, folders: tuple[str, ...] = FOLDERS) -> list[Path]:
    """Every `.jsonl` or `.jsonl.gz` file in the given folders, by folder then name."""
    found: list[Path] = []
    for folder in folders:
        directory = Path(telemetry_dir) / folder
        if directory.is_dir():
            found += sorted(p for p in directory.iterdir() if p.name.endswith((".jsonl", ".gz")))
    return found


def file_lines(path: Path) -> list[TelemetryLine]:
    """The lines of one file; raises `TornTelemetry` on a torn or malformed line."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raise TornTelemetry(f"{path}: the last line is torn (no trailing newline)")
    lines = []
    for number, text in enumerate(raw.decode().splitlines(), start=1):
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TornTelemetry(f"{path}:{number}: not JSON: {text[:80]!r}") from exc
        if not isinstance(event, dict) or "event_id" not in event:
            raise TornTelemetry(f"{path}:{number}: not an event: {text[:80]!r}")
        lines.append(TelemetryLine(path, number, text, event))
    return lines


def read_lines(telemetry_dir: Path, folders: tuple[str, ...] = FOLDERS) -> list[TelemetryLine]:
    """Every line of every file in `folders` (sealed/ and open/ by default), in file order."""
    return [line for path in telemetry_files(telemetry_dir, folders) for line in file_lines(path)]


def read_events(telemetry_dir: Path, folders: tuple[str, ...] = FOLDERS) -> list[dict[str, Any]]:
    """Every event in `folders`, duplicates included, in file order."""
    return [line.event for line in read_lines(telemetry_dir, folders)]
