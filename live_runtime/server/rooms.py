"""Who is watching each live session, and the WebSocket push to them.

Viewers are connections, so they live in memory: a restart drops them, as it drops their
sockets. Each viewer has a bounded send queue; one too slow to drain it is disconnected
rather than slowing the room down. An account may hold a few sockets on one session (a second
tab, a reconnect before the old socket is gone) but is one viewer: it counts once in the
viewer count and in the metered viewer seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

SEND_QUEUE = 1_000
SLOW_CONSUMER = 4008  # WebSocket close code: the viewer could not keep up
SIGNED_OUT = 4401  # WebSocket close code: the socket's token was revoked
SOCKETS_PER_ACCOUNT = 3  # open sockets one account may hold on one session


@dataclass(eq=False)
class Viewer:
    user_id: str
    socket: WebSocket
    token_hash: str = ""
    outbox: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    too_slow: bool = False
    signed_out: bool = False


@dataclass
class Room:
    session_id: str
    viewers: set[Viewer] = field(default_factory=set)  # the sockets pushed to
    watching: Counter = field(default_factory=Counter)  # account -> its sockets in `viewers`
    sockets: Counter = field(default_factory=Counter)  # account -> its sockets, until closed
    viewer_seconds: float = 0.0  # watched since the last usage report
    advanced_at: float = field(default_factory=time.time)
    closed: bool = False

    def advance(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.viewer_seconds += len(self.watching) * max(0.0, now - self.advanced_at)
        self.advanced_at = now

    def admit(self, user_id: str) -> bool | None:
        """Counts a new socket of the account until `release`: None past SOCKETS_PER_ACCOUNT,
        else whether it is the account's first (the account joins the session)."""
        if self.sockets[user_id] >= SOCKETS_PER_ACCOUNT:
            return None
        self.sockets[user_id] += 1
        return self.sockets[user_id] == 1

    def release(self, user_id: str) -> bool:
        """The end of an admitted socket: whether it was the account's last (it left)."""
        self.sockets[user_id] -= 1
        if self.sockets[user_id] > 0:
            return False
        del self.sockets[user_id]
        return True

    def take_viewer_seconds(self) -> float:
        """Viewer seconds since the last report, for the next `media_usage`."""
        self.advance()
        seconds, self.viewer_seconds = self.viewer_seconds, 0.0
        return seconds

    def join(self, viewer: Viewer) -> None:
        self.advance()
        self.viewers.add(viewer)
        self.watching[viewer.user_id] += 1
        if self.closed:  # ended while this viewer connected: closed after the state (1000)
            viewer.outbox.put_nowait(None)

    def leave(self, viewer: Viewer) -> None:
        if viewer not in self.viewers:
            return
        self.advance()
        self.viewers.remove(viewer)
        self.watching[viewer.user_id] -= 1
        if self.watching[viewer.user_id] == 0:
            del self.watching[viewer.user_id]

    def push(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        for viewer in list(self.viewers):
            try:
                viewer.outbox.put_nowait(text)
            except asyncio.QueueFull:
                viewer.too_slow = True
                self.leave(viewer)

    def close(self) -> None:
        """Ends the room: each viewer's socket closes once its queue is sent."""
        self.closed = True
        for viewer in list(self.viewers):
            with contextlib.suppress(asyncio.QueueFull):
                viewer.outbox.put_nowait(None)

    def sign_out(self, user_id: str, token_hash: str | None) -> None:
        """Closes the sockets opened with a revoked token (any of the account's if None)."""
        for viewer in list(self.viewers):
            if viewer.user_id == user_id and token_hash in (None, viewer.token_hash):
                viewer.signed_out = True
                with contextlib.suppress(asyncio.QueueFull):  # a full queue closes it anyway
                    viewer.outbox.put_nowait(None)

    def viewer_count(self) -> dict[str, Any]:
        """The accounts watching, each once however many sockets it has open."""
        return {"type": "viewers", "count": len(self.watching)}


async def send_loop(viewer: Viewer) -> None:
    """Drains one viewer's queue into their socket, until the room closes or they fall behind."""
    while not viewer.too_slow:
        text = await viewer.outbox.get()
        if text is None:
            break
        await viewer.socket.send_text(text)
    with contextlib.suppress(Exception):
        if viewer.too_slow:
            await viewer.socket.close(SLOW_CONSUMER, "too slow to keep up")
        elif viewer.signed_out:
            await viewer.socket.close(SIGNED_OUT, "the token was revoked")
        else:
            await viewer.socket.close()


class Rooms:
    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def open(self, session_id: str) -> Room:
        return self._rooms.setdefault(session_id, Room(session_id))

    def get(self, session_id: str) -> Room | None:
        return self._rooms.get(session_id)

    def close(self, session_id: str) -> None:
        room = self._rooms.pop(session_id, None)
        if room is not None:
            room.close()

    def __iter__(self):
        return iter(list(self._rooms.values()))

    def sign_out(self, user_id: str, token_hash: str | None = None) -> None:
        for room in self:
            room.sign_out(user_id, token_hash)

    def push(self, session_id: str, message: dict[str, Any]) -> None:
        room = self._rooms.get(session_id)
        if room is not None:
            room.push(message)
