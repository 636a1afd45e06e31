"""What every handler needs from its request: the runtime, the caller, an idempotency key."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request

from live_runtime.ledger.writer import Idempotency
from live_runtime.server import inputs
from live_runtime.server.auth import Principal
from live_runtime.server.runtime import Runtime


def runtime_of(connection: HTTPConnection) -> Runtime:
    return connection.app.state.runtime


def caller(connection: HTTPConnection, kind: str | None = None) -> Principal:
    """The authenticated principal; 401 without a valid token, 403 for the wrong kind."""
    return runtime_of(connection).auth.principal(connection, kind)


async def idempotent_body(request: Request, principal: Principal) -> tuple[dict, Idempotency]:
    """The JSON body and what its Idempotency-Key stands for (caller, key, route and body)."""
    key = inputs.idempotency_key(request)
    body, raw = await inputs.json_body(request)
    return body, Idempotency(principal.id, key, inputs.request_hash(request, raw))
