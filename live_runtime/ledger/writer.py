"""The single ledger writer: runs operations in order, committing many in one fsync.

SQLite admits one writer at a time, and a durable commit costs an fsync. Request handlers
hand their operation to this thread; it takes every operation waiting in the queue, runs each
inside its own savepoint of one transaction, and commits them together (group commit). A
refused operation rolls back only its savepoint. Nobody hears "done" before the commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from live_runtime.ledger.books import Refused, Tx
from live_runtime.ledger.schema import create_ledger_schema, open_ledger

log = logging.getLogger(__name__)

Operation = Callable[[Tx], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class Idempotency:
    """Who asked, their key, and a hash of what they asked (route and body)."""

    principal_id: str
    key: str
    request_hash: str


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    pushes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    replayed: bool = False


@dataclass
class _Job:
    operation: Operation
    idempotency: Idempotency | None
    future: Future


class LedgerWriter:
    """Owns the database's only writing connection, on a thread of its own."""

    def __init__(
        self,
        db_path: Path | str,
        source: str,
        group_commit: bool = True,
        max_batch: int = 512,
        durable: bool = True,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.source = source
        self.max_batch = max_batch if group_commit else 1
        self.on_commit = on_commit
        self.conn = open_ledger(db_path, durable=durable)
        # Commits never stop to checkpoint the WAL: the relay does it, on its own connection.
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        create_ledger_schema(self.conn)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="ledger-writer", daemon=True)
        self.commits = 0
        self.operations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.conn.close()

    def submit(self, operation: Operation, idempotency: Idempotency | None = None) -> Future:
        future: Future = Future()
        self._queue.put(_Job(operation, idempotency, future))
        return future

    async def run(self, operation: Operation, idempotency: Idempotency | None = None) -> Outcome:
        return await asyncio.wrap_future(self.submit(operation, idempotency))

    def run_now(self, operation: Operation) -> Outcome:
        """Blocking form, for startup work and tools outside the event loop."""
        return self.submit(operation).result()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        outcomes: list[Outcome | BaseException] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                outcomes.append(self._run_one(job))
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:  # the commit itself failed: nothing of the batch holds
            log.exception("ledger commit failed")
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            outcomes = [exc] * len(batch)
        else:
            self.commits += 1
            self.operations += len(batch)
            self.on_commit()
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _run_one(self, job: _Job) -> Outcome | BaseException:
        """One operation in one savepoint: a refusal or a bug undoes only this operation."""
        key = job.idempotency
        if key is not None and (first := self._first_response(key)) is not None:
            return first
        tx = Tx(self.conn, self.source)
        self.conn.execute("SAVEPOINT op")
        try:
            try:
                status, body = job.operation(tx)
                outcome = Outcome(status, body, tx.pushes)
            except Refused as refused:
                self.conn.execute("ROLLBACK TO op")
                if refused.event is not None:
                    event_type, fields = refused.event
                    Tx(self.conn, self.source, tx.now).emit(event_type, **fields)
                outcome = Outcome(refused.status, refused.body)
            if key is not None:
                self.conn.execute(
                    "INSERT INTO idempotency (principal_id, idempotency_key, request_hash, "
                    "status, response) VALUES (?, ?, ?, ?, ?)",
                    (key.principal_id, key.key, key.request_hash, outcome.status,
                     json.dumps(outcome.body, separators=(",", ":"))),
                )  # fmt: skip
        except Exception as exc:  # a bug in an operation must not take the batch down
            self.conn.execute("ROLLBACK TO op")
            self.conn.execute("RELEASE op")
            log.exception("ledger operation failed")
            return exc
        self.conn.execute("RELEASE op")
        return outcome

    def _first_response(self, key: Idempotency) -> Outcome | None:
        """The stored answer to a retried key, or a refusal if the key meant another request."""
        first = self.conn.execute(
            "SELECT request_hash, status, response FROM idempotency "
            "WHERE principal_id = ? AND idempotency_key = ?",
            (key.principal_id, key.key),
        ).fetchone()
        if first is None:
            return None
        if first[0] != key.request_hash:
            message = "this idempotency key was used for a different request"
            return Outcome(422, {"error": "idempotency_key_reused", "message": message})
        return Outcome(first[1], json.loads(first[2]), replayed=True)
