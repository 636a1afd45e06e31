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
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from live_runtime.server import (
    account_routes,
    commerce_routes,
    payment_routes,
    service_routes,
    session_routes,
    wallet_routes,
)
from live_runtime.server.inputs import ID, BadRequest
from live_runtime.server.limits import REQUEST_TIMEOUT, RequestDeadline
from live_runtime.server.live_socket import live
from live_runtime.server.runtime import Runtime, RuntimeConfig

log = logging.getLogger(__name__)


class IdConvertor(StringConvertor):
    """`{name:id}`: 1 to MAX_TEXT of A-Z a-z 0-9 _ - (what ids are made of); any other path
    matches no route, so it is 404 before a handler, the ledger or the telemetry sees it."""

    regex = ID


register_url_convertor("id", IdConvertor())
SESSION = "/v1/sessions/{session_id:id}"

ROUTES = [
    Route("/v1/health", service_routes.health),
    Route("/openapi.json", service_routes.openapi),
    Route("/v1/accounts", account_routes.create_account, methods=["POST"]),
    Route("/v1/sign-in", account_routes.sign_in, methods=["POST"]),
    Route("/v1/tokens", account_routes.create_token, methods=["POST"]),
    Route("/v1/tokens/current", account_routes.sign_out, methods=["DELETE"]),
    Route("/v1/tokens/revoke-all", account_routes.revoke_all, methods=["POST"]),
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
    Route("/v1/creators/{creator_id:id}/products", commerce_routes.products),
    Route("/v1/orders", commerce_routes.order, methods=["POST"]),
    Route("/v1/orders/{order_id:id}/refund", commerce_routes.refund, methods=["POST"]),
    Route("/v1/payouts", commerce_routes.payout, methods=["POST"]),
    Route("/v1/payments/{payment_id:id}", payment_routes.payment),
    Route("/v1/webhooks/payments", payment_routes.webhook, methods=["POST"]),
    Route(
        "/sandbox/v1/payment_intents/{payment_id:id}/{action}",
        payment_routes.sandbox,
        methods=["POST"],
    ),
]


def create_app(config: RuntimeConfig, request_timeout: float = REQUEST_TIMEOUT) -> Starlette:
    """The app over a `Runtime` for `config`; it starts and stops with the server. A request
    body that takes longer than `request_timeout` seconds to arrive is answered 408."""
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
        middleware=[Middleware(RequestDeadline, seconds=request_timeout)],
        exception_handlers={BadRequest: error, HTTPException: error, Exception: error},
    )
    app.state.runtime = runtime
    runtime.payments.app = app  # the sandbox notifies this application's webhook route
    return app


def error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BadRequest):
        return JSONResponse({"error": exc.code, "message": exc.message}, exc.status)
    if isinstance(exc, HTTPException):  # its headers too: a 405 says what is Allow-ed
        return JSONResponse(
            {"error": "http_error", "message": exc.detail}, exc.status_code, headers=exc.headers
        )
    log.error("request failed: %r", exc)  # nothing moved: the operation was rolled back
    return JSONResponse({"error": "internal_error", "message": "please retry"}, 500)
