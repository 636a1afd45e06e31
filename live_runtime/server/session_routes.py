"""Live sessions: go live, read one, co-hosts, split weights, pin a product, end it."""

from __future__ import annotations

import json
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from live_runtime.ledger import commerce, sessions
from live_runtime.server import inputs
from live_runtime.server.context import caller, runtime_of


async def start_session(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    body, _ = await inputs.json_body(request)
    qualities = frozenset(runtime.policy.qualities)
    response = await runtime.run(
        partial(
            sessions.start_session,
            policy=runtime.policy,
            creator_id=creator.id,
            region=inputs.text(body, "region", default="us-east"),
            quality=inputs.text(body, "quality", default="720p", choices=qualities),
            record=inputs.flag(body, "record"),
        )
    )
    if response.status_code == 201:
        runtime.rooms.open(json.loads(response.body)["session_id"])
    return response


async def get_session(request: Request) -> Response:
    caller(request)
    session_id = request.path_params["session_id"]
    return await runtime_of(request).read(partial(sessions.get_session, session_id=session_id))


async def invite(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    body, _ = await inputs.json_body(request)
    return await runtime.run(
        partial(
            sessions.invite_cohost,
            policy=runtime.policy,
            owner_id=creator.id,
            session_id=request.path_params["session_id"],
            creator_id=inputs.text(body, "creator_id"),
            weight=inputs.integer(body, "weight", 1, inputs.MAX_WEIGHT) if "weight" in body else 1,
        )
    )


async def join(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    body, _ = await inputs.json_body(request)
    return await runtime.run(
        partial(
            sessions.join_session,
            policy=runtime.policy,
            creator_id=creator.id,
            session_id=request.path_params["session_id"],
            accept_split=inputs.optional_text(body, "accept_split"),
        )
    )


async def leave(request: Request) -> Response:
    return await _presence(request, sessions.leave_session)


async def _presence(request: Request, operation) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    return await runtime.run(
        partial(
            operation,
            policy=runtime.policy,
            creator_id=creator.id,
            session_id=request.path_params["session_id"],
        )
    )


async def split(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    body, _ = await inputs.json_body(request)
    return await runtime.run(
        partial(
            sessions.set_split,
            owner_id=creator.id,
            session_id=request.path_params["session_id"],
            weights=inputs.weights(body, "weights"),
        )
    )


async def pin(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    body, _ = await inputs.json_body(request)
    return await runtime.run(
        partial(
            commerce.pin_product,
            creator_id=creator.id,
            session_id=request.path_params["session_id"],
            product_id=inputs.text(body, "product_id"),
        )
    )


async def end(request: Request) -> Response:
    runtime, creator = runtime_of(request), caller(request, "creator")
    session_id = request.path_params["session_id"]
    room = runtime.rooms.get(session_id)
    seconds = room.take_viewer_seconds() if room else 0.0
    response = await runtime.run(
        partial(
            sessions.end_session,
            policy=runtime.policy,
            creator_id=creator.id,
            session_id=session_id,
            viewer_seconds=seconds,
        )
    )
    if response.status_code == 200:
        runtime.rooms.close(session_id)
    elif room is not None:
        room.viewer_seconds += seconds  # not ended: those seconds are still to report
    return response
