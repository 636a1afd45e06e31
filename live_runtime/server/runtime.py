"""The running parts of one runtime: ledger writer, outbox relay, rooms, tokens and metering.

One process serves one ledger (a lock beside it): two relays would write the same telemetry
files. Handlers reach the `Runtime` through `request.app.state.runtime`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from starlette.responses import JSONResponse, Response

from creator_econ.settings import RuntimeSettings
from live_runtime.ledger import books, earnings, sessions
from live_runtime.ledger.reader import LedgerReader
from live_runtime.ledger.schema import open_ledger
from live_runtime.ledger.writer import Idempotency, LedgerWriter, Operation, Outcome
from live_runtime.payments.sandbox import Sandbox, new_secret
from live_runtime.policy import Policy, load_policy
from live_runtime.relay import OutboxRelay
from live_runtime.server.auth import Authenticator
from live_runtime.server.rooms import Room, Rooms

log = logging.getLogger(__name__)


@dataclass
class RuntimeConfig:
    db: Path
    telemetry: Path
    source: str = "runtime"
    policy: Policy = field(default_factory=load_policy)
    group_commit: bool = True
    durable: bool = True
    max_file_age_seconds: float = 60.0
    webhook_secret: str = field(default_factory=new_secret, repr=False)  # the provider's
    signups_per_minute: int = RuntimeSettings.signups_per_minute
    failed_sign_ins_per_minute: int = RuntimeSettings.failed_sign_ins_per_minute


class Runtime:
    """The running parts: ledger writer, outbox relay, rooms and the metering clock."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.policy = config.policy
        self.rooms = Rooms()
        self._lock = _lock_ledger(Path(config.db))
        self.writer = LedgerWriter(  # first: it creates the schema the relay reads
            config.db,
            config.source,
            group_commit=config.group_commit,
            durable=config.durable,
            on_commit=lambda: self.relay.notify(),
        )
        self.relay = OutboxRelay(
            config.db,
            config.telemetry,
            config.source,
            max_file_age_seconds=config.max_file_age_seconds,
            mark=self._mark_relayed,
        )
        self.auth = Authenticator(
            open_ledger(config.db), config.signups_per_minute, config.failed_sign_ins_per_minute
        )
        self.payments = Sandbox(config.webhook_secret)
        self.reader = LedgerReader(config.db, config.source)

    def _mark_relayed(self, seqs: list[int]) -> None:
        def mark(tx) -> tuple[int, dict]:
            tx.conn.executemany("UPDATE outbox SET relayed = 1 WHERE seq = ?", [(s,) for s in seqs])
            return 200, {}

        self.writer.run_now(mark)

    async def run(self, operation: Operation, idempotency: Idempotency | None = None) -> Response:
        outcome = await self.writer.run(operation, idempotency)
        return self.respond(outcome)

    async def read(self, operation: Operation) -> Response:
        """A read-only operation, answered from its own connection beside the writer."""
        return self.respond(await self.reader.run(operation))

    def respond(self, outcome: Outcome) -> Response:
        for session_id, message in outcome.pushes:
            self.rooms.push(session_id, message)
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        return JSONResponse(outcome.body, outcome.status, headers=headers)

    def start(self) -> None:
        self.relay.start()
        self.writer.start()
        books_ready = self.writer.run_now(self._open_books)
        log.info("ledger ready: %s", books_ready.body)

    def _open_books(self, tx) -> tuple[int, dict]:
        books.open_platform_books(tx.conn, self.policy.currency)
        stale = sessions.live_sessions(tx)
        for session_id in stale:  # left live by a crash or a stop: their hosts are gone
            sessions.end_session(
                tx, self.policy, None, session_id, 0.0, reason="error", meter=False
            )
        return 200, {"sessions_ended_at_start": len(stale)}

    async def meter_forever(self) -> None:
        while True:
            await asyncio.sleep(self.policy.metering_interval_seconds)
            try:
                await self.meter_all()
                await self.writer.run(earnings.release_all)
            except Exception:  # the next report covers the interval since the last one
                log.exception("metering failed; the next interval catches up")

    async def meter_all(self) -> None:
        """One usage report per live session; submitted together, they share a commit."""
        await asyncio.gather(*(self._meter(room, sessions.meter_session) for room in self.rooms))

    def _meter(self, room: Room, operation, **more) -> Awaitable[Outcome]:
        return self.writer.run(
            partial(
                operation,
                policy=self.policy,
                session_id=room.session_id,
                viewer_seconds=room.take_viewer_seconds(),
                **more,
            )
        )

    async def stop(self) -> None:
        """Ends what is live (reason error: its hosts are cut off), then drains the relay."""
        rooms = list(self.rooms)
        await asyncio.gather(
            *(self._meter(r, sessions.end_session, creator_id=None, reason="error") for r in rooms)
        )
        for room in rooms:
            self.rooms.close(room.session_id)
        await asyncio.to_thread(self.relay.stop)  # drains through the writer, so before it
        self.writer.stop()
        self.reader.stop()


class LedgerInUse(ValueError):
    """Another runtime serves this ledger: two relays would write the same telemetry files."""


def _lock_ledger(db: Path) -> IO:
    """Holds an exclusive lock beside the ledger for as long as this process runs."""
    db.parent.mkdir(parents=True, exist_ok=True)
    handle = open(db.with_name(db.name + ".lock"), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise LedgerInUse(
            f"another runtime is serving the ledger {db}; stop it, or give this one its own "
            "--db and --telemetry"
        ) from exc
    return handle
