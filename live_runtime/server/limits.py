"""Bounds on what a client's connection may hold: the request head, and the time it and the body
take to arrive. (The body's size is bounded by `inputs.MAX_BODY_BYTES`, WebSocket messages by
`live_socket`, and open connections by uvicorn's `limit_concurrency`.)

uvicorn reads a request head of any size, for as long as the client takes, and waits for a body
forever: `BoundedHttp` is its HTTP/1.1 protocol (httptools) with the head bounded in size and
time, and `RequestDeadline` is an ASGI middleware that bounds the time the body takes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_HEAD_BYTES = 8 * 1024  # request line and headers; a WebSocket handshake line stays legal
MAX_HEADERS = 100  # fields in one head (the WebSocket handshake parser allows 128)
REQUEST_TIMEOUT = 10.0  # seconds for the head to arrive, and then as many for the body
KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this


class _Refused(Exception):
    """Raised in a parser callback to stop the parser once a refusal is on its way."""


class BoundedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a bound on each request head.

    A head larger than MAX_HEAD_BYTES or MAX_HEADERS gets 431; a head not complete within
    `head_timeout` seconds of the connection opening (or, on a kept-alive connection, of its
    first byte) gets 408, or is just closed if not a byte of it came. A request or WebSocket
    handshake past the connection limit (`limit_concurrency`) gets 503. Each answer is a JSON
    error and closes the connection.
    """

    head_timeout = REQUEST_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_started = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # after a refusal, nothing more is read
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # the parser stopped for our refusal, which is answered already
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._head_started = 0, True
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # name: value CRLF
        if len(self.headers) >= MAX_HEADERS:
            self._refuse(431, "headers_too_large", f"a request may have {MAX_HEADERS} headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_started = False
        limit = self.limit_concurrency  # uvicorn's own check skips WebSocket handshakes
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            self._refuse(503, "server_busy", "the server is at its connection limit; retry")
            raise _Refused
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            message = f"a request's line and headers are limited to {MAX_HEAD_BYTES} bytes"
            self._refuse(431, "headers_too_large", message)
            raise _Refused

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        if not self._head_started:  # not a byte of a request: nothing to answer
            self._refused = True
            self.transport.close()
            return
        message = f"the request's headers did not arrive within {self.head_timeout:g} s"
        self._refuse(408, "request_timeout", message)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answers `status` and closes the connection; nothing more is read from it."""
        self._refused = True
        self._stop_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # an earlier request's answer is on its way: after it
        else:
            body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def bounded_http(head_timeout: float = REQUEST_TIMEOUT) -> type[BoundedHttp]:
    """The protocol class for uvicorn's `http` setting, with this head timeout."""
    return type("BoundedHttp", (BoundedHttp,), {"head_timeout": head_timeout})


class BodyTimedOut(Exception):
    pass


class RequestDeadline:
    """ASGI middleware: a request's body must arrive within `seconds` of its head, or 408.

    The deadline holds while the app waits for the body. An answer sent before the whole body
    came (the app refused it, or had no use for it) closes the connection, so no client keeps
    one open by trickling a body nobody reads.
    """

    def __init__(self, app: ASGIApp, seconds: float = REQUEST_TIMEOUT) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_done = not _has_body(scope)
        started = False

        async def receive_in_time() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_closing)
        except BodyTimedOut:
            if started:  # cannot happen here: every handler reads its body before answering
                raise
            timeout = {
                "error": "request_timeout",
                "message": f"the request's body did not arrive within {self.seconds:g} s",
            }
            await JSONResponse(timeout, 408, headers={"connection": "close"})(scope, receive, send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
