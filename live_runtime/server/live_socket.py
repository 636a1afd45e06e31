"""`/v1/sessions/{id}/live`: a viewer watches a session over a WebSocket.

Joining and leaving are telemetry events (the viewer count meters delivery); what the session's
operations push (gifts with their split, hosts, pinned products, the end) reaches the viewer
through its bounded send queue (rooms.py).
"""

from __future__ import annotations

import asyncio
from functools import partial

from starlette.websockets import WebSocket

from live_runtime.ledger import sessions
from live_runtime.server.context import runtime_of
from live_runtime.server.inputs import BadRequest
from live_runtime.server.rooms import Viewer, send_loop


async def live(socket: WebSocket) -> None:
    runtime = runtime_of(socket)
    session_id = socket.path_params["session_id"]
    try:
        viewer_id = runtime.auth.principal(socket).id
    except BadRequest:
        await socket.close(4401, "send Authorization: Bearer <token>")
        return
    room = runtime.rooms.get(session_id)
    if room is None:
        await socket.close(4404, f"session {session_id} is not live")
        return
    await socket.accept()
    state = await runtime.writer.run(partial(sessions.get_session, session_id=session_id))
    await runtime.run(_viewer_event("viewer_joined", session_id, viewer_id))
    viewer = Viewer(viewer_id, socket)
    room.join(viewer)
    await socket.send_json({"type": "state", **state.body, "viewers": len(room.viewers)})
    room.push(room.viewer_count())
    sender = asyncio.create_task(send_loop(viewer))
    receiver = asyncio.create_task(_until_disconnect(socket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sender.cancel()
        receiver.cancel()
        room.leave(viewer)
        room.push(room.viewer_count())
        await runtime.writer.run(_viewer_event("viewer_left", session_id, viewer_id))


def _viewer_event(event_type: str, session_id: str, user_id: str):
    return partial(
        sessions.viewer_event, event_type=event_type, session_id=session_id, user_id=user_id
    )


async def _until_disconnect(socket: WebSocket) -> None:
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass
