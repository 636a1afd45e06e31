"""The service itself: a health probe and the OpenAPI description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from live_runtime.policy import Policy
from live_runtime.server.context import runtime_of

# The description of the shipped policy; `described` fills in the running policy's values.
OPENAPI = Path(__file__).with_name("openapi.json")


async def health(request: Request) -> Response:
    runtime = runtime_of(request)
    return JSONResponse(
        {
            "status": "ok",
            "commits": runtime.writer.commits,
            "operations": runtime.writer.operations,
            "events_relayed": runtime.relay.relayed,
            "live_sessions": sum(1 for _ in runtime.rooms),
        }
    )


def described(policy: Policy) -> dict[str, Any]:
    """The API description exact for `policy`: what it accepts depends on the policy (coin
    packs, qualities, the largest gift, price and quantity), so those come from it. Under the
    shipped policy this is openapi.json as it is."""
    spec = json.loads(OPENAPI.read_text())
    fields = {name: s.get("properties", {}) for name, s in spec["components"]["schemas"].items()}
    fields["PurchaseRequest"]["coins"]["enum"] = sorted(policy.coin_packs)
    fields["GiftRequest"]["coins"]["maximum"] = policy.max_gift_coins
    quality = fields["SessionRequest"]["quality"]
    quality["enum"] = list(policy.qualities)
    if quality.get("default") not in policy.qualities:  # then a session must name its quality
        quality.pop("default", None)
    fields["ProductRequest"]["price_minor"]["maximum"] = policy.max_price_minor
    fields["OrderRequest"]["quantity"]["maximum"] = policy.max_quantity
    return spec


def served(policy: Policy) -> bytes:
    """`described(policy)` as served: laid out as openapi.json is."""
    return (json.dumps(described(policy), indent=2, ensure_ascii=False) + "\n").encode()


async def openapi(request: Request) -> Response:
    state = request.app.state  # an app runs one policy: made once, at the first request
    if getattr(state, "openapi", None) is None:
        state.openapi = served(runtime_of(request).policy)
    return Response(state.openapi, media_type="application/json")
