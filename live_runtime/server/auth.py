"""Bearer tokens, looked up by their sha256 (the database never holds a token), and the
limits on account creation and failed sign-ins.

Token lookups are cached in a bounded LRU (`TokenCache`). A revoked token must not be served
from it: the sign-out handlers call `forget`/`forget_principal` once the revocation commits
(one process serves a ledger, so that reaches every cache there is), and every entry is read
again from the database after `RECHECK_SECONDS` whatever happens.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sqlite3
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from live_runtime.ledger.accounts import dummy_hash, hash_token
from live_runtime.server.inputs import BadRequest

CACHE_ENTRIES = 10_000
RECHECK_SECONDS = 5.0
# Sign-ups per client address (request.client.host) and failed sign-ins per login and address
# are limited over a fixed window of a minute; the limits are settings (creator_econ/settings.py).
LIMITER_SLOTS = 65_536


@dataclass(frozen=True)
class Principal:
    id: str
    kind: str  # user or creator


@dataclass(frozen=True)
class Caller:
    """A principal and the token it came with."""

    principal: Principal
    token_hash: str
    expires_at: float


@dataclass(frozen=True)
class Credentials:
    principal_id: str
    password_hash: str


class TokenCache:
    """token hash -> (principal, expires_at): at most `max_entries`, least recently used out
    first, and each entry good for `recheck_seconds` after it was read from the database."""

    def __init__(
        self,
        max_entries: int = CACHE_ENTRIES,
        recheck_seconds: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries, self.recheck_seconds, self._clock = max_entries, recheck_seconds, clock
        self._entries: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every forget: a lookup begun before is not cached

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token_hash: str) -> tuple[Principal, float] | None:
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            principal, expires_at, read_at = entry
            if self._clock() - read_at >= self.recheck_seconds:
                del self._entries[token_hash]
                return None
            self._entries.move_to_end(token_hash)
            return principal, expires_at

    def put(
        self, token_hash: str, principal: Principal, expires_at: float, generation: int
    ) -> None:
        """Caches a row read while the cache was at `generation`, unless a token was forgotten
        since (the row may be the one just revoked)."""
        with self._lock:
            if generation != self.generation:
                return
            self._entries[token_hash] = (principal, expires_at, self._clock())
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, token_hash: str) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(token_hash, None)

    def forget_principal(self, principal_id: str) -> None:
        with self._lock:
            self.generation += 1
            for token_hash in [h for h, e in self._entries.items() if e[0].id == principal_id]:
                del self._entries[token_hash]


class RateLimiter:
    """At most `limit` hits per key in each fixed window of `window` seconds, in fixed memory.

    Keys are hashed with a secret of the process into `slots` counters, so nobody can aim at
    another's slot; two keys sharing a slot share its count, which can only refuse early,
    never let a key past its limit. Nothing is evicted, so nobody can flush a count away.
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        slots: int = LIMITER_SLOTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._starts = array("d", bytes(8 * slots))
        self._counts = array("Q", bytes(8 * slots))
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()

    def _slot(self, key: str) -> int:
        digest = hashlib.blake2b(key.encode(), key=self._secret, digest_size=8).digest()
        return int.from_bytes(digest) % len(self._counts)

    def _wait(self, slot: int, now: float) -> int | None:
        if now - self._starts[slot] >= self.window or self._counts[slot] < self.limit:
            return None
        return max(1, math.ceil(self._starts[slot] + self.window - now))

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may try again, or None if it may now."""
        with self._lock:
            return self._wait(self._slot(key), self._clock())

    def hit(self, key: str) -> int | None:
        """Counts one try of `key`; refused (seconds to wait) past the limit, and not counted."""
        with self._lock:
            slot, now = self._slot(key), self._clock()
            if (wait := self._wait(slot, now)) is not None:
                return wait
            if now - self._starts[slot] >= self.window:
                self._starts[slot], self._counts[slot] = now, 0
            self._counts[slot] += 1
            return None


class Authenticator:
    """Resolves tokens to principals (cached), reads credentials, and limits who may try."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        signups_per_minute: int,
        failed_sign_ins_per_minute: int,
        cache: TokenCache | None = None,
    ) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.cache = cache or TokenCache()
        self.signups = RateLimiter(signups_per_minute)
        self.failed_sign_ins = RateLimiter(failed_sign_ins_per_minute)
        dummy_hash()  # made now, so the first unknown login takes no longer than the rest

    def principal(self, connection: HTTPConnection, kind: str | None = None) -> Principal:
        return self.caller(connection, kind).principal

    def caller(self, connection: HTTPConnection, kind: str | None = None) -> Caller:
        """The principal and its token; 401 without a valid token, 403 for the wrong kind."""
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise BadRequest(401, "unauthenticated", "send Authorization: Bearer <token>")
        token_hash = hash_token(token.strip())
        found = self.cache.get(token_hash) or self._lookup(token_hash)
        if found is None:
            raise BadRequest(401, "unauthenticated", "the token is not valid")
        principal, expires_at = found
        if time.time() >= expires_at:
            raise BadRequest(401, "token_expired", "the token has expired; sign in again")
        if kind is not None and principal.kind != kind:
            raise BadRequest(403, "forbidden", f"only a {kind} may do this")
        return Caller(principal, token_hash, expires_at)

    def _lookup(self, token_hash: str) -> tuple[Principal, float] | None:
        generation = self.cache.generation
        with self._lock:
            row = self._conn.execute(
                "SELECT p.id, p.kind, t.expires_at FROM tokens t "
                "JOIN principals p ON p.id = t.principal_id WHERE t.token_hash = ?",
                (token_hash,),
            ).fetchone()
        if row is None:
            return None
        principal = Principal(row[0], row[1])
        self.cache.put(token_hash, principal, row[2], generation)
        return principal, row[2]

    def credentials(self, login: str) -> Credentials | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT principal_id, password_hash FROM credentials WHERE login = ?", (login,)
            ).fetchone()
        return None if row is None else Credentials(row[0], row[1])

    def forget(self, token_hash: str) -> None:
        """After a sign-out commits: the token is not served from the cache again."""
        self.cache.forget(token_hash)

    def forget_principal(self, principal_id: str) -> None:
        """After a revoke-all commits: none of the principal's tokens is served again."""
        self.cache.forget_principal(principal_id)
