"""Payments: the provider's webhook, a payer's view of a payment, and the sandbox provider.

Only a notification whose signature checks out reaches the ledger; every other one is refused
with 400 and logged, and changes nothing. Verified ones are logged with their outcome.
"""

from __future__ import annotations

import logging
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from live_runtime.ledger import payments
from live_runtime.payments.signing import HEADER, InvalidNotification, verify
from live_runtime.server import inputs
from live_runtime.server.context import caller, runtime_of

log = logging.getLogger(__name__)
MAX_NOTIFICATION_BYTES = 64 * 1024


async def webhook(request: Request) -> Response:
    runtime = runtime_of(request)
    raw = await inputs.raw_body(request, MAX_NOTIFICATION_BYTES)
    try:
        event = verify(raw, request.headers.get(HEADER), runtime.payments.secret)
    except InvalidNotification as exc:
        log.warning("payment notification refused: %s", exc)
        return JSONResponse({"error": "invalid_signature", "message": str(exc)}, 400)
    if not all(isinstance(event.get(k), str) and 0 < len(event[k]) <= 200 for k in ("id", "type")):
        log.warning("payment notification refused: no event id or type")
        message = "a notification needs an event id and type (strings of 1 to 200 chars)"
        return JSONResponse({"error": "invalid_event", "message": message}, 400)
    outcome = await runtime.writer.run(
        partial(payments.apply_notification, policy=runtime.policy, event=event)
    )
    log.info(
        "payment notification %s (%s): %s %s",
        str(event.get("id"))[:80], str(event.get("type"))[:80], outcome.status, outcome.body,
    )  # fmt: skip
    return runtime.respond(outcome)


async def payment(request: Request) -> Response:
    runtime, principal = runtime_of(request), caller(request)
    return await runtime.read(
        partial(
            payments.payment_view,
            principal_id=principal.id,
            payment_id=request.path_params["payment_id"],
        )
    )


# The sandbox provider's own API: what a payer does on a real provider's page or with their bank.

SANDBOX_ACTIONS = {
    "confirm": ("pending", payments.SUCCEEDED),
    "decline": ("pending", payments.FAILED),
    "refund": ("succeeded", payments.REFUNDED),
    "dispute": ("succeeded", payments.DISPUTED),
}


async def sandbox(request: Request) -> Response:
    """Confirms, declines, refunds or disputes a payment the caller holds the secret of, by
    sending the runtime the signed notification a real provider would send."""
    runtime = runtime_of(request)
    body, _ = await inputs.json_body(request)
    action = request.path_params["action"]
    if action not in SANDBOX_ACTIONS:
        message = f"no sandbox action {action[:40]!r}: {sorted(SANDBOX_ACTIONS)}"
        return JSONResponse({"error": "not_found", "message": message}, 404)
    wanted, event_type = SANDBOX_ACTIONS[action]
    found = await runtime.reader.run(
        partial(
            payments.check_client_secret,
            payment_id=request.path_params["payment_id"],
            client_secret=inputs.text(body, "client_secret"),
        )
    )
    if found.status != 200:
        return runtime.respond(found)
    if found.body["status"] != wanted:
        message = f"the payment is {found.body['status']}; {request.path_params['action']} "
        return JSONResponse({"error": "invalid_state", "message": message + f"needs {wanted}"}, 409)
    delivered = await runtime.payments.notify(event_type, found.body)
    if delivered.status_code != 200:  # the runtime's own refusal, passed on as it is
        return JSONResponse(delivered.json(), delivered.status_code)
    return JSONResponse({"event_type": event_type, "notification": delivered.json()})
