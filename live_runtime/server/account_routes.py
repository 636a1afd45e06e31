"""Accounts and tokens: sign up as a user or creator, sign in, get another token, sign out,
read your balance.

Passwords are hashed and verified here, off the event loop (`asyncio.to_thread`), never in a
ledger operation. Account creation and failed sign-ins are limited per client address
(auth.py); past a limit the answer is 429 with a Retry-After header.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from live_runtime.ledger import accounts
from live_runtime.server import inputs
from live_runtime.server.context import caller, runtime_of
from live_runtime.server.inputs import BadRequest

MAX_TOKEN_TTL = 366 * 86_400
LOGIN = re.compile(r"[A-Za-z0-9._-]{3,64}")  # stored in lower case
MIN_PASSWORD, MAX_PASSWORD = 12, 128


def login_of(body: dict) -> str:
    """The login, case-folded: 3 to 64 of letters, digits, `.`, `_` and `-`."""
    value = body.get("login")
    if value is None:
        raise BadRequest(422, "missing_field", "login is required")
    if not isinstance(value, str) or LOGIN.fullmatch(value) is None:
        raise BadRequest(
            422, "invalid_field", "login must be 3 to 64 of letters, digits, '.', '_' and '-'"
        )
    return value.lower()


def password_of(body: dict) -> str:
    value = body.get("password")
    if value is None:
        raise BadRequest(422, "missing_field", "password is required")
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise BadRequest(
            422, "invalid_field", f"password must be a string of {MIN_PASSWORD} to "
            f"{MAX_PASSWORD} characters"
        )  # fmt: skip
    return value


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def too_many(retry_after: int, what: str) -> Response:
    return JSONResponse(
        {"error": "rate_limited", "message": f"too many {what}; retry in {retry_after} s"},
        429,
        headers={"Retry-After": str(retry_after)},
    )


async def create_account(request: Request) -> Response:
    runtime = runtime_of(request)
    body, _ = await inputs.json_body(request)
    kind = inputs.text(body, "kind", choices=frozenset({"user", "creator"}))
    name = inputs.text(body, "display_name", default=kind)
    login, password = login_of(body), password_of(body)
    if (wait := runtime.auth.signups.hit(client_address(request))) is not None:
        return too_many(wait, "accounts created from this address")
    password_hash = await asyncio.to_thread(accounts.hash_password, password)
    return await runtime.run(
        partial(
            accounts.create_principal,
            policy=runtime.policy,
            kind=kind,
            display_name=name,
            login=login,
            password_hash=password_hash,
        )
    )


async def sign_in(request: Request) -> Response:
    """A new token for a login and password. A wrong password and an unknown login get the
    same 401, after the same argon2 verification (against a dummy hash for the latter)."""
    runtime = runtime_of(request)
    body, _ = await inputs.json_body(request)
    login, password = login_of(body), password_of(body)
    tries = f"{login} {client_address(request)}"
    if (wait := runtime.auth.failed_sign_ins.retry_after(tries)) is not None:
        return too_many(wait, "failed sign-ins for this login from this address")
    found = runtime.auth.credentials(login)
    stored = found.password_hash if found is not None else None
    if not await asyncio.to_thread(accounts.verify_password, stored, password):
        runtime.auth.failed_sign_ins.hit(tries)
        raise BadRequest(401, "invalid_credentials", "the login or password is wrong")
    assert found is not None and stored is not None
    new_hash = None
    if accounts.needs_rehash(stored):
        new_hash = await asyncio.to_thread(accounts.hash_password, password)
    return await runtime.run(
        partial(
            accounts.sign_in,
            policy=runtime.policy,
            principal_id=found.principal_id,
            verified_hash=stored,
            new_hash=new_hash,
        )
    )


async def create_token(request: Request) -> Response:
    """Another token for the caller, expiring no later than the caller's own token: a longer
    `ttl_seconds` (or the default) is capped at what the caller's token has left."""
    runtime = runtime_of(request)
    me = runtime.auth.caller(request)
    body, _ = await inputs.json_body(request)
    ttl = runtime.policy.token_ttl_days * 86_400
    if body.get("ttl_seconds") is not None:
        ttl = inputs.integer(body, "ttl_seconds", 1, MAX_TOKEN_TTL)
    return await runtime.run(
        partial(
            accounts.new_token,
            principal_id=me.principal.id,
            parent_hash=me.token_hash,
            ttl_seconds=ttl,
        )
    )


async def sign_out(request: Request) -> Response:
    """Revokes the calling token: from the 204 on, it is refused everywhere."""
    runtime = runtime_of(request)
    me = runtime.auth.caller(request)
    await runtime.writer.run(
        partial(accounts.revoke_token, principal_id=me.principal.id, token_hash=me.token_hash)
    )
    runtime.auth.forget(me.token_hash)
    runtime.rooms.sign_out(me.principal.id, me.token_hash)
    return Response(status_code=204)


async def revoke_all(request: Request) -> Response:
    """Revokes every token of the caller, this one included."""
    runtime = runtime_of(request)
    me = runtime.auth.caller(request)
    await runtime.writer.run(partial(accounts.revoke_all_tokens, principal_id=me.principal.id))
    runtime.auth.forget_principal(me.principal.id)
    runtime.rooms.sign_out(me.principal.id)
    return Response(status_code=204)


async def me(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    return await runtime.read(
        partial(accounts.me, policy=runtime.policy, principal_id=principal.id, kind=principal.kind)
    )
