"""The live WebSocket against a real server, and the media metering it drives.

Servers: each test starts its own (one second of start-up), so no test depends on another's
viewers, sessions or order. Each server runs the shipped policy with a one-second metering
interval, so a session a few seconds long is reported in several `media_usage` intervals
whose usage can be checked against what the test did: when hosts came and went, and how
long a viewer watched. When a test has passed, its fixture stops the server gracefully and
finds one `viewer_joined` and one `viewer_left` per socket the test opened, and no other.

Nothing waits a fixed time: a test waits for a condition (a message, a usage report in the
ledger's outbox, the clock passing a token's expiry) with a deadline, and the timing bounds
of the metering checks come from clock readings taken around what the test did.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from runtime_server import Api, RuntimeProcess, wait_for
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from telemetry.events import TIME_FORMAT
from telemetry.files import list_sealed

SPEC = json.loads(
    (Path(__file__).parents[1] / "live_runtime" / "server" / "openapi.json").read_text()
)
SPEC_URI = "urn:creator-econ:runtime-openapi"
LIVE_MESSAGE = Draft202012Validator(
    {"$ref": f"{SPEC_URI}#{quote('/components/schemas/LiveMessage')}"},
    registry=Registry().with_resource(
        SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
    ),
)
LIVE = "/v1/sessions/{}/live"
SHIPPED_POLICY = Path(__file__).parents[1] / "live_runtime" / "policy_default.toml"
SLOW_CONSUMER = 4008  # the documented close code (openapi.json x-websockets)

# Metering figures, by hand from policy_default.toml (checked against the file in
# `fast_metering_policy`), with the interval this module sets.
INTERVAL = 1.0  # metering.interval_seconds, 60 in the shipped file, 1 here
BYTES_PER_SECOND = 562_500  # 1080p: bitrate_bps 4,500,000 / 8 bits
RENDITIONS = 4  # 1080p renditions
RELAY_AT = 2  # relay_when_hosts_at_least
# Reported seconds are rounded to the millisecond (at most 0.0005 off) and event times carry
# microseconds (an interval's length from its two times is at most 0.000002 off).
SECONDS_SLACK = 0.0005 + 0.000002 * RENDITIONS
BYTES_SLACK = 0.5 + 0.000002 * BYTES_PER_SECOND  # rounding to a byte, and the 2 µs


# Fixtures --------------------------------------------------------------------------------


def fast_metering_policy(root: Path) -> Path:
    """The shipped policy with a one-second metering interval."""
    text, count = re.subn(
        r"(?m)^interval_seconds = .*$", "interval_seconds = 1", SHIPPED_POLICY.read_text()
    )
    assert count == 1
    metering = tomllib.loads(text)["metering"]
    assert metering["interval_seconds"] == INTERVAL
    assert metering["relay_when_hosts_at_least"] == RELAY_AT
    assert metering["qualities"]["1080p"] == {"bitrate_bps": 4_500_000, "renditions": RENDITIONS}
    path = root / "policy.toml"
    path.write_text(text)
    return path


@dataclass
class Live:
    server: RuntimeProcess
    api: Api
    viewers: Counter = field(default_factory=Counter)  # (event type, session, user) expected


def sealed_events(server: RuntimeProcess) -> list[dict]:
    return [json.loads(line) for path in list_sealed(server.telemetry) for line in path.open()]


@pytest.fixture
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    """A server of the test's own; once the test has passed, its viewer telemetry holds."""
    root = tmp_path / "live"
    root.mkdir()
    server = RuntimeProcess(root, ["--policy", str(fast_metering_policy(root))]).start()
    failed_before = request.session.testsfailed
    test = Live(server, Api(server.url))
    try:
        yield test
    finally:
        test.api.http.close()
        server.stop()
    if request.session.testsfailed == failed_before:  # a failed test's telemetry is moot
        assert "Traceback" not in server.log_text()
        seen = Counter(
            (e["event_type"], e["session_id"], e["user_id"])
            for e in sealed_events(server)
            if e["event_type"] in ("viewer_joined", "viewer_left")
        )
        assert seen == test.viewers


# A viewer ----------------------------------------------------------------------------------


def live_url(server: RuntimeProcess, session_id: str) -> str:
    return server.url.replace("http://", "ws://") + LIVE.format(session_id)


