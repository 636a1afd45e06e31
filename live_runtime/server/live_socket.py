"""`/v1/sessions/{id}/live`: a viewer watches a session over a WebSocket.

Joining and leaving are telemetry events (the viewer count meters delivery); what the session's
operations push (gifts with their split, hosts, pinned products, the end) reaches the viewer
through its bounded send queue (rooms.py).

An account is one viewer however many sockets it opens (at most SOCKETS_PER_ACCOUNT on one
session): its first socket records `viewer_joined`, its last `viewer_left`. Client messages are
read and ignored, within limits: MAX_MESSAGE_BYTES each (uvicorn's `ws_max_size`, set by
`creator-econ runtime serve`; past it the server closes with 1009) and a few a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial

from starlette.websockets import WebSocket, WebSocketDisconnect

from live_runtime.ledger import sessions
from live_runtime.server.context import runtime_of
from live_runtime.server.inputs import BadRequest
from live_runtime.server.rooms import SOCKETS_PER_ACCOUNT, Viewer, send_loop
from live_runtime.server.runtime import Runtime

MAX_MESSAGE_BYTES = 4096  # one client message
MESSAGE_BURST = 10  # client messages at once, then MESSAGES_PER_SECOND; past them, 1008
MESSAGES_PER_SECOND = 1.0
POLICY_VIOLATION = 1008  # WebSocket close code: too many client messages
TOO_MANY_SOCKETS = 4029  # WebSocket close code: the account has SOCKETS_PER_ACCOUNT open


async def live(socket: WebSocket) -> None:
    runtime = runtime_of(socket)
    session_id = socket.path_params["session_id"]
    try:
        me = runtime.auth.caller(socket)
        viewer_id = me.principal.id
    except BadRequest:
        await socket.close(4401, "send Authorization: Bearer <token>")
        return
    room = runtime.rooms.get(session_id)
    if room is None:
        await socket.close(4404, f"session {session_id} is not live")
        return
    first = room.admit(viewer_id)
    if first is None:
        reason = f"an account may watch a session on at most {SOCKETS_PER_ACCOUNT} sockets"
        with contextlib.suppress(WebSocketDisconnect):  # it may be gone already
            await socket.accept()
            await socket.close(TOO_MANY_SOCKETS, reason)
        return
    # Submitted as the account's socket count changes, so its joined and left alternate.
    joined = _record(runtime, "viewer_joined", session_id, viewer_id) if first else None
    viewer = Viewer(viewer_id, socket, me.token_hash)
    try:
        await socket.accept()
        state = await runtime.reader.run(partial(sessions.get_session, session_id=session_id))
        if joined is not None:
            await joined
        room.join(viewer)
        await socket.send_json({"type": "state", **state.body, "viewers": len(room.watching)})
        room.push(room.viewer_count())
        sender = asyncio.create_task(send_loop(viewer))
        receiver = asyncio.create_task(_until_disconnect(socket))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            receiver.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
    except WebSocketDisconnect:  # gone before it was sent the state: nothing more to do
        pass
    finally:
        room.leave(viewer)  # if still there: a viewer too slow to keep up has been dropped
        room.push(room.viewer_count())
        if room.release(viewer_id):
            await _record(runtime, "viewer_left", session_id, viewer_id)


def _record(runtime: Runtime, event_type: str, session_id: str, user_id: str) -> asyncio.Future:
    """Submits the viewer event now (not when first awaited), so events keep their order."""
    operation = partial(
        sessions.viewer_event, event_type=event_type, session_id=session_id, user_id=user_id
    )
    return asyncio.wrap_future(runtime.writer.submit(operation))


async def _until_disconnect(socket: WebSocket) -> None:
    """Reads (and ignores) client messages until the client goes; too many closes it, 1008."""
    allowance, last = float(MESSAGE_BURST), time.monotonic()
    while (await socket.receive())["type"] != "websocket.disconnect":
        now = time.monotonic()
        allowance = min(MESSAGE_BURST, allowance + (now - last) * MESSAGES_PER_SECOND)
        last = now
        if allowance < 1:
            limit = f"{MESSAGE_BURST} at once, then {MESSAGES_PER_SECOND:g} a second"
            await socket.close(POLICY_VIOLATION, f"too many client messages (limit: {limit})")
            return
        allowance -= 1
