"""Reads beside the writer: each on a read-only connection of its own, in a small thread pool.

SQLite in WAL mode lets readers see the last commit while the writer works, so a read never
queues behind the writer's batches (and a burst of reads never delays a gift). Each read runs
in one read transaction: a consistent snapshot across its queries.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from live_runtime.ledger.books import Refused, Tx
from live_runtime.ledger.writer import Operation, Outcome

READ_THREADS = 4


class LedgerReader:
    def __init__(self, db_path: Path | str, source: str, threads: int = READ_THREADS) -> None:
        self._uri = f"file:{Path(db_path).resolve()}?mode=ro"
        self._source = source
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ledger-reader")

    async def run(self, operation: Operation) -> Outcome:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read, operation)

    def _read(self, operation: Operation) -> Outcome:
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            status, body = operation(Tx(conn, self._source))
            return Outcome(status, body)
        except Refused as refused:
            return Outcome(refused.status, refused.body)
        finally:
            conn.execute("ROLLBACK")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, timeout=30)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
        return conn

    def stop(self) -> None:
        self._pool.shutdown(wait=True)
