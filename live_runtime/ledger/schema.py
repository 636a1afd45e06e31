"""The ledger database: tables of accounts, postings, live state and the telemetry outbox.

The DDL is plain SQL that SQLite and PostgreSQL both accept, except for the outbox's
auto-numbered key (`INTEGER PRIMARY KEY` here, `BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY
KEY` on PostgreSQL). Balances are checked by the database itself: an account that may not go
negative has a CHECK constraint, so no code path can overdraw it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

TABLES = {
    "principals": """
        id TEXT PRIMARY KEY,            -- u_... for users, cr_... for creators
        kind TEXT NOT NULL CHECK (kind IN ('user', 'creator')),
        display_name TEXT NOT NULL,
        created_at TEXT NOT NULL""",
    "tokens": """
        token_hash TEXT PRIMARY KEY,    -- sha256 of the bearer token; the token is never stored
        principal_id TEXT NOT NULL REFERENCES principals (id),
        expires_at DOUBLE PRECISION NOT NULL,  -- unix seconds
        created_at TEXT NOT NULL""",
    "credentials": """
        principal_id TEXT PRIMARY KEY REFERENCES principals (id),
        login TEXT NOT NULL UNIQUE,     -- lower case, 3 to 64 of [a-z0-9._-]
        password_hash TEXT NOT NULL,    -- argon2id PHC string; the password is never stored
        updated_at TEXT NOT NULL""",
    "accounts": """
        id TEXT PRIMARY KEY,            -- e.g. wallet:u_1 (coins), creator:cr_1 (money)
        unit TEXT NOT NULL,             -- COIN, or an ISO 4217 currency in minor units
        may_go_negative INTEGER NOT NULL,  -- 1 only for the platform's own books
        balance BIGINT NOT NULL DEFAULT 0,
        CHECK (may_go_negative = 1 OR balance >= 0)""",
    "movements": """
        id TEXT PRIMARY KEY,            -- the gift, purchase, order, refund or payout id
        kind TEXT NOT NULL,             -- purchase, gift, order, refund, payout
        principal_id TEXT NOT NULL,     -- who asked for it
        occurred_at TEXT NOT NULL,      -- equal to its telemetry event's occurred_at
        day TEXT NOT NULL               -- UTC date of occurred_at, for daily totals""",
    "postings": """
        movement_id TEXT NOT NULL REFERENCES movements (id),
        account_id TEXT NOT NULL REFERENCES accounts (id),
        amount BIGINT NOT NULL,         -- signed; a movement's postings sum to 0 per unit
        PRIMARY KEY (movement_id, account_id)""",
    "idempotency": """
        principal_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,     -- sha256 of the route and the request body
        status INTEGER NOT NULL,
        response TEXT NOT NULL,         -- the first response, returned again on a retry
        PRIMARY KEY (principal_id, idempotency_key)""",
    "sessions": """
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL REFERENCES principals (id),
        region TEXT NOT NULL,
        quality TEXT NOT NULL,
        record INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('live', 'ended')),
        started_at TEXT NOT NULL,
        ended_at TEXT,
        pinned_product_id TEXT,
        metered_from DOUBLE PRECISION NOT NULL,  -- start of the interval not yet metered
        advanced_at DOUBLE PRECISION NOT NULL,   -- host seconds are counted up to here
        publisher_pending DOUBLE PRECISION NOT NULL DEFAULT 0,
        relay_pending DOUBLE PRECISION NOT NULL DEFAULT 0""",
    "session_hosts": """
        session_id TEXT NOT NULL REFERENCES sessions (id),
        creator_id TEXT NOT NULL REFERENCES principals (id),
        present INTEGER NOT NULL,       -- 0 while invited or after leaving
        weight INTEGER NOT NULL,        -- split weight; equal weights split equally
        position INTEGER NOT NULL,      -- 0 is the owner; leftover minor units go first
        PRIMARY KEY (session_id, creator_id)""",
    "products": """
        id TEXT PRIMARY KEY,
        creator_id TEXT NOT NULL REFERENCES principals (id),
        name TEXT NOT NULL,
        price_minor BIGINT NOT NULL CHECK (price_minor > 0),
        currency TEXT NOT NULL,
        created_at TEXT NOT NULL""",
    "orders": """
        id TEXT PRIMARY KEY,
        buyer_id TEXT NOT NULL REFERENCES principals (id),
        creator_id TEXT NOT NULL REFERENCES principals (id),
        product_id TEXT NOT NULL REFERENCES products (id),
        session_id TEXT,
        quantity INTEGER NOT NULL,
        gross_minor BIGINT NOT NULL,
        payment_fee_minor BIGINT NOT NULL,
        commission_minor BIGINT NOT NULL,
        creator_net_minor BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('paid', 'refunded'))""",
    "payouts": """
        id TEXT PRIMARY KEY,
        creator_id TEXT NOT NULL REFERENCES principals (id),
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        period_start TEXT NOT NULL,
        period_end TEXT NOT NULL""",
    "earnings_carry": """
        creator_id TEXT PRIMARY KEY REFERENCES principals (id),
        owed TEXT NOT NULL              -- "n/d", a fraction of a minor unit not yet credited""",
    "earnings_holds": """
        creator_id TEXT NOT NULL REFERENCES principals (id),
        releases_on TEXT NOT NULL,      -- the UTC day these earnings become payable
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        PRIMARY KEY (creator_id, releases_on)""",
    "payments": """
        id TEXT PRIMARY KEY,            -- the provider's payment intent id
        kind TEXT NOT NULL CHECK (kind IN ('purchase', 'order')),
        principal_id TEXT NOT NULL REFERENCES principals (id),  -- the payer
        reference TEXT NOT NULL,        -- the purchase or order id it pays for
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        currency TEXT NOT NULL,
        details TEXT NOT NULL,          -- JSON: what the confirmation credits (coins, fees, ...)
        client_secret_hash TEXT NOT NULL,  -- sha256 of the secret the payer confirms with
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'succeeded', 'failed', 'refunded', 'disputed')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL""",
    "webhook_events": """
        event_id TEXT PRIMARY KEY,      -- the provider's event id: each applies once
        event_type TEXT NOT NULL,
        payment_id TEXT,
        outcome TEXT NOT NULL,          -- applied, no_effect or ignored
        received_at TEXT NOT NULL""",
    "outbox": """
        seq INTEGER PRIMARY KEY,        -- commit order; the relay writes in this order
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        movement_id TEXT,               -- the money movement this event records, if any
        line TEXT NOT NULL,             -- the JSON line exactly as relayed
        relayed INTEGER NOT NULL DEFAULT 0""",
}

INDEXES = (
    "CREATE INDEX IF NOT EXISTS outbox_unrelayed ON outbox (seq) WHERE relayed = 0",
    "CREATE INDEX IF NOT EXISTS movements_day ON movements (day, kind)",
    "CREATE INDEX IF NOT EXISTS tokens_principal ON tokens (principal_id)",
    "CREATE INDEX IF NOT EXISTS payments_reference ON payments (reference)",
    "CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (expires_at)",  # purging expired tokens
)


def open_ledger(path: Path | str, durable: bool = True) -> sqlite3.Connection:
    """A connection in WAL mode; `durable` fsyncs every commit (synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_ledger_schema(conn: sqlite3.Connection) -> None:
    for name, columns in TABLES.items():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns}\n)")
    for statement in INDEXES:
        conn.execute(statement)
