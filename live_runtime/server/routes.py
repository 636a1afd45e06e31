"""The runtime's HTTP and WebSocket API: a route table over thin, module-level handlers.

A handler authenticates, parses, and hands one operation to the ledger writer; it answers
only after the commit, then pushes what the operation produced to the session's viewers.
Every refusal is a JSON error with a code and a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from live_runtime.server import (
    account_routes,
    commerce_routes,
    service_routes,
    session_routes,
    wallet_routes,
)
from live_runtime.server.inputs import BadRequest
from live_runtime.server.live_socket import live
from live_runtime.server.runtime import Runtime, RuntimeConfig

log = logging.getLogger(__name__)
SESSION = "/v1/sessions/{session_id}"

ROUTES = [
    Route("/v1/health", service_routes.health),
    Route("/openapi.json", service_routes.openapi),
    Route("/v1/accounts", account_routes.create_account, methods=["POST"]),
    Route("/v1/tokens", account_routes.create_token, methods=["POST"]),
    Route("/v1/me", account_routes.me),
    Route("/v1/wallet/purchases", wallet_routes.purchase, methods=["POST"]),
    Route("/v1/sessions", session_routes.start_session, methods=["POST"]),
    Route(SESSION, session_routes.get_session),
    Route(f"{SESSION}/cohosts", session_routes.invite, methods=["POST"]),
    Route(f"{SESSION}/join", session_routes.join, methods=["POST"]),
    Route(f"{SESSION}/leave", session_routes.leave, methods=["POST"]),
    Route(f"{SESSION}/split", session_routes.split, methods=["PUT"]),
    Route(f"{SESSION}/pin", session_routes.pin, methods=["POST"]),
    Route(f"{SESSION}/end", session_routes.end, methods=["POST"]),
    Route(f"{SESSION}/gifts", wallet_routes.gift, methods=["POST"]),
    WebSocketRoute(f"{SESSION}/live", live),
    Route("/v1/products", commerce_routes.create_product, methods=["POST"]),
    Route("/v1/creators/{creator_id}/products", commerce_routes.products),
    Route("/v1/orders", commerce_routes.order, methods=["POST"]),
    Route("/v1/orders/{order_id}/refund", commerce_routes.refund, methods=["POST"]),
    Route("/v1/payouts", commerce_routes.payout, methods=["POST"]),
]


def create_app(config: RuntimeConfig) -> Starlette:
    """The app over a `Runtime` for `config`; it starts and stops with the server."""
    runtime = Runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.start()
        meter = asyncio.create_task(runtime.meter_forever())
        try:
            yield
        finally:
            meter.cancel()
            await runtime.stop()

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={BadRequest: error, HTTPException: error, Exception: error},
    )
    app.state.runtime = runtime
    return app


def error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BadRequest):
        return JSONResponse({"error": exc.code, "message": exc.message}, exc.status)
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": "http_error", "message": exc.detail}, exc.status_code)
    log.error("request failed: %r", exc)  # nothing moved: the operation was rolled back
    return JSONResponse({"error": "internal_error", "message": "please retry"}, 500)
