"""The HTTP limits of the runtime against a real server: bad input changes nothing, and every
client-controlled resource has a bound.

JSON bodies: nesting deeper than 32 levels, an integer of thousands of digits, a lone
surrogate, NaN or Infinity are each 400 `malformed_json`, never a 500, and leave the ledger
and the telemetry as they were. Path ids: more than 200 characters, or any outside
A-Z a-z 0-9 _ -, match no route (404) and reach neither the ledger nor the telemetry.
Connections: a head over 8 KiB or 100 headers is 431; a head or a body that does not arrive
within the request timeout is 408; an idle connection is closed; past --max-connections a
request or a WebSocket handshake is 503.

The limits here are the documented ones (docs/runtime.md, Limits); the request timeout is set
to TIMEOUT seconds (`--request-timeout`) so the timing tests take seconds, not tens. Nothing
sleeps: a test waits for the server's answer, with a deadline, and trickles its bytes between
those waits.
"""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path

import httpx
import pytest
from runtime_server import Api, RuntimeProcess, events_so_far, new_credentials, wait_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

TIMEOUT = 2.0  # --request-timeout of the module's server
SLACK = 3.0  # how late an answer to a stalled request may come, on a loaded machine
MAX_DEPTH = 32
MAX_TEXT = 200  # characters of an id
MAX_HEAD_BYTES = 8 * 1024
MAX_HEADERS = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    root = tmp_path_factory.mktemp("limits")
    runtime = RuntimeProcess(root, ["--request-timeout", str(TIMEOUT)]).start()
    yield runtime
    runtime.stop()
    assert "Traceback" not in runtime.log_text()


@pytest.fixture
def api(server: RuntimeProcess) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.http.close()


# What the ledger holds -----------------------------------------------------------------------


def row_counts(db: Path) -> dict[str, int]:
    """Rows of every ledger table."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def ledger_text(db: Path) -> str:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return "\n".join(conn.iterdump())


def refused(response: httpx.Response, status: int, code: str) -> None:
    """A one-line JSON error with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert sorted(body) == ["error", "message"] and body["error"] == code, body
    assert body["message"] and "\n" not in body["message"], body


def post_raw(api: Api, path: str, raw: bytes, who: dict | None = None, key: str | None = None):
    headers = {"Content-Type": "application/json"}
    return api.call("POST", path, who, key, content=raw, headers=headers)


def signup(kind: str, **more: object) -> bytes:
    return json.dumps({"kind": kind, **new_credentials(kind), **more}).encode()


# JSON bodies ---------------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    """An account request whose body is `levels` deep: the object, then arrays inside."""
    inner = "[" * (levels - 1) + "]" * (levels - 1)
    return signup("user")[:-1] + b', "extra": ' + inner.encode() + b"}"


def test_json_nested_deeper_than_32_levels_is_400(server: RuntimeProcess, api: Api):
    assert post_raw(api, "/v1/accounts", nested(MAX_DEPTH)).status_code == 201
    before = row_counts(server.db)
    refused(post_raw(api, "/v1/accounts", nested(MAX_DEPTH + 1)), 400, "malformed_json")
    # deep enough that Python's parser gives up (RecursionError): still 400, not 500
    refused(post_raw(api, "/v1/accounts", nested(8000)), 400, "malformed_json")
    assert row_counts(server.db) == before


def test_an_integer_of_5000_digits_is_400(server: RuntimeProcess, api: Api):
    user = api.account("user")
    before = row_counts(server.db)
    for digits in (b"9" * 5000, b"-" + b"1" * 5000):
        raw = b'{"coins": ' + digits + b', "channel": "web"}'
        response = post_raw(api, "/v1/wallet/purchases", raw, user, uuid.uuid4().hex)
        refused(response, 400, "malformed_json")
    # a number that is long but not absurd is still a range error, as before
    response = api.call(
        "POST", "/v1/wallet/purchases", user, "big", json={"coins": 10**30, "channel": "web"}
    )
    refused(response, 422, "out_of_range")
    assert row_counts(server.db) == before
    assert api.call("GET", "/v1/me", user).json()["coins"] == 0


def test_a_lone_surrogate_anywhere_is_400(server: RuntimeProcess, api: Api):
    before = row_counts(server.db)
    name = signup("user")[:-1] + b', "display_name": "Ada \\ud800"}'  # the escape, in a value
    refused(post_raw(api, "/v1/accounts", name), 400, "malformed_json")
    key = signup("user")[:-1] + b', "x\\udfff": 1}'  # in a key
    refused(post_raw(api, "/v1/accounts", key), 400, "malformed_json")
    encoded = signup("user")[:-1] + b', "display_name": "Ada \xed\xa0\x80"}'  # as UTF-8 bytes
    refused(post_raw(api, "/v1/accounts", encoded), 400, "malformed_json")
    assert row_counts(server.db) == before
    # a surrogate pair is one character, and welcome
    pair = signup("user")[:-1] + b', "display_name": "Ada \\ud83d\\ude00"}'
    assert post_raw(api, "/v1/accounts", pair).status_code == 201


def test_nan_and_infinity_are_400(server: RuntimeProcess, api: Api):
    user = api.account("user")
    before = row_counts(server.db)
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"coins": ' + literal + b', "channel": "web"}'
        response = post_raw(api, "/v1/wallet/purchases", raw, user, uuid.uuid4().hex)
        refused(response, 400, "malformed_json")
    assert row_counts(server.db) == before


# Path ids ------------------------------------------------------------------------------------


