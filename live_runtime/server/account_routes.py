"""Accounts and tokens: sign up as a user or creator, get another token, read your balance."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from live_runtime.ledger import accounts
from live_runtime.server import inputs
from live_runtime.server.context import caller, runtime_of

MAX_TOKEN_TTL = 366 * 86_400


async def create_account(request: Request) -> Response:
    runtime = runtime_of(request)
    body, _ = await inputs.json_body(request)
    kind = inputs.text(body, "kind", choices=frozenset({"user", "creator"}))
    name = inputs.text(body, "display_name", default=kind)
    return await runtime.run(
        partial(accounts.create_principal, policy=runtime.policy, kind=kind, display_name=name)
    )


async def create_token(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    body, _ = await inputs.json_body(request)
    ttl = runtime.policy.token_ttl_days * 86_400
    if body.get("ttl_seconds") is not None:
        ttl = inputs.integer(body, "ttl_seconds", 1, MAX_TOKEN_TTL)
    return await runtime.run(
        partial(accounts.new_token, principal_id=principal.id, ttl_seconds=ttl)
    )


async def me(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    return await runtime.run(
        partial(accounts.me, policy=runtime.policy, principal_id=principal.id, kind=principal.kind)
    )
