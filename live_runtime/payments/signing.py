"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the endpoint secret>`. Verification is the `stripe` library's own; signing
exists only for the sandbox provider, which must produce what Stripe would send."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import stripe

HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300  # an older signature is refused, so a captured request cannot be replayed


class InvalidNotification(ValueError):
    """Unsigned, wrongly signed, stale or unreadable: nothing is applied."""


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(payload: bytes, header: str | None, secret: str) -> dict[str, Any]:
    """The notification's event, once its signature and age check out."""
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), header, secret, TOLERANCE_SECONDS
        )
    except UnicodeDecodeError as exc:
        raise InvalidNotification("the body is not UTF-8") from exc
    except stripe.SignatureVerificationError as exc:
        raise InvalidNotification(str(exc).split(". ")[0].rstrip(".")) from exc
    try:
        event = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise InvalidNotification(f"the body is not JSON: {exc}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise InvalidNotification("the body is not an event object")
    return event
