"""Accounts and bearer tokens: a principal is created with its money account and a first token;
tokens are stored only as their sha256."""

from __future__ import annotations

import hashlib
import secrets

from live_runtime.ledger import books
from live_runtime.ledger.books import Result, Tx, new_id
from live_runtime.policy import Policy


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_principal(tx: Tx, policy: Policy, kind: str, display_name: str) -> Result:
    principal_id = new_id("u" if kind == "user" else "cr")
    tx.conn.execute(
        "INSERT INTO principals (id, kind, display_name, created_at) VALUES (?, ?, ?, ?)",
        (principal_id, kind, display_name, tx.occurred_at),
    )
    if kind == "user":
        books.open_accounts(tx.conn, [books.wallet(principal_id)], books.COIN, negative=False)
    else:
        books.open_accounts(tx.conn, [books.earnings(principal_id)], policy.currency, False)
    token, expires_at = issue_token(tx, principal_id, policy.token_ttl_days * 86_400)
    return 201, {"id": principal_id, "kind": kind, "token": token, "expires_at": expires_at}


def issue_token(tx: Tx, principal_id: str, ttl_seconds: float) -> tuple[str, float]:
    token = f"ce_{secrets.token_urlsafe(32)}"
    expires_at = round(tx.epoch + ttl_seconds, 3)
    tx.conn.execute(
        "INSERT INTO tokens (token_hash, principal_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
        (hash_token(token), principal_id, expires_at, tx.occurred_at),
    )
    return token, expires_at


def new_token(tx: Tx, principal_id: str, ttl_seconds: float) -> Result:
    token, expires_at = issue_token(tx, principal_id, ttl_seconds)
    return 201, {"token": token, "expires_at": expires_at}


def me(tx: Tx, policy: Policy, principal_id: str, kind: str) -> Result:
    account = books.wallet(principal_id) if kind == "user" else books.earnings(principal_id)
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    key = "coins" if kind == "user" else "balance_minor"
    body = {"id": principal_id, "kind": kind, key: balance}
    if kind == "creator":
        body["currency"] = policy.currency
    return 200, body