@contextmanager
def watch(live: Live, session_id: str, who: dict, **options: Any) -> Iterator[ClientConnection]:
    """A viewer's socket, remembered as one viewer_joined and one viewer_left."""
    headers = {"Authorization": f"Bearer {who['token']}"}
    url = live_url(live.server, session_id)
    with connect(url, additional_headers=headers, open_timeout=5, **options) as socket_:
        live.viewers[("viewer_joined", session_id, who["id"])] += 1
        live.viewers[("viewer_left", session_id, who["id"])] += 1
        yield socket_


def receive(socket_: ClientConnection, skip: tuple[str, ...] = ("viewers",)) -> dict[str, Any]:
    """The next message not of a skipped type, checked against the documented `LiveMessage`."""
    while True:
        message = json.loads(socket_.recv(timeout=5))
        errors = [e.message for e in LIVE_MESSAGE.iter_errors(message)]
        assert not errors, (message, errors)
        if message["type"] not in skip:
            return message


def refused(server: RuntimeProcess, session_id: str, headers: dict[str, str]) -> int:
    """The HTTP status of a refused handshake."""
    with pytest.raises(InvalidStatus) as refusal:
        connect(live_url(server, session_id), additional_headers=headers, open_timeout=5).close()
    return refusal.value.response.status_code


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def start(api: Api, owner: dict, **settings: Any) -> str:
    return ok(api.call("POST", "/v1/sessions", owner, json=settings), 201)["session_id"]


def host(api: Api, owner: dict, guest: dict, session_id: str, action: str) -> dict:
    """Invites the guest if needed (viewers get a `split` message), then has them join,
    accepting the split they were invited to, or leave."""
    path = f"/v1/sessions/{session_id}"
    body = None
    if action == "join":
        invited = api.call("POST", f"{path}/cohosts", owner, json={"creator_id": guest["id"]})
        body = {"accept_split": ok(invited, 201)["split"]}
    return ok(api.call("POST", f"{path}/{action}", guest, json=body))


