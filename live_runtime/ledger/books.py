"""The chart of accounts, and the transaction context every money operation writes through.

A movement is a set of postings that sum to zero per unit (coins or the currency); an event
for the telemetry outbox is written in the same database transaction, so a committed movement
always has its event and a rolled-back one never does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telemetry.events import ENVELOPE, EVENT_FIELDS, SCHEMA_VERSION, TIME_FORMAT

COIN = "COIN"
Result = tuple[int, dict[str, Any]]  # an operation's HTTP status and body

# The platform's own books: they may go negative (costs, funding and the outside world).
COINS_ISSUED = "coins:issued"  # coins in circulation, negative: minted on purchase
PAYMENTS = "external:payments"  # money paid in by buyers (negative) or refunded to them
PROCESSOR_FEES = "external:processor_fees"
STORE_FEES = "external:store_fees"
PAYOUTS = "external:payouts"
COIN_SALES = "platform:coin_sales"  # what a coin purchase leaves after fees
GIFT_FUNDING = "platform:gift_funding"  # pays out the value of gifted coins
GIFT_FEES = "platform:gift_fees"
COMMISSION = "platform:commission"
REFUND_COSTS = "platform:refund_costs"  # processor fees kept by the processor on refunds
PLATFORM_BOOKS = (
    COINS_ISSUED,
    PAYMENTS,
    PROCESSOR_FEES,
    STORE_FEES,
    PAYOUTS,
    COIN_SALES,
    GIFT_FUNDING,
    GIFT_FEES,
    COMMISSION,
    REFUND_COSTS,
)


_ENVELOPE_NAMES = tuple(f.name for f in ENVELOPE)
_FIELD_NAMES = {t: tuple(f.name for f in fields) for t, fields in EVENT_FIELDS.items()}


def wallet(user_id: str) -> str:
    """A user's coins; never negative."""
    return f"wallet:{user_id}"


def earnings(creator_id: str) -> str:
    """A creator's available balance in the currency, awaiting payout; never negative."""
    return f"creator:{creator_id}"


def pending(creator_id: str) -> str:
    """A creator's earnings still in their hold: not payable yet, and taken back first."""
    return f"creator:{creator_id}:pending"


def owed(creator_id: str) -> str:
    """What a creator owes after a clawback their balance could not cover; never above 0."""
    return f"creator:{creator_id}:owed"


def time_ordered_uuid() -> uuid.UUID:
    """A version-7 UUID: millisecond time first, then randomness (RFC 9562).

    Keys that grow with time are appended at the end of the database's indexes instead of
    landing on random pages, which makes each commit write several times fewer pages.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC variant
    return uuid.UUID(int=value)


def new_id(prefix: str) -> str:
    return f"{prefix}_{time_ordered_uuid().hex[:20]}"


class Refused(Exception):
    """A request the ledger turns down: nothing moves, the client gets `status` and `code`.

    `event` is the telemetry event that records the refusal (a `gift_failed`, say), written
    in place of the movement.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        event: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.event = status, code, message, event

    @property
    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


@dataclass
class Tx:
    """One operation inside the writer's database transaction."""

    conn: sqlite3.Connection
    source: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    pushes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (session, message)

    def __post_init__(self) -> None:
        self.occurred_at = self.now.strftime(TIME_FORMAT)
        self.epoch = self.now.timestamp()

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        return self.conn.execute(sql, params).fetchone()

    def emit(self, event_type: str, movement_id: str | None = None, **fields: Any) -> str:
        """Writes one telemetry event to the outbox, exactly as the contract lays it out."""
        names = _FIELD_NAMES[event_type]
        if len(fields) != len(names) or not all(n in fields for n in names):
            raise ValueError(f"{event_type} needs fields {names}, got {sorted(fields)}")
        event_id = str(time_ordered_uuid())
        event = dict(
            zip(
                _ENVELOPE_NAMES,
                (event_id, event_type, SCHEMA_VERSION, self.occurred_at, self.source),
                strict=True,
            )
        )
        event.update((n, fields[n]) for n in names)
        self.conn.execute(
            "INSERT INTO outbox (event_id, event_type, movement_id, line) VALUES (?, ?, ?, ?)",
            (event_id, event_type, movement_id, json.dumps(event, separators=(",", ":"))),
        )
        return event_id

    def move(self, movement_id: str, kind: str, principal_id: str, postings: dict[str, int]):
        """Records a movement; the CHECK on accounts refuses any overdraft."""
        self.conn.execute(
            "INSERT INTO movements (id, kind, principal_id, occurred_at, day) "
            "VALUES (?, ?, ?, ?, ?)",
            (movement_id, kind, principal_id, self.occurred_at, self.occurred_at[:10]),
        )
        rows = [(movement_id, account, amount) for account, amount in postings.items() if amount]
        self.conn.executemany(
            "INSERT INTO postings (movement_id, account_id, amount) VALUES (?, ?, ?)", rows
        )
        updated = self.conn.executemany(
            "UPDATE accounts SET balance = balance + ? WHERE id = ?",
            [(amount, account) for _, account, amount in rows],
        ).rowcount
        if updated != len(rows):  # never a posting to an account that was not opened
            raise ValueError(f"movement {movement_id} posts to an account that does not exist")

    def push(self, session_id: str, message: dict[str, Any]) -> None:
        """A message for the session's viewers, sent only once the transaction commits."""
        self.pushes.append((session_id, message))


def open_accounts(conn: sqlite3.Connection, ids: list[str], unit: str, negative: bool) -> None:
    conn.executemany(
        "INSERT INTO accounts (id, unit, may_go_negative) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        [(i, unit, int(negative)) for i in ids],
    )


def open_platform_books(conn: sqlite3.Connection, currency: str) -> None:
    open_accounts(conn, [COINS_ISSUED], COIN, negative=True)
    open_accounts(conn, list(PLATFORM_BOOKS[1:]), currency, negative=True)
    # Creators of a ledger older than holds and debts get those accounts once, here.
    creators = [r[0] for r in conn.execute("SELECT id FROM principals WHERE kind = 'creator'")]
    open_creator_accounts(conn, creators, currency)


def open_creator_accounts(conn: sqlite3.Connection, creators: list[str], currency: str) -> None:
    """A creator's available, pending (never negative) and owed (never above 0) accounts."""
    open_accounts(conn, [earnings(c) for c in creators], currency, negative=False)
    open_accounts(conn, [pending(c) for c in creators], currency, negative=False)
    open_accounts(conn, [owed(c) for c in creators], currency, negative=True)
