"""Coin purchases (a pending payment) and gifts, each under an Idempotency-Key."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from live_runtime.ledger import payments, wallets
from live_runtime.server import inputs
from live_runtime.server.context import caller, idempotent_body, runtime_of
from telemetry.events import CHANNELS


async def purchase(request: Request) -> Response:
    runtime, user = runtime_of(request), caller(request, "user")
    body, key = await idempotent_body(request, user)
    coins = inputs.integer(body, "coins")
    channel = inputs.text(body, "channel", choices=CHANNELS)
    return await runtime.run(
        partial(
            payments.open_purchase,
            policy=runtime.policy,
            user_id=user.id,
            coins=coins,
            channel=channel,
        ),
        key,
    )


async def gift(request: Request) -> Response:
    runtime, user = runtime_of(request), caller(request, "user")
    body, key = await idempotent_body(request, user)
    coins = inputs.integer(body, "coins", low=-inputs.INT64_MAX)  # the ledger checks the range
    return await runtime.run(
        partial(
            wallets.send_gift,
            policy=runtime.policy,
            user_id=user.id,
            session_id=request.path_params["session_id"],
            coins=coins,
        ),
        key,
    )
