"""Accounts, passwords and bearer tokens.

A principal is created with its money account, its login and password, and a first token.
Tokens are stored only as their sha256; passwords only as an argon2id hash, in `credentials`.

Hashing and verifying a password is slow on purpose, so it never runs in a ledger operation
(the single writer would stall every request behind it): handlers hash or verify with
`asyncio.to_thread` first, and hand the operation the finished hash.

Token lifetimes only shrink: a token minted with another token never outlives it (`new_token`
caps the lifetime at the caller's), and a revoked token's row is deleted at once. Rows of
tokens expired for over a day are purged as new tokens are issued.
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from live_runtime.ledger import books, earnings
from live_runtime.ledger.books import Refused, Result, Tx, new_id
from live_runtime.policy import Policy

# argon2id at OWASP's smallest recommended cost (19 MiB of memory, 2 passes, 1 lane): about
# 20 to 50 ms a hash on one core, so tests and load runs can create many accounts, while a
# guess still costs an attacker 19 MiB and the same time. A hash made with other parameters
# (older or newer) still verifies, and is replaced at the next successful sign-in.
PASSWORDS = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
PURGE_AFTER_SECONDS = 86_400  # an expired token answers `token_expired` for a day, then goes
PURGE_BATCH = 64  # expired rows deleted per token issued: the table never piles them up


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, with its salt and parameters). Slow: not in the writer."""
    return PASSWORDS.hash(password)


@functools.cache
def dummy_hash() -> str:
    """A hash of no one's password, verified against when the login is unknown, so an unknown
    login takes as long to refuse as a wrong password."""
    return PASSWORDS.hash(secrets.token_urlsafe(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches the hash; None (unknown login) is checked against a dummy
    hash and is always False. Slow: not in the writer."""
    try:
        return PASSWORDS.verify(password_hash or dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than `PASSWORDS` has now."""
    try:
        return PASSWORDS.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


def create_principal(
    tx: Tx,
    policy: Policy,
    kind: str,
    display_name: str,
    login: str | None = None,
    password_hash: str | None = None,
) -> Result:
    """A user or creator with its book, credentials and a first token; 409 if the login is
    taken. The API always gives a login and password hash; without them (ledger tools and
    tests, like principals of ledgers older than sign-in) the principal cannot sign in."""
    if (login is None) != (password_hash is None):
        raise ValueError("give both a login and a password hash, or neither")
    if login is not None and tx.one("SELECT 1 FROM credentials WHERE login = ?", (login,)):
        raise Refused(409, "login_taken", f"the login {login!r} is taken; choose another")
    principal_id = new_id("u" if kind == "user" else "cr")
    tx.conn.execute(
        "INSERT INTO principals (id, kind, display_name, created_at) VALUES (?, ?, ?, ?)",
        (principal_id, kind, display_name, tx.occurred_at),
    )
    if login is not None:
        tx.conn.execute(
            "INSERT INTO credentials (principal_id, login, password_hash, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (principal_id, login, password_hash, tx.occurred_at),
        )
    if kind == "user":
        books.open_accounts(tx.conn, [books.wallet(principal_id)], books.COIN, negative=False)
    else:
        books.open_creator_accounts(tx.conn, [principal_id], policy.currency)
    token, expires_at = issue_token(tx, principal_id, policy.token_ttl_days * 86_400)
    return 201, {"id": principal_id, "kind": kind, "token": token, "expires_at": expires_at}


def sign_in(
    tx: Tx,
    policy: Policy,
    principal_id: str,
    verified_hash: str,
    new_hash: str | None = None,
) -> Result:
    """A new token for a principal whose password was verified against `verified_hash`.

    Refused (the same 401 as a wrong password) if the hash changed meanwhile. `new_hash`, the
    password hashed again with the current parameters, replaces an outdated hash.
    """
    row = tx.one(
        "SELECT p.kind, c.password_hash FROM credentials c "
        "JOIN principals p ON p.id = c.principal_id WHERE c.principal_id = ?",
        (principal_id,),
    )
    if row is None or row[1] != verified_hash:
        raise Refused(401, "invalid_credentials", "the login or password is wrong")
    if new_hash is not None:
        tx.conn.execute(
            "UPDATE credentials SET password_hash = ?, updated_at = ? WHERE principal_id = ?",
            (new_hash, tx.occurred_at, principal_id),
        )
    token, expires_at = issue_token(tx, principal_id, policy.token_ttl_days * 86_400)
    return 201, {"id": principal_id, "kind": row[0], "token": token, "expires_at": expires_at}


def issue_token(
    tx: Tx, principal_id: str, ttl_seconds: float, not_after: float | None = None
) -> tuple[str, float]:
    """A new token for `ttl_seconds`, but expiring no later than `not_after` if given."""
    token = f"ce_{secrets.token_urlsafe(32)}"
    expires_at = round(tx.epoch + ttl_seconds, 3)
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    tx.conn.execute(
        "INSERT INTO tokens (token_hash, principal_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
        (hash_token(token), principal_id, expires_at, tx.occurred_at),
    )
    purge_expired_tokens(tx)
    return token, expires_at


def new_token(tx: Tx, principal_id: str, parent_hash: str, ttl_seconds: float) -> Result:
    """Another token, minted with the caller's token (`parent_hash`): it expires no later.

    A request for longer is capped, not refused: the answer's `expires_at` says when the new
    token expires. A parent revoked or expired meanwhile is a 401, as it would be at the door.
    """
    row = tx.one(
        "SELECT expires_at FROM tokens WHERE token_hash = ? AND principal_id = ?",
        (parent_hash, principal_id),
    )
    if row is None:
        raise Refused(401, "unauthenticated", "the token is not valid")
    if tx.epoch >= row[0]:
        raise Refused(401, "token_expired", "the token has expired; sign in again")
    token, expires_at = issue_token(tx, principal_id, ttl_seconds, not_after=row[0])
    return 201, {"token": token, "expires_at": expires_at}


def revoke_token(tx: Tx, principal_id: str, token_hash: str) -> Result:
    """Sign-out: the token stops working once this commits."""
    tx.conn.execute(
        "DELETE FROM tokens WHERE token_hash = ? AND principal_id = ?", (token_hash, principal_id)
    )
    return 204, {}


def revoke_all_tokens(tx: Tx, principal_id: str) -> Result:
    """Every token of the principal stops working once this commits."""
    tx.conn.execute("DELETE FROM tokens WHERE principal_id = ?", (principal_id,))
    return 204, {}


def purge_expired_tokens(tx: Tx, limit: int = PURGE_BATCH) -> int:
    """Deletes up to `limit` rows of tokens expired more than PURGE_AFTER_SECONDS ago."""
    cursor = tx.conn.execute(
        "DELETE FROM tokens WHERE token_hash IN (SELECT token_hash FROM tokens "
        "WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
        (tx.epoch - PURGE_AFTER_SECONDS, limit),
    )
    return cursor.rowcount


def me(tx: Tx, policy: Policy, principal_id: str, kind: str) -> Result:
    account = books.wallet(principal_id) if kind == "user" else books.earnings(principal_id)
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    key = "coins" if kind == "user" else "balance_minor"
    body = {"id": principal_id, "kind": kind, key: balance}
    if kind == "creator":
        body["currency"] = policy.currency
        body.update(earnings.summary(tx, policy, principal_id))
        body["balance_minor"] = body["available_minor"]
    return 200, body
