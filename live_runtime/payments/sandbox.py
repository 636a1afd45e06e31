"""The sandbox payment provider: it plays the card processor and the app stores offline.

It sends what a real provider sends — Stripe-shaped events (`payment_intent.succeeded`,
`payment_intent.payment_failed`, `charge.refunded`, `charge.dispute.created`) signed with the
endpoint secret — to the runtime's own webhook route, through the whole HTTP application
(routing, size limit, signature check), in process. It answers once the runtime has answered
the notification, so a client can go on at once; a real provider notifies later, and clients
poll `GET /v1/payments/{id}`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx

from live_runtime.payments.signing import HEADER, sign

WEBHOOK_PATH = "/v1/webhooks/payments"


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class Sandbox:
    """Signs and delivers notifications about payments to `app` (an ASGI application)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.app: Any = None  # set once the application exists

    async def notify(
        self, event_type: str, payment: dict[str, Any], **extra: Any
    ) -> httpx.Response:
        """One signed event about `payment` ({payment_id, amount_minor, currency})."""
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": _object(event_type, payment, extra)},
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            return await client.post(
                WEBHOOK_PATH,
                content=body,
                headers={HEADER: sign(body, self.secret), "content-type": "application/json"},
            )


def _object(event_type: str, payment: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The event's `data.object`, shaped as Stripe's payment intent, charge or dispute."""
    amount, currency = payment["amount_minor"], payment["currency"].lower()
    intent = payment["payment_id"]
    if event_type.startswith("payment_intent."):
        status = "succeeded" if event_type.endswith("succeeded") else "requires_payment_method"
        return {"id": intent, "object": "payment_intent", "amount": amount,
                "currency": currency, "status": status}  # fmt: skip
    if event_type == "charge.refunded":
        return {"id": f"ch_{intent}", "object": "charge", "payment_intent": intent,
                "amount": amount, "amount_refunded": amount, "currency": currency,
                "refunded": True}  # fmt: skip
    return {"id": f"dp_{secrets.token_hex(8)}", "object": "dispute", "charge": f"ch_{intent}",
            "payment_intent": intent, "amount": amount, "currency": currency,
            "reason": extra.get("reason", "fraudulent"), "status": "needs_response"}  # fmt: skip
