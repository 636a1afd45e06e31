"""Bearer tokens: looked up by their sha256 (the database never holds a token), cached."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from live_runtime.ledger.accounts import hash_token
from live_runtime.server.inputs import BadRequest


@dataclass(frozen=True)
class Principal:
    id: str
    kind: str  # user or creator


class Authenticator:
    """Resolves tokens to principals. Tokens never change once issued, so hits are cached."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Principal, float]] = {}

    def principal(self, connection: HTTPConnection, kind: str | None = None) -> Principal:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise BadRequest(401, "unauthenticated", "send Authorization: Bearer <token>")
        token_hash = hash_token(token.strip())
        found = self._cache.get(token_hash) or self._lookup(token_hash)
        if found is None:
            raise BadRequest(401, "unauthenticated", "the token is not valid")
        principal, expires_at = found
        if time.time() >= expires_at:
            raise BadRequest(401, "token_expired", "the token has expired; sign in again")
        if kind is not None and principal.kind != kind:
            raise BadRequest(403, "forbidden", f"only a {kind} may do this")
        return principal

    def _lookup(self, token_hash: str) -> tuple[Principal, float] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT p.id, p.kind, t.expires_at FROM tokens t "
                "JOIN principals p ON p.id = t.principal_id WHERE t.token_hash = ?",
                (token_hash,),
            ).fetchone()
        if row is None:
            return None
        found = (Principal(row[0], row[1]), row[2])
        self._cache[token_hash] = found
        return found
