"""The service itself: a health probe and the OpenAPI description."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from live_runtime.server.context import runtime_of

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


async def openapi(request: Request) -> Response:
    return Response(OPENAPI.read_bytes(), media_type="application/json")
