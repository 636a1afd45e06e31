"""Tools for crash tests of `creator-econ run`: kill it at a chosen point, read what it left.

The CLI runs as a real subprocess in its own process group, so SIGKILL takes it down whole, as
a power cut or an OOM kill would. What a killed run leaves is judged from the outside only: the
warehouse through a separate probe process (chDB holds one data path per process) and the
published marts as files. Expectations come straight from the telemetry files with `json`.

Run as a script, this module is the probe: `python crash_harness.py chdb:///path` prints one
JSON line of warehouse facts.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PROJECT = Path(__file__).resolve().parent.parent

# Money columns checked against the files: name -> (event type, column).
MONEY = {
    "gift_value": ("gift_sent", "value_minor"),
    "gift_fee": ("gift_sent", "platform_fee_minor"),
    "order_gross": ("order_paid", "gross_minor"),
    "coins_amount": ("coins_purchased", "amount_minor"),
    "refunds": ("order_refunded", "refund_minor"),
    "payouts": ("payout_issued", "amount_minor"),
}
PROBE_MARK = "PROBE "


# --- running and killing the CLI -------------------------------------------------------------


FOLDER_CHANGED = "<watched folder changed>"  # a kill point seen on disk, not in the output


@dataclass(frozen=True)
class KillPlan:
    """SIGKILL the run `delay` seconds after the first output line matching `after`, after the
    first change in the watched folder when `after` is FOLDER_CHANGED, or after the start when
    `after` is None."""

    kind: str
    after: str | None
    delay: float

    def describe(self) -> str:
        start = "start" if self.after is None else self.after
        return f"{self.kind}: {self.delay:.3f}s after {start}"


@dataclass
class RunRecord:
    """What a run printed (with arrival times), how it ended, and whether we killed it."""

    returncode: int
    killed: bool
    seconds: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    folder_changed: float | None = None  # when the watched folder first changed

    def first(self, pattern: str) -> float | None:
        """Arrival time of the first line matching `pattern` (or of the folder change)."""
        if pattern == FOLDER_CHANGED:
            return self.folder_changed
        regex = re.compile(pattern, re.IGNORECASE)
        return next((t for t, text in self.lines if regex.search(text)), None)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern, re.IGNORECASE)
        return [text for _, text in self.lines if regex.search(text)]

    def last_lines(self, n: int = 5) -> str:
        return "\n".join(f"  {t:6.2f}s {text[-160:]}" for t, text in self.lines[-n:])


class _Run:
    """One CLI process with a thread reading its output and one watching a folder."""

    def __init__(self, args: list[str], plan: KillPlan | None, watch: Path | None) -> None:
        self.plan = plan
        self.armed = threading.Event()
        self.ended = threading.Event()
        self.lock = threading.Lock()
        self.record = RunRecord(returncode=0, killed=False, seconds=0.0)
        self.started = time.monotonic()
        before = _folder_state(watch) if watch else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "creator_econ.cli", *args],
            cwd=PROJECT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: SIGKILL reaches every process
        )
        self.threads = [threading.Thread(target=self._read, daemon=True)]
        if watch is not None:
            self.threads.append(
                threading.Thread(target=self._watch, args=(watch, before), daemon=True)
            )
        for thread in self.threads:
            thread.start()

    def _now(self) -> float:
        return time.monotonic() - self.started

    def _read(self) -> None:
        after = self.plan.after if self.plan else None
        regex = re.compile(after, re.IGNORECASE) if after not in (None, FOLDER_CHANGED) else None
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self.record.lines.append((self._now(), text.rstrip("\n")))
            if regex is not None and regex.search(text):
                self._arm()
        self.ended.set()
        self.armed.set()  # the run ended before the kill point: nothing left to wait for

    def _watch(self, folder: Path, before: dict) -> None:
        while not self.ended.is_set():
            if _folder_state(folder) != before:
                self.record.folder_changed = self._now()
                if self.plan and self.plan.after == FOLDER_CHANGED:
                    self._arm()
                return
            time.sleep(0.002)

    def _arm(self) -> None:
        """The kill point is reached: with no delay, kill right here rather than after a
        thread switch, so the kill lands as close to the point as the OS allows."""
        if self.plan is not None and self.plan.delay == 0:
            self._kill()
        self.armed.set()

    def _kill(self) -> None:
        with self.lock:
            if not self.record.killed and self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.record.killed = True

    def kill_as_planned(self, timeout: float) -> None:
        plan = self.plan
        if plan is None:
            return
        if plan.after is None:
            self.ended.wait(plan.delay)
        elif self.armed.wait(timeout) and plan.delay:
            time.sleep(plan.delay)
        self._kill()

    def finish(self, timeout: float) -> RunRecord:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        self.record.seconds = self._now()
        for thread in self.threads:
            thread.join(10)
        self.record.returncode = self.proc.returncode
        return self.record


def run_cli(
    args: list[str],
    plan: KillPlan | None = None,
    watch: Path | None = None,
    timeout: float = 300,
) -> RunRecord:
    """Runs `creator-econ ARGS` in a new process group, SIGKILLed as `plan` says; `watch`
    names a folder whose first change is recorded (and can be the kill point)."""
    run = _Run(args, plan, watch)
    run.kill_as_planned(timeout)
    return run.finish(timeout)


def _folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under `folder`, to notice the first write into it."""
    state = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            try:
                stat = os.stat(os.path.join(directory, name))
            except FileNotFoundError:  # replaced between listing and stat
                continue
            state[os.path.join(directory, name)] = (stat.st_size, stat.st_mtime_ns)
    return state


