"""Creator-led selling: products, checkout (a pending payment), refunds and payouts."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from live_runtime.ledger import commerce, payments
from live_runtime.server import inputs
from live_runtime.server.context import caller, idempotent_body, runtime_of


async def create_product(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    body, _ = await inputs.json_body(request)
    return await runtime.run(
        partial(
            commerce.create_product,
            policy=runtime.policy,
            creator_id=creator.id,
            name=inputs.text(body, "name"),
            price=inputs.integer(body, "price_minor", low=-inputs.INT64_MAX),
        )
    )


async def products(request: Request) -> Response:
    caller(request)
    limit, after = inputs.page(request)
    return await runtime_of(request).read(
        partial(
            commerce.list_products,
            creator_id=request.path_params["creator_id"],
            limit=limit,
            after=after,
        )
    )


async def order(request: Request) -> Response:
    runtime, user = runtime_of(request), caller(request, "user")
    body, key = await idempotent_body(request, user)
    return await runtime.run(
        partial(
            payments.open_order,
            policy=runtime.policy,
            buyer_id=user.id,
            product_id=inputs.text(body, "product_id"),
            quantity=inputs.integer(body, "quantity", low=-inputs.INT64_MAX),
            session_id=inputs.optional_text(body, "session_id"),
        ),
        key,
    )


async def refund(request: Request) -> Response:
    """The seller's refund: the provider returns the buyer's money and its notification
    reverses the order (with the sandbox, before this answers)."""
    runtime, creator = runtime_of(request), caller(request, "creator")
    order_id = request.path_params["order_id"]
    found = await runtime.reader.run(
        partial(commerce.refundable_payment, creator_id=creator.id, order_id=order_id)
    )
    if found.status != 200:
        return runtime.respond(found)
    delivered = await runtime.payments.notify(payments.REFUNDED, found.body)
    if delivered.status_code != 200:
        return JSONResponse(delivered.json(), delivered.status_code)
    return JSONResponse(
        {
            "order_id": order_id,
            "payment_id": found.body["payment_id"],
            "refund_minor": found.body["amount_minor"],
            "status": "refunded",
        }  # fmt: skip
    )


async def payout(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    _, key = await idempotent_body(request, creator)
    return await runtime.run(
        partial(commerce.payout, policy=runtime.policy, creator_id=creator.id), key
    )
