"""The live WebSocket's limits against a real server: what one client may make it hold.

A client message is at most 4 KiB: a frame announcing more closes the socket (1009) as soon as
its header arrives, without waiting for (or buffering) its payload. Client messages are
ignored, and a client sending more than a burst of 10 and then one a second is closed with
1008. One account holds at most 3 sockets on a session (a further one is closed with 4029) and
is one viewer however many it holds: counted once in the viewer count and in the metered
viewer seconds, with one `viewer_joined` when its first socket opens and one `viewer_left` when
its last closes.

Servers: each test starts its own, with the shipped policy and a one-second metering interval.
When a test has passed, its fixture checks that every account's `viewer_joined` and
`viewer_left` alternate, joined first, and that the server logged no traceback. Nothing sleeps:
a test waits for a message, a close or a row in the ledger's outbox, with a deadline.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runtime_server import Api, RuntimeProcess, wait_for
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from telemetry.files import list_sealed

SHIPPED_POLICY = Path(__file__).parents[1] / "live_runtime" / "policy_default.toml"
MAX_MESSAGE_BYTES = 4096
MESSAGE_BURST = 10
SOCKETS_PER_ACCOUNT = 3
MESSAGE_TOO_BIG, POLICY_VIOLATION, TOO_MANY_SOCKETS = 1009, 1008, 4029  # close codes
SECONDS_ROUNDING = 0.0005  # each usage report rounds its viewer seconds to the millisecond


@dataclass
class Live:
    server: RuntimeProcess
    api: Api


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    """A server of the test's own, metering every second."""
    text, count = re.subn(
        r"(?m)^interval_seconds = .*$", "interval_seconds = 1", SHIPPED_POLICY.read_text()
    )
    assert count == 1
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    server = RuntimeProcess(tmp_path / "live", ["--policy", str(policy)]).start()
    failed_before = request.session.testsfailed
    test = Live(server, Api(server.url))
    try:
        yield test
    finally:
        test.api.http.close()
        server.stop()
    if request.session.testsfailed == failed_before:
        assert "Traceback" not in server.log_text()
        steps: dict[tuple[str, str], list[str]] = {}
        for event in sealed_events(server):
            if event["event_type"] in ("viewer_joined", "viewer_left"):
                steps.setdefault((event["session_id"], event["user_id"]), []).append(
                    event["event_type"]
                )
        for who, seen in steps.items():
            assert seen == ["viewer_joined", "viewer_left"] * (len(seen) // 2), (who, seen)


def sealed_events(server: RuntimeProcess) -> list[dict]:
    return [json.loads(line) for path in list_sealed(server.telemetry) for line in path.open()]


def outbox(db: Path, event_type: str, session_id: str) -> list[dict]:
    """The session's committed events of a type, from the ledger's outbox, in commit order."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT line FROM outbox WHERE event_type = ? ORDER BY seq", (event_type,)
        ).fetchall()
    return [e for e in (json.loads(line) for (line,) in rows) if e["session_id"] == session_id]


def start(api: Api, owner: dict, **settings: Any) -> str:
    response = api.call("POST", "/v1/sessions", owner, json=settings)
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def live_url(server: RuntimeProcess, session_id: str) -> str:
    return server.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/live"


def watch(live: Live, session_id: str, who: dict) -> ClientConnection:
    headers = {"Authorization": f"Bearer {who['token']}"}
    return connect(live_url(live.server, session_id), additional_headers=headers, open_timeout=10)


def receive(socket_: ClientConnection, skip: tuple[str, ...] = ("viewers",)) -> dict:
    while True:
        message = json.loads(socket_.recv(timeout=10))
        if message["type"] not in skip:
            return message


def closed_with(socket_: ClientConnection, timeout: float = 10.0) -> ConnectionClosed:
    """Reads until the server closes the socket; the closure (with the close frame received)."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as closure:  # the messages before it are skipped
        while True:
            socket_.recv(timeout=max(0.0, deadline - time.monotonic()))
    return closure.value


def until(socket_: ClientConnection, wanted: dict) -> dict:
    """Reads messages until `wanted` comes (others, such as earlier counts, come first)."""
    while (message := json.loads(socket_.recv(timeout=10))) != wanted:
        pass
    return message


def left(live: Live, session_id: str, who: dict) -> list[dict]:
    events = outbox(live.server.db, "viewer_left", session_id)
    return [e for e in events if e["user_id"] == who["id"]]


# Message size ------------------------------------------------------------------------------


class RawViewer:
    """A viewer on a plain socket, its WebSocket protocol done by `websockets`' sans-I/O client,
    so the test can send a frame's header without its payload."""

    def __init__(self, live: Live, session_id: str, who: dict) -> None:
        self.protocol = ClientProtocol(parse_uri(live_url(live.server, session_id)))
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {who['token']}"
        self.protocol.send_request(request)
        self.sock = socket.create_connection(("127.0.0.1", live.server.port), timeout=10)
        self._flush()
        while self.protocol.state is State.CONNECTING:
            self._read()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc

    def _flush(self) -> None:
        out = b"".join(self.protocol.data_to_send())
        if out:
            with suppress(OSError):
                self.sock.sendall(out)

    def _read(self) -> list[str]:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        texts = [
            e.data.decode()
            for e in self.protocol.events_received()
            if getattr(e, "opcode", None) is Opcode.TEXT
        ]
        self._flush()
        return texts

    def until_closed(self, timeout: float) -> float:
        """Reads until the server closes the connection; how long that took."""
        started = time.monotonic()
        self.sock.settimeout(timeout)
        while self.protocol.state is not State.CLOSED:
            assert time.monotonic() - started < timeout, "the server kept the socket open"
            self._read()
        self.sock.close()
        return time.monotonic() - started


def test_a_message_over_4_kib_closes_the_socket_without_waiting_for_it(live: Live):
    api = live.api
    owner, fan, other = api.account("creator"), api.account("user"), api.account("user")
    session = start(api, owner)
    # A whole 16 KiB message: the socket is closed (1009, if the close frame gets through
    # before the connection is reset on the unread rest of the message).
    with watch(live, session, fan) as whole:
        assert receive(whole)["type"] == "state"
        whole.send("x" * (16 * 1024))
        closure = closed_with(whole)
        assert closure.rcvd is None or closure.rcvd.code == MESSAGE_TOO_BIG, closure
    # Only the header of a 16 KiB frame and 100 bytes of it: closed 1009 at once, the rest of
    # the payload not waited for.
    raw = RawViewer(live, session, other)
    mask = b"\x00\x00\x00\x00"  # a masked frame (as a client must send), payload unchanged
    header = bytes([0x80 | Opcode.TEXT.value, 0x80 | 126]) + (16 * 1024).to_bytes(2, "big")
    raw.sock.sendall(header + mask + b"x" * 100)
    raw.until_closed(timeout=10)
    assert raw.protocol.close_rcvd is not None
    assert raw.protocol.close_rcvd.code == MESSAGE_TOO_BIG
    # A message of the limit is read (and ignored) like any other.
    with watch(live, session, fan) as fine:
        assert receive(fine)["type"] == "state"
        fine.send("x" * MAX_MESSAGE_BYTES)
        with watch(live, session, other):  # the server still pushes to this socket
            until(fine, {"type": "viewers", "count": 2})
    for who in (fan, other):
        wait_for(lambda who=who: left(live, session, who), "the viewers' viewer_left")


# Message rate ------------------------------------------------------------------------------


def test_a_client_sending_too_many_messages_is_closed_with_1008(live: Live):
    api = live.api
    owner, fan, other = api.account("creator"), api.account("user"), api.account("user")
    session = start(api, owner)
    with watch(live, session, fan) as chatty:
        assert receive(chatty)["type"] == "state"
        for _ in range(MESSAGE_BURST):
            chatty.send("hello")
        with watch(live, session, other):  # still open after a burst of 10
            until(chatty, {"type": "viewers", "count": 2})
        for _ in range(5 * MESSAGE_BURST):
            with suppress(ConnectionClosed):  # the server closes it on the way
                chatty.send("hello")
        closure = closed_with(chatty)
        assert closure.rcvd is not None and closure.rcvd.code == POLICY_VIOLATION, closure
    wait_for(lambda: left(live, session, fan), "the chatty viewer's viewer_left")


# Sockets per account -----------------------------------------------------------------------


def test_one_account_holds_at_most_3_sockets_and_is_one_viewer(live: Live):
    api, server = live.api, live.server
    owner, fan, other = api.account("creator"), api.account("user"), api.account("user")
    session = start(api, owner)

    def try_to_watch(stack: ExitStack) -> tuple[ClientConnection, dict] | ConnectionClosed:
        socket_ = stack.enter_context(watch(live, session, fan))
        try:
            return socket_, receive(socket_, skip=())
        except ConnectionClosed as closure:
            socket_.close()
            return closure

    with ExitStack() as stack, ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(try_to_watch, [stack] * 300))
        opened = [o for o in outcomes if not isinstance(o, ConnectionClosed)]
        refused = [o for o in outcomes if isinstance(o, ConnectionClosed)]
        assert len(opened) == SOCKETS_PER_ACCOUNT and len(refused) == 300 - SOCKETS_PER_ACCOUNT
        for closure in refused:
            assert closure.rcvd is not None and closure.rcvd.code == TOO_MANY_SOCKETS, closure
            assert str(SOCKETS_PER_ACCOUNT) in closure.rcvd.reason
        for _, state in opened:
            assert state["type"] == "state" and state["viewers"] == 1  # the account, once
        with watch(live, session, other) as second:
            assert receive(second, skip=())["viewers"] == 2  # the account and this one
            for socket_, _ in opened:
                until(socket_, {"type": "viewers", "count": 2})
    wait_for(lambda: left(live, session, fan), "the account's viewer_left")
    joined = [e for e in outbox(server.db, "viewer_joined", session) if e["user_id"] == fan["id"]]
    assert (len(joined), len(left(live, session, fan))) == (1, 1)