# --- the published marts ---------------------------------------------------------------------


def published_marts(marts_dir: Path) -> dict[str, bytes]:
    """Bytes of every published mart: top-level `*.parquet`, dot-files (temporaries) aside.
    Any other top-level file is an error: a reader could mistake it for a mart."""
    files = [p for p in Path(marts_dir).iterdir() if p.is_file() and not p.name.startswith(".")]
    strays = [p.name for p in files if not p.name.endswith(".parquet")]
    assert not strays, f"files in {marts_dir} that are neither marts nor dot-files: {strays}"
    return {p.name: p.read_bytes() for p in sorted(files)}


def read_mart(data: bytes) -> pa.Table:
    """The table in a mart's bytes; raises when the file is not a complete Parquet file."""
    return pq.read_table(io.BytesIO(data))


# --- expectations from the files -------------------------------------------------------------


@dataclass
class FileCounts:
    lines: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass
class Expected:
    """What exactly-once ingest of the files must give, computed line by line with `json`."""

    files: dict[str, FileCounts]
    by_type: Counter[str]
    money: dict[str, int]

    @property
    def events(self) -> int:
        return sum(self.by_type.values())


def expected_from_files(sealed: Path, invalid: set[tuple[str, int]]) -> Expected:
    """Files in delivery order (one source, so by name); `invalid` names the (file, line) pairs
    a validator must reject. The first valid line of an event_id is loaded, a byte-identical
    later one is a duplicate, a different later one is a conflicting duplicate (quarantined)."""
    first: dict[str, str] = {}
    files: dict[str, FileCounts] = {}
    by_type: Counter[str] = Counter()
    money = dict.fromkeys(MONEY, 0)
    for path in sorted(Path(sealed).glob("*.jsonl")):
        counts = files.setdefault(path.name, FileCounts())
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            counts.lines += 1
            if (path.name, number) in invalid:
                counts.quarantined += 1
                continue
            event = json.loads(text)
            known = first.get(event["event_id"])
            if known is None:
                first[event["event_id"]] = text
                counts.loaded += 1
                by_type[event["event_type"]] += 1
                for name, (event_type, column) in MONEY.items():
                    if event["event_type"] == event_type:
                        money[name] += event[column]
            elif known == text:
                counts.duplicates += 1
            else:
                counts.quarantined += 1
    return Expected(files, by_type, money)


# --- the warehouse probe ---------------------------------------------------------------------


def probe(dsn: str) -> dict[str, Any]:
    """Warehouse facts read by a separate process, so this one never holds a chDB path."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), dsn],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    marked = [line for line in done.stdout.splitlines() if line.startswith(PROBE_MARK)]
    if done.returncode != 0 or not marked:
        raise AssertionError(f"warehouse probe failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(marked[-1].removeprefix(PROBE_MARK))


def _probe_here(dsn: str) -> dict[str, Any]:
    from warehouse.connection import connect

    client = connect(dsn)
    try:
        return _facts(client)
    finally:
        client.close()


def _facts(client: Any) -> dict[str, Any]:
    def one(sql: str) -> list[int]:
        return [int(v or 0) for v in client.query(sql).result_rows[0]]

    tables = [
        r[0]
        for r in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() "
            "AND startsWith(name, 'raw_') ORDER BY name"
        ).result_rows
    ]
    rows = " UNION ALL ".join(f"SELECT event_id, _file FROM {t}" for t in tables)
    committed = "SELECT _file FROM ingest_log"
    log = client.query(
        "SELECT _file, lines_read, loaded, duplicates, quarantined FROM ingest_log ORDER BY _file"
    ).result_rows
    return {
        "tables": {t: one(f"SELECT count(), uniqExact(event_id) FROM {t}") for t in tables},
        "total": one(f"SELECT count(), uniqExact(event_id) FROM ({rows})"),
        # Rows of files the ingest log does not list: a load that never committed.
        "uncommitted_rows": one(f"SELECT count() FROM ({rows}) WHERE _file NOT IN ({committed})")[
            0
        ],
        "money": {
            name: one(f"SELECT sum({column}) FROM raw_{event_type}")[0]
            for name, (event_type, column) in MONEY.items()
        },
        "ingest_log": [[str(r[0]), *(int(v) for v in r[1:])] for r in log],
    }


if __name__ == "__main__":
    print(PROBE_MARK + json.dumps(_probe_here(sys.argv[1])), flush=True)