def outbox(db: Path, event_type: str, session_id: str) -> list[dict]:
    """The session's committed events of a type, from the ledger's outbox, in commit order."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT line FROM outbox WHERE event_type = ? ORDER BY seq", (event_type,)
        ).fetchall()
    events = [json.loads(line) for (line,) in rows]
    return [e for e in events if e["session_id"] == session_id]


# Messages ----------------------------------------------------------------------------------


def test_a_viewer_gets_the_state_then_viewer_counts(live: Live):
    api = live.api
    owner, first, second = api.account("creator"), api.account("user"), api.account("user")
    session = start(api, owner, quality="480p")
    with watch(live, session, first) as one:
        state = receive(one, skip=())
        assert state["type"] == "state" and state["session_id"] == session
        assert (state["status"], state["owner_id"], state["viewers"]) == ("live", owner["id"], 1)
        assert receive(one, skip=()) == {"type": "viewers", "count": 1}
        with watch(live, session, second) as two:
            assert receive(two, skip=())["viewers"] == 2
            assert receive(two, skip=()) == {"type": "viewers", "count": 2}
            assert receive(one, skip=()) == {"type": "viewers", "count": 2}
        assert receive(one, skip=()) == {"type": "viewers", "count": 1}
    ok(api.call("POST", f"/v1/sessions/{session}/end", owner))


def test_gifts_hosts_pins_and_the_end_are_pushed(live: Live):
    api = live.api
    owner, cohost, fan = api.account("creator"), api.account("creator"), api.account("user")
    api.buy(fan, 700, "ios")  # confirmed at the sandbox provider: the coins are credited
    session = start(api, owner)
    with watch(live, session, fan) as socket_:
        assert receive(socket_)["type"] == "state"
        joined = host(api, owner, cohost, session, "join")
        invited_hosts = [dict(h, present=h["creator_id"] == owner["id"]) for h in joined["hosts"]]
        assert receive(socket_) == {  # the invitation: the split co-host gifts will follow
            "type": "split", "split": joined["split"], "hosts": invited_hosts,
        }  # fmt: skip
        assert receive(socket_) == {"type": "hosts", "creator_ids": [owner["id"], cohost["id"]]}
        gift_path = f"/v1/sessions/{session}/gifts"
        gift = ok(api.call("POST", gift_path, fan, "gift", json={"coins": 101}), 201)
        # 101 coins at coin_value_minor 1 = 101; the two equal hosts are owed 50% of it, 25.25
        # each: 25 credited, 0.25 carried; the platform keeps 101 - 50 = 51.
        splits = [
            {"creator_id": owner["id"], "share_minor": 25},
            {"creator_id": cohost["id"], "share_minor": 25},
        ]
        assert (gift["value_minor"], gift["platform_fee_minor"], gift["splits"]) == (
            101,
            51,
            splits,
        )
        assert receive(socket_) == {
            "type": "gift",
            "gift_id": gift["gift_id"],
            "sender_id": fan["id"],
            "coins": 101,
            "value_minor": 101,
            "splits": splits,
            "platform_fee_minor": 51,
        }
        replay = api.call("POST", gift_path, fan, "gift", json={"coins": 101})
        assert replay.headers["idempotent-replayed"] == "true"  # and pushes nothing:
        host(api, owner, cohost, session, "leave")  # the next message is this one
        assert receive(socket_) == {"type": "hosts", "creator_ids": [owner["id"]]}
        product = ok(
            api.call("POST", "/v1/products", owner, json={"name": "cap", "price_minor": 1500}), 201
        )
        pin = {"product_id": product["product_id"]}
        ok(api.call("POST", f"/v1/sessions/{session}/pin", owner, json=pin))
        assert receive(socket_) == {"type": "pinned", "product": product}
        ok(api.call("POST", f"/v1/sessions/{session}/end", owner))
        assert receive(socket_) == {"type": "ended", "reason": "host_ended"}
        with pytest.raises(ConnectionClosedOK) as closed:
            socket_.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_bad_tokens_and_sessions_not_live_are_refused(live: Live):
    server, api = live.server, live.api
    owner, fan = api.account("creator"), api.account("user")
    short = ok(api.call("POST", "/v1/tokens", fan, json={"ttl_seconds": 1}), 201)
    live_session, ended = start(api, owner), start(api, owner)
    ok(api.call("POST", f"/v1/sessions/{ended}/end", owner))
    bearer = {"Authorization": f"Bearer {fan['token']}"}
    assert refused(server, live_session, {}) == 403
    assert refused(server, live_session, {"Authorization": "Bearer ce_forged"}) == 403
    assert refused(server, live_session, {"Authorization": f"Basic {fan['token']}"}) == 403
    assert refused(server, ended, bearer) == 403
    assert refused(server, "s_none", bearer) == 403
    # The server refuses a token once its clock reaches expires_at; both run on this clock.
    wait_for(lambda: time.time() >= short["expires_at"], "the short token's expiry", 10)
    assert refused(server, live_session, {"Authorization": f"Bearer {short['token']}"}) == 403
    ok(api.call("POST", f"/v1/sessions/{live_session}/end", owner))


# A viewer that stops reading ---------------------------------------------------------------


class StalledViewer:
    """A viewer on a plain socket that reads nothing until `read_to_the_end` is called.

    The WebSocket protocol is done by `websockets`' sans-I/O client, so no background thread
    reads the socket behind the test's back. The socket's receive buffer is tiny and it
    announces the smallest TCP segment size: Linux sizes the server's send buffer for this
    connection from the peer's segment size, so a few hundred kilobytes of unread messages,
    not megabytes, fill the kernel buffers and block the server's sends to this viewer.
    """

    def __init__(self, live: Live, session_id: str, who: dict) -> None:
        uri = parse_uri(live_url(live.server, session_id))
        self.protocol = ClientProtocol(uri, max_size=None)
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {who['token']}"
        self.protocol.send_request(request)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)
        self.sock.settimeout(10)
        self.sock.connect((uri.host, uri.port))
        self._flush()
        self.texts: list[str] = []
        while self.protocol.state is State.CONNECTING:
            self._read()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc
        live.viewers[("viewer_joined", session_id, who["id"])] += 1
        live.viewers[("viewer_left", session_id, who["id"])] += 1

    def _flush(self) -> None:
        """Sends what the protocol has to say: the handshake, pongs, the closing handshake."""
        out = self.protocol.data_to_send()
        if out and out != [b""]:
            self.sock.sendall(b"".join(out))

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if getattr(event, "opcode", None) is Opcode.TEXT:
                self.texts.append(event.data.decode())
        self._flush()

    def read_to_the_end(self, timeout: float = 30.0) -> list[dict]:
        """Reads until the connection is closed; the text messages received, in order."""
        deadline = time.monotonic() + timeout
        while self.protocol.state is not State.CLOSED:
            assert time.monotonic() < deadline, "the server never closed the stalled viewer"
            self._read()
        self.sock.close()
        return [json.loads(text) for text in self.texts]


def test_a_viewer_too_slow_to_keep_up_is_closed_with_4008(live: Live):
    """A viewer that stops reading is dropped once its send queue is full; when it reads
    again, it gets what was already on its way, then the close code 4008. A viewer that keeps
    up meanwhile gets every message."""
    api = live.api
    owner, fan = api.account("creator"), api.account("user")
    slow_user, fast_user = api.account("user"), api.account("user")
    api.buy(fan, 7000, "web")
    session = start(api, owner)
    # Nine co-hosts, as many as the policy's max_hosts (10) allows: each gift message lists 10
    # splits (about 0.7 KB), so fewer gifts fill the kernel's buffers; the queue then needs
    # its 1,000 more messages whatever their size.
    for guest in [api.account("creator") for _ in range(9)]:
        host(api, owner, guest, session, "join")

    fast_messages: list[dict] = []

    def keep_up(socket_: ClientConnection) -> None:
        with pytest.raises(ConnectionClosed):
            while True:
                fast_messages.append(json.loads(socket_.recv(timeout=60)))

    def gift(_: int) -> str:
        key = uuid.uuid4().hex
        sent = api.call("POST", f"/v1/sessions/{session}/gifts", fan, key, json={"coins": 1})
        return ok(sent, 201)["gift_id"]

    def viewers_now() -> int:
        """The viewer count a new viewer is told (itself included)."""
        with watch(live, session, api.account("user")) as probe:
            return receive(probe, skip=())["viewers"]

    # No client-side queue or compression: the fast viewer's socket is always drained.
    with watch(live, session, fast_user, compression=None, max_queue=None) as fast:
        reader = threading.Thread(target=keep_up, args=(fast,), daemon=True)
        reader.start()
        slow = StalledViewer(live, session, slow_user)
        assert viewers_now() == 3  # the fast, the slow and the probe
        sent: list[str] = []
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            while (count := viewers_now()) == 3:
                assert time.monotonic() - started < 60, (
                    f"{len(sent)} gifts later the stalled viewer is still in the room"
                )
                sent += pool.map(gift, range(100))
        assert count == 2, count  # the fast viewer and the probe: the stalled one was dropped
        got = slow.read_to_the_end()
        close = slow.protocol.close_rcvd
        assert close is not None and close.code == SLOW_CONSUMER, close
        ok(api.call("POST", f"/v1/sessions/{session}/end", owner))
        reader.join(timeout=30)
        assert not reader.is_alive()

    assert got[0]["type"] == "state" and got[0]["viewers"] == 2
    slow_gifts = [m["gift_id"] for m in got if m["type"] == "gift"]
    fast_gifts = [m["gift_id"] for m in fast_messages if m["type"] == "gift"]
    assert sorted(fast_gifts) == sorted(sent)  # every gift reached the viewer that kept up
    assert fast_messages[-1] == {"type": "ended", "reason": "host_ended"}
    assert 0 < len(slow_gifts) < len(sent)  # the stalled one got some, then was dropped
    assert slow_gifts == fast_gifts[: len(slow_gifts)]  # the first ones, in order


# Metering ----------------------------------------------------------------------------------


def epoch(text: str) -> float:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC).timestamp()


def presence(events: list[dict], session_id: str, came: str, went: str) -> list[tuple[float, int]]:
    """(time, +1 or -1) each time someone of a kind comes to or leaves the session."""
    steps = {came: 1, went: -1}
    return sorted(
        (epoch(e["occurred_at"]), steps[e["event_type"]])
        for e in events
        if e["event_type"] in steps and e["session_id"] == session_id
    )


def seconds_present(
    changes: list[tuple[float, int]], start: float, end: float, base: int = 0, at_least: int = 1
) -> float:
    """∫ count dt over [start, end], counting only while at least `at_least` are present."""
    cuts = sorted({start, end, *(t for t, _ in changes if start < t < end)})
    total = 0.0
    for left, right in zip(cuts, cuts[1:], strict=False):
        count = base + sum(step for t, step in changes if t <= left)
        total += count * (right - left) if count >= at_least else 0.0
    return total


def check_interval(usage: dict, since: float, hosts, watchers) -> None:
    """One 1080p recorded interval against the hosts' and the viewer's comings and goings.

    Host seconds are counted on the ledger's clock, the same as the events' times, so they
    match to the rounding. Viewer seconds are counted on the event loop's clock when the
    usage report is cut, a little before the report's own time, and after the report before
    this one (`since`): so they are at most what was watched from `since` to this end.
    """
    start, end = epoch(usage["interval_start"]), epoch(usage["interval_end"])
    seconds = end - start
    assert seconds > 0, usage
    assert usage["transcode_seconds"] == pytest.approx(seconds * RENDITIONS, abs=SECONDS_SLACK)
    assert usage["recording_bytes"] == pytest.approx(seconds * BYTES_PER_SECOND, abs=BYTES_SLACK)
    # egress is computed from the viewer seconds as reported: only the rounding to a byte.
    egress = usage["viewer_seconds"] * BYTES_PER_SECOND
    assert usage["egress_bytes"] == pytest.approx(egress, abs=0.5 + 1e-6), usage
    published = seconds_present(hosts, start, end, base=1)
    relayed = seconds_present(hosts, start, end, base=1, at_least=RELAY_AT)
    assert usage["publisher_seconds"] == pytest.approx(published, abs=SECONDS_SLACK), usage
    assert usage["relay_seconds"] == pytest.approx(relayed, abs=SECONDS_SLACK), usage
    assert (usage["relay_seconds"] > 0) == (relayed > SECONDS_SLACK), usage
    watched = seconds_present(watchers, since, end)
    assert 0 <= usage["viewer_seconds"] <= watched + SECONDS_SLACK, (usage, watched)


def test_metering_and_viewer_telemetry(live: Live):
    """A metered session: a viewer from the start, a co-host for one report in the middle;
    each phase lasts until the ledger holds a new usage report, then the sealed telemetry."""
    server, api = live.server, live.api
    owner, cohost, fan = api.account("creator"), api.account("creator"), api.account("user")
    before_start = time.time()
    session = start(api, owner, quality="1080p", record=True)
    after_start = time.time()

    def next_report(what: str) -> None:
        count = len(outbox(server.db, "media_usage", session))
        wait_for(
            lambda: len(outbox(server.db, "media_usage", session)) > count,
            f"a usage report {what}",
            timeout=15,
        )

    connecting = time.time()
    with watch(live, session, fan) as socket_:
        assert receive(socket_)["type"] == "state"
        watching = time.time()  # the server counts the viewer from before it sends the state
        next_report("with a viewer and the owner")
        host(api, owner, cohost, session, "join")
        next_report("with two hosts")
        host(api, owner, cohost, session, "leave")
        next_report("after the co-host left")
        closing_socket = time.time()
    wait_for(lambda: outbox(server.db, "viewer_left", session), "the viewer's viewer_left")
    left_by = time.time()  # the server stops counting the viewer before it records it left
    before_end = time.time()
    ok(api.call("POST", f"/v1/sessions/{session}/end", owner))
    after_end = time.time()
    server.stop()

    mine = [e for e in sealed_events(server) if e.get("session_id") == session]
    (started,) = [e for e in mine if e["event_type"] == "session_started"]
    (ended,) = [e for e in mine if e["event_type"] == "session_ended"]
    assert before_start - 1e-6 <= epoch(started["occurred_at"]) <= after_start + 1e-6
    assert before_end - 1e-6 <= epoch(ended["occurred_at"]) <= after_end + 1e-6
    usage = sorted(
        (e for e in mine if e["event_type"] == "media_usage"), key=lambda e: e["interval_start"]
    )
    assert len(usage) >= 4, f"{len(usage)} usage reports: three waited for, then the end's"
    assert usage[0]["interval_start"] == started["occurred_at"]
    assert usage[-1]["interval_end"] == ended["occurred_at"]
    for before, after in zip(usage, usage[1:], strict=False):
        assert before["interval_end"] == after["interval_start"]
    for middle in usage[1:-1]:  # from one metering tick to the next: at least the interval
        length = epoch(middle["interval_end"]) - epoch(middle["interval_start"])
        assert length >= INTERVAL - 0.000002, middle
    hosts = presence(mine, session, "host_joined", "host_left")
    watchers = presence(mine, session, "viewer_joined", "viewer_left")
    assert len(hosts) == 2 and len(watchers) == 2
    since = epoch(started["occurred_at"])
    for interval in usage:
        check_interval(interval, since, hosts, watchers)
        since = epoch(interval["interval_start"])
    assert any(u["relay_seconds"] > 0 for u in usage), "no report covers the two hosts"
    # The viewer was counted from a moment between `connecting` and `watching` to one between
    # `closing_socket` and `left_by`; each report rounds its seconds to the millisecond.
    total = sum(u["viewer_seconds"] for u in usage)
    rounding = SECONDS_SLACK * len(usage)
    assert closing_socket - watching - rounding <= total <= left_by - connecting + rounding
