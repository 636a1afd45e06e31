"""Hand-written telemetry events, for tests whose expected amounts are worked out by hand.

Each builder returns one event as a dict: the envelope, then the fields of its type in the order
the runtime writes them. Amounts are in USD minor units. `n` is the event's number: its
`event_id` is the UUID whose integer is `n`, so the same `n` is the same event. `at` is when it
occurred, as text in `TIME_FORMAT` ("2026-10-01T10:00:00.000000Z") or a datetime in UTC.
`source` is the event's `source` field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from telemetry.events import TIME_FORMAT
from telemetry.files import TelemetryWriter

SOURCE = "hand"


def event(
    n: int, event_type: str, at: str | datetime, source: str = SOURCE, **fields: Any
) -> dict[str, Any]:
    """The envelope of event `n`, followed by `fields`."""
    return {
        "event_id": str(uuid.UUID(int=n)),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": at if isinstance(at, str) else at.strftime(TIME_FORMAT),
        "source": source,
        **fields,
    }


def gift(
    n: int,
    at: str | datetime,
    value: int,
    shares: dict[str, int] | None = None,
    *,
    share: int | None = None,
    coins: Any = None,
    gift_id: str | None = None,
    session_id: str = "s1",
    sender_id: str = "u1",
    source: str = SOURCE,
) -> dict[str, Any]:
    """A gift worth `value`, split by `shares` (creator_id: share) or, with `share`, all to c1.

    The platform fee is what the shares leave of `value`. `coins` defaults to `value` (any
    value, to write an invalid one); `gift_id` defaults to f"g{n}".
    """
    if shares is None:
        assert share is not None, "give `shares` or `share`"
        shares = {"c1": share}
    return event(
        n,
        "gift_sent",
        at,
        source,
        gift_id=f"g{n}" if gift_id is None else gift_id,
        session_id=session_id,
        sender_id=sender_id,
        coins=value if coins is None else coins,
        value_minor=value,
        currency="USD",
        splits=[{"creator_id": c, "share_minor": s} for c, s in shares.items()],
        platform_fee_minor=value - sum(shares.values()),
    )


def order(
    n: int,
    at: str | datetime,
    gross: int,
    fee: int | None = None,
    commission: int | None = None,
    *,
    order_id: str | None = None,
    creator: str = "c1",
    session_id: str | None = None,
    source: str = SOURCE,
) -> dict[str, Any]:
    """An order of one p1 for `gross`, paid to `creator`, outside any session by default.

    `fee` is the payment fee, 3% of `gross` by default; `commission` is 10% of `gross` by
    default (both rounded down); the creator's net is the rest. `order_id` defaults to f"o{n}".
    """
    fee = gross * 3 // 100 if fee is None else fee
    commission = gross // 10 if commission is None else commission
    return event(
        n,
        "order_paid",
        at,
        source,
        order_id=f"o{n}" if order_id is None else order_id,
        session_id=session_id,
        creator_id=creator,
        product_id="p1",
        quantity=1,
        gross_minor=gross,
        currency="USD",
        payment_fee_minor=fee,
        commission_minor=commission,
        creator_net_minor=gross - fee - commission,
    )


def refund(
    n: int, at: str | datetime, order_id: str, amount: int, source: str = SOURCE
) -> dict[str, Any]:
    """A refund of `amount` of order `order_id`, at the customer's request."""
    return event(
        n,
        "order_refunded",
        at,
        source,
        order_id=order_id,
        refund_minor=amount,
        reason="customer_request",
    )


def session_started(
    n: int,
    at: str | datetime,
    creator_ids: list[str],
    session_id: str = "s1",
    source: str = SOURCE,
) -> dict[str, Any]:
    """A live session hosted by `creator_ids`, in region eu at quality hd."""
    return event(
        n,
        "session_started",
        at,
        source,
        session_id=session_id,
        creator_ids=creator_ids,
        region="eu",
        quality="hd",
    )


def session_ended(
    n: int, at: str | datetime, session_id: str = "s1", source: str = SOURCE
) -> dict[str, Any]:
    """The host ends the session."""
    return event(n, "session_ended", at, source, session_id=session_id, reason="host_ended")


def usage(
    n: int,
    start: str,
    end: str,
    *,
    publisher_seconds: int,
    viewer_seconds: int,
    transcode_seconds: int,
    egress_bytes: int,
    relay_seconds: int = 0,
    recording_bytes: int = 0,
    session_id: str = "s1",
    source: str = SOURCE,
) -> dict[str, Any]:
    """A media_usage interval from `start` to `end` (both `TIME_FORMAT` text); it occurs at
    `end`."""
    return event(
        n,
        "media_usage",
        end,
        source,
        session_id=session_id,
        interval_start=start,
        interval_end=end,
        publisher_seconds=publisher_seconds,
        viewer_seconds=viewer_seconds,
        transcode_seconds=transcode_seconds,
        relay_seconds=relay_seconds,
        egress_bytes=egress_bytes,
        recording_bytes=recording_bytes,
    )


def line(body: dict[str, Any]) -> str:
    """One event as the runtime writes it: compact JSON, without the newline."""
    return json.dumps(body, separators=(",", ":"))


def seal(telemetry_dir: Path, source: str, lines: Iterable[dict[str, Any] | str]) -> Path:
    """One sealed file for `source`, written by the runtime's telemetry writer; its path.

    `lines` are events (written with `line`) or ready lines without their newline (e.g. one
    that is not JSON).
    """
    text = "".join((x if isinstance(x, str) else line(x)) + "\n" for x in lines)
    with TelemetryWriter(telemetry_dir, source) as writer:
        writer.write(text.encode())
        sealed = writer.seal()
    assert sealed is not None
    return sealed
