"""The outbox relay: moves committed telemetry events from the ledger into telemetry files.

Exactly once, across crashes: lines are appended to the open file and fsynced before their
outbox rows are marked relayed. After a crash, `recover` finds what an open file already
holds, marks those rows relayed and seals the file, so a row is never written twice and an
unmarked row is written again. Only committed rows are ever visible to the relay.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from live_runtime.ledger.schema import open_ledger
from telemetry.files import TelemetryWriter, fsync_dir, parse_sealed_name

log = logging.getLogger(__name__)

BATCH_ROWS = 5_000
CHECKPOINT_SECONDS = 1.0


def recover(conn: sqlite3.Connection, telemetry_dir: Path, source: str) -> int:
    """Seals what a crashed relay left in `open/`; returns the events found there."""
    open_dir = Path(telemetry_dir) / "open"
    if not open_dir.is_dir():
        return 0
    found = 0
    for path in sorted(open_dir.iterdir()):
        key = parse_sealed_name(path.name)
        if key is None or key[0] != source:
            continue
        data = path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]  # drop a torn last line: it was never marked
        ids = [(json.loads(line)["event_id"],) for line in whole.splitlines()]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("UPDATE outbox SET relayed = 1 WHERE event_id = ?", ids)
        conn.execute("COMMIT")
        if not whole:
            path.unlink()
            continue
        with open(path, "r+b") as f:
            f.truncate(len(whole))
            os.fsync(f.fileno())
        target = path.parent.parent / "sealed" / path.name
        os.replace(path, target)
        fsync_dir(target.parent)
        found += len(ids)
    return found


class OutboxRelay:
    """A thread that relays unsent outbox rows whenever the writer commits, or every poll."""

    def __init__(
        self,
        db_path: Path | str,
        telemetry_dir: Path | str,
        source: str,
        max_file_bytes: int = 64 * 1024 * 1024,
        max_file_age_seconds: float = 60.0,
        poll_seconds: float = 0.5,
        mark: Callable[[list[int]], None] | None = None,
    ) -> None:
        """`mark` records rows as relayed; by default on the relay's own connection. A busy
        ledger writer starves a second writing connection, so the runtime passes one that
        queues the marking to its writer instead."""
        self.conn = open_ledger(db_path)
        self.telemetry_dir = Path(telemetry_dir)
        self.source = source
        self.recovered = recover(self.conn, self.telemetry_dir, source)
        self.files = TelemetryWriter(
            self.telemetry_dir, source, max_file_bytes, max_age_seconds=max_file_age_seconds
        )
        self.poll_seconds = poll_seconds
        self.mark = mark or self._mark_here
        self.relayed = 0
        self._checkpointed_at = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Relays everything committed so far and seals the open file."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self.files.seal()
        self.conn.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                while self.relay_once():
                    pass
                self.files.seal_if_due()
                self._checkpoint()
            except Exception:  # keep relaying: rows stay unsent and are retried
                log.exception("outbox relay failed; retrying")
                self._stopping.wait(1.0)
        while self.relay_once():
            pass

    def _mark_here(self, seqs: list[int]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("UPDATE outbox SET relayed = 1 WHERE seq = ?", [(s,) for s in seqs])
        self.conn.execute("COMMIT")

    def _checkpoint(self) -> None:
        """Copies the WAL into the database without blocking the writer (it never does)."""
        now = time.monotonic()
        if now - self._checkpointed_at >= CHECKPOINT_SECONDS:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._checkpointed_at = now

    def relay_once(self) -> int:
        rows = self.conn.execute(
            "SELECT seq, line FROM outbox WHERE relayed = 0 ORDER BY seq LIMIT ?", (BATCH_ROWS,)
        ).fetchall()
        if not rows:
            return 0
        # One write: the writer may seal before it (every earlier row is marked), never within.
        self.files.write("".join(line + "\n" for _, line in rows).encode())
        self.files.sync()
        self.mark([seq for seq, _ in rows])
        self.relayed += len(rows)
        return len(rows)
