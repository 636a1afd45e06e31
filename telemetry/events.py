"""The telemetry event model (docs/telemetry.md, schema version 1), defined once.

The simulator writes events from this model and ingest builds its warehouse tables and its
validation from it, so producer and consumer cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SCHEMA_VERSION = 1

FieldKind = Literal[
    "string",  # JSON string
    "nullable_string",  # JSON string or null
    "int",  # JSON integer (money, counts, bytes)
    "number",  # JSON number (seconds of usage)
    "time",  # RFC 3339 UTC string, microseconds
    "date",  # YYYY-MM-DD string
    "strings",  # list of strings
    "splits",  # list of {creator_id, share_minor}
]


@dataclass(frozen=True)
class Field:
    name: str
    kind: FieldKind
    allowed: frozenset[str] | None = None  # closed vocabulary, for enum-like strings

    @property
    def is_money(self) -> bool:
        return self.name.endswith("_minor")


def _enum(*values: str) -> frozenset[str]:
    return frozenset(values)


ENVELOPE: tuple[Field, ...] = (
    Field("event_id", "string"),
    Field("event_type", "string"),
    Field("schema_version", "int"),
    Field("occurred_at", "time"),
    Field("source", "string"),
)

CHANNELS = _enum("web", "ios", "android")
SESSION_END_REASONS = _enum("host_ended", "timeout", "error")
REVERSAL_REASONS = _enum("refund", "dispute")  # the payment provider's refund, a chargeback
GIFT_FAILURE_REASONS = _enum(
    "insufficient_balance", "session_closed", "rejected", "internal_error", "timeout"
)

EVENT_FIELDS: dict[str, tuple[Field, ...]] = {
    "session_started": (
        Field("session_id", "string"),
        Field("creator_ids", "strings"),
        Field("region", "string"),
        Field("quality", "string"),
    ),
    "host_joined": (Field("session_id", "string"), Field("creator_id", "string")),
    "host_left": (Field("session_id", "string"), Field("creator_id", "string")),
    "viewer_joined": (Field("session_id", "string"), Field("user_id", "string")),
    "viewer_left": (Field("session_id", "string"), Field("user_id", "string")),
    "session_ended": (
        Field("session_id", "string"),
        Field("reason", "string", SESSION_END_REASONS),
    ),
    "media_usage": (
        Field("session_id", "string"),
        Field("interval_start", "time"),
        Field("interval_end", "time"),
        Field("publisher_seconds", "number"),
        Field("viewer_seconds", "number"),
        Field("transcode_seconds", "number"),
        Field("relay_seconds", "number"),
        Field("egress_bytes", "int"),
        Field("recording_bytes", "int"),
    ),
    "coins_purchased": (
        Field("purchase_id", "string"),
        Field("user_id", "string"),
        Field("coins", "int"),
        Field("amount_minor", "int"),
        Field("currency", "string"),
        Field("channel", "string", CHANNELS),
        Field("payment_fee_minor", "int"),
        Field("store_fee_minor", "int"),
    ),
    "coins_refunded": (
        Field("purchase_id", "string"),
        Field("user_id", "string"),
        Field("refund_minor", "int"),
        Field("currency", "string"),
        Field("channel", "string", CHANNELS),
        Field("store_fee_returned_minor", "int"),
        Field("coins_taken_back", "int"),
        Field("reason", "string", REVERSAL_REASONS),
    ),
    "gift_sent": (
        Field("gift_id", "string"),
        Field("session_id", "string"),
        Field("sender_id", "string"),
        Field("coins", "int"),
        Field("value_minor", "int"),
        Field("currency", "string"),
        Field("splits", "splits"),
        Field("platform_fee_minor", "int"),
    ),
    "gift_failed": (
        Field("gift_id", "string"),
        Field("session_id", "string"),
        Field("sender_id", "string"),
        Field("reason", "string", GIFT_FAILURE_REASONS),
    ),
    "order_paid": (
        Field("order_id", "string"),
        Field("session_id", "nullable_string"),
        Field("creator_id", "string"),
        Field("product_id", "string"),
        Field("quantity", "int"),
        Field("gross_minor", "int"),
        Field("currency", "string"),
        Field("payment_fee_minor", "int"),
        Field("commission_minor", "int"),
        Field("creator_net_minor", "int"),
    ),
    "order_refunded": (
        Field("order_id", "string"),
        Field("refund_minor", "int"),
        Field("reason", "string"),
    ),
    "checkout_failed": (
        Field("order_id", "string"),
        Field("session_id", "string"),
        Field("creator_id", "string"),
        Field("reason", "string"),
    ),
    "payout_issued": (
        Field("payout_id", "string"),
        Field("creator_id", "string"),
        Field("amount_minor", "int"),
        Field("currency", "string"),
        Field("period_start", "date"),
        Field("period_end", "date"),
    ),
}

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_FIELDS)

# ISO 4217 codes the platform may see, with the number of decimals of their minor unit; an
# event in any other currency is quarantined.
_TWO_DECIMALS = (
    "USD EUR GBP CNY INR IDR BRL MXN CAD AUD CHF SEK NOK DKK PLN TRY ZAR SGD HKD TWD THB "
    "PHP MYR AED SAR NZD CZK HUF ILS ARS COP PEN"
)
_NO_DECIMALS = "JPY KRW VND CLP"
MINOR_UNIT_DIGITS: dict[str, int] = {
    **{code: 2 for code in _TWO_DECIMALS.split()},
    **{code: 0 for code in _NO_DECIMALS.split()},
}
CURRENCIES = frozenset(MINOR_UNIT_DIGITS)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