def test_an_account_reopening_sockets_joins_and_leaves_once(live: Live):
    """Sockets of one account overlapping in time: one joined when the first opens, one left
    when the last closes; a socket opened after that is a new visit."""
    api, server = live.api, live.server
    owner, fan = api.account("creator"), api.account("user")
    session = start(api, owner)
    with ExitStack() as stack:
        first = stack.enter_context(watch(live, session, fan))
        assert receive(first)["type"] == "state"
        second = stack.enter_context(watch(live, session, fan))
        assert receive(second)["type"] == "state"
        first.close()
        third = stack.enter_context(watch(live, session, fan))
        assert receive(third)["type"] == "state"
        second.close()
    wait_for(lambda: left(live, session, fan), "the account's viewer_left")
    with watch(live, session, fan) as again:
        assert receive(again)["type"] == "state"
    wait_for(lambda: len(left(live, session, fan)) == 2, "the second visit's viewer_left")
    events = [
        e["event_type"]
        for kind in ("viewer_joined", "viewer_left")
        for e in outbox(server.db, kind, session)
        if e["user_id"] == fan["id"]
    ]
    assert Counter(events) == {"viewer_joined": 2, "viewer_left": 2}


# Metering ----------------------------------------------------------------------------------


def test_metering_counts_an_account_once_however_many_sockets(live: Live):
    api, server = live.api, live.server
    owner, fan = api.account("creator"), api.account("user")
    session = start(api, owner, quality="1080p")

    def next_report() -> None:
        count = len(outbox(server.db, "media_usage", session))
        wait_for(
            lambda: len(outbox(server.db, "media_usage", session)) > count,
            "a usage report",
            timeout=15,
        )

    connecting = time.time()
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(watch(live, session, fan)) for _ in range(SOCKETS_PER_ACCOUNT)
        ]
        for socket_ in sockets:
            assert receive(socket_)["type"] == "state"
        watching = time.time()  # all three open; the account is counted from the first
        next_report()
        next_report()
        closing_sockets = time.time()
    wait_for(lambda: left(live, session, fan), "the account's viewer_left")
    left_by = time.time()  # the account stops being counted before its viewer_left is written
    response = api.call("POST", f"/v1/sessions/{session}/end", owner)
    assert response.status_code == 200, response.text
    server.stop()
    usage = [
        e
        for e in sealed_events(server)
        if e["event_type"] == "media_usage" and e["session_id"] == session
    ]
    total = sum(u["viewer_seconds"] for u in usage)
    rounding = SECONDS_ROUNDING * len(usage)
    # One account watched from a moment between `connecting` and `watching` to one between
    # `closing_sockets` and `left_by`: counted three times, the total would be three times it.
    assert closing_sockets - watching - rounding <= total <= left_by - connecting + rounding, (
        total,
        closing_sockets - watching,
        left_by - connecting,
    )