def test_path_ids_too_long_or_outside_the_alphabet_reach_nothing(server: RuntimeProcess, api: Api):
    user, creator = api.account("user"), api.account("creator")
    marker = uuid.uuid4().hex  # in every bad id, to look for in the ledger and the telemetry
    bad = [
        (f"s_{marker}" + "0" * MAX_TEXT)[: MAX_TEXT + 1],  # one character too many
        f"s_{marker}.x",
        f"s_{marker}%20x",  # a space
        f"s_{marker}%C3%A9",  # é
        f"s_{marker}'--",
    ]
    for id_ in bad:
        refused(api.call("GET", f"/v1/sessions/{id_}", user), 404, "http_error")
        # a gift's answer is kept with its key (idempotency), "no session <id>" included, had
        # the ledger seen the id; and a failed gift is an event
        key = uuid.uuid4().hex
        gift = api.call("POST", f"/v1/sessions/{id_}/gifts", user, key, json={"coins": 1})
        refused(gift, 404, "http_error")
        refused(api.call("GET", f"/v1/creators/{id_}/products", user), 404, "http_error")
        refund = api.call("POST", f"/v1/orders/{id_}/refund", creator, json={})
        refused(refund, 404, "http_error")
    # the longest id allowed reaches the ledger, which knows no such session
    longest = (f"s_{uuid.uuid4().hex}" + "0" * MAX_TEXT)[:MAX_TEXT]
    refused(api.call("GET", f"/v1/sessions/{longest}", user), 404, "not_found")
    assert marker not in ledger_text(server.db)
    assert not [e for e in events_so_far(server) if marker in json.dumps(e)]


# Connections ---------------------------------------------------------------------------------


def exchange(
    server: RuntimeProcess, first: bytes, drip: bytes | None = None, every: float = 0.25
) -> tuple[bytes, float, bool]:
    """Sends `first` on a new connection, then `drip` each time `every` s pass without an
    answer; reads until the server closes the connection or TIMEOUT + SLACK s pass.

    Returns what the server sent, when it closed the connection (s after `first` was sent), and
    whether it did."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(first)
        started = time.monotonic()
        answer = b""
        while (elapsed := time.monotonic() - started) < TIMEOUT + SLACK:
            readable, _, _ = select.select([sock], [], [], every)
            if not readable:
                if drip is not None:
                    with suppress(OSError):  # the server may have closed the connection
                        sock.sendall(drip)
                continue
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return answer, time.monotonic() - started, True
            answer += chunk
        return answer, elapsed, False


def answer_of(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_a_body_trickled_past_the_timeout_is_answered_408(server: RuntimeProcess):
    head = (
        b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    answer, closed_at, closed = exchange(server, head, drip=b" ")
    assert closed, f"still open after {closed_at:.1f}s; got {answer!r}"
    assert answer_of(answer) == (
        408,
        {"error": "request_timeout", "message": "the request's body did not arrive within 2 s"},
    )
    assert TIMEOUT - 0.1 <= closed_at <= TIMEOUT + SLACK


def test_an_answer_before_the_whole_body_closes_the_connection(server: RuntimeProcess):
    """A route that refuses without reading the body: the rest of it is not waited for."""
    head = b"POST /v1/sessions/s_x/join HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    answer, closed_at, closed = exchange(server, head, drip=b" ")
    assert closed and answer_of(answer)[0] == 401, answer
    assert closed_at < TIMEOUT  # on the answer, not at a timeout


def test_headers_trickled_past_the_timeout_are_answered_408(server: RuntimeProcess):
    answer, closed_at, closed = exchange(
        server, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n", drip=b"X-Slow: 1\r\n"
    )
    assert closed, f"still open after {closed_at:.1f}s; got {answer!r}"
    status, body = answer_of(answer)
    assert (status, body["error"]) == (408, "request_timeout")
    assert TIMEOUT - 0.1 <= closed_at <= TIMEOUT + SLACK


def test_an_idle_connection_is_closed(server: RuntimeProcess):
    answer, closed_at, closed = exchange(server, b"")
    assert closed and answer == b"", (closed_at, answer)
    assert TIMEOUT - 0.1 <= closed_at <= TIMEOUT + SLACK


def test_an_oversized_head_is_answered_431(server: RuntimeProcess, api: Api):
    assert api.http.get("/v1/health", headers={"X-Big": "a" * 7000}).status_code == 200
    big = api.http.get("/v1/health", headers={"X-Big": "a" * (MAX_HEAD_BYTES + 1)})
    refused(big, 431, "headers_too_large")
    many = {f"X-H{n}": "1" for n in range(MAX_HEADERS + 1)}
    refused(api.http.get("/v1/health", headers=many), 431, "headers_too_large")
    # the same limits hold for a WebSocket handshake
    with pytest.raises(InvalidStatus) as handshake:
        ws_url = server.url.replace("http://", "ws://") + "/v1/sessions/s_x/live"
        connect(ws_url, additional_headers={"X-Big": "a" * (MAX_HEAD_BYTES + 1)}, open_timeout=5)
    assert handshake.value.response.status_code == 431


def test_past_max_connections_requests_and_handshakes_get_503(tmp_path: Path):
    limit = 4
    server = RuntimeProcess(tmp_path / "busy", ["--max-connections", str(limit)]).start()
    idle: list[socket.socket] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/v1/health").status_code == 200
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(limit - 1)]
        with httpx.Client(base_url=server.url, timeout=10) as http:
            # with limit - 1 others open, this connection is the limit-th: refused
            refused(http.get("/v1/health"), 503, "server_busy")
            ws_url = server.url.replace("http://", "ws://") + "/v1/sessions/s_x/live"
            with pytest.raises(InvalidStatus) as handshake:
                connect(ws_url, open_timeout=5)
            assert handshake.value.response.status_code == 503
            for sock in idle:
                sock.close()
            wait_for(
                lambda: http.get("/v1/health").status_code == 200, "a request once others closed"
            )
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert "Traceback" not in server.log_text()
