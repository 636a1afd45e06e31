"""Sign-in and tokens against a real server on loopback: passwords, sign-in, token lifetimes,
sign-out, revocation, the per-address limits, and the bounded token cache.

Servers: one per module with the per-address limits lifted (tests/runtime_server.py, as every
test server), where each test makes its own accounts; the two tests of the limits each start a
server of their own with the shipped limits, so no other test's requests count against them.

Expected values come from the inputs: the token lifetime from the shipped policy file read
with tomllib, the limits (20 account creations a minute per address, 10 failed sign-ins a
minute per login and address, over a fixed minute) from the issue, as docs/runtime.md states
them. Nothing sleeps a fixed time: waits are on a condition (`wait_for`).
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import statistics
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from runtime_server import SHIPPED_LIMITS, Api, RuntimeProcess, new_credentials, wait_for
from starlette.requests import HTTPConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

SHIPPED_POLICY = Path(__file__).parents[1] / "live_runtime" / "policy_default.toml"
TOKEN_TTL_SECONDS = tomllib.loads(SHIPPED_POLICY.read_text())["token_ttl_days"] * 86_400
MAX_TTL_SECONDS = 366 * 86_400  # the largest ttl_seconds POST /v1/tokens accepts
SIGNUPS_PER_MINUTE = 20
FAILED_SIGN_INS_PER_MINUTE = 10
WINDOW_SECONDS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("auth")).start()
    yield runtime
    runtime.stop()


@pytest.fixture
def api(server: RuntimeProcess) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.http.close()
    assert "Traceback" not in server.log_text()


@pytest.fixture
def shipped_limits(tmp_path: Path) -> Iterator[RuntimeProcess]:
    """A server of the test's own, with the shipped per-address limits."""
    runtime = RuntimeProcess(tmp_path / "limits", env=dict(SHIPPED_LIMITS)).start()
    yield runtime
    runtime.stop()


def as_token(token: str) -> dict:
    return {"token": token}


def me(api: Api, token: str) -> httpx.Response:
    return api.call("GET", "/v1/me", as_token(token))


def error(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("error")


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def mint(api: Api, token: str, **body) -> dict:
    return created(api.call("POST", "/v1/tokens", as_token(token), json=body))


def sign_in(api: Api, login: str, password: str) -> httpx.Response:
    return api.call("POST", "/v1/sign-in", json={"login": login, "password": password})


def handshake(server: RuntimeProcess, session_id: str, token: str) -> int:
    """101 if the live WebSocket accepts the token (then closes it), else the refusal's status."""
    url = server.url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/live"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with connect(url, additional_headers=headers, open_timeout=5) as live:
            assert json.loads(live.recv(timeout=5))["type"] == "state"
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


# Token lifetimes -----------------------------------------------------------------------------


def test_a_three_second_token_cannot_mint_a_longer_lived_one(api: Api):
    user = api.account("user")
    short = mint(api, user["token"], ttl_seconds=3)
    longest = mint(api, short["token"], ttl_seconds=MAX_TTL_SECONDS)
    default = mint(api, short["token"])  # the default, 30 days, is longer too
    assert longest["expires_at"] <= short["expires_at"]
    assert default["expires_at"] <= short["expires_at"]
    grandchild = mint(api, longest["token"], ttl_seconds=MAX_TTL_SECONDS)
    assert grandchild["expires_at"] <= short["expires_at"]
    for token in (longest["token"], default["token"], grandchild["token"]):
        assert me(api, token).status_code == 200
    # Once the server's clock (this machine's) passes the short token's expiry, all are dead.
    wait_for(lambda: time.time() >= short["expires_at"], "the 3-second token's expiry", 10)
    for token in (short["token"], longest["token"], default["token"], grandchild["token"]):
        assert error(me(api, token)) == (401, "token_expired")
    refused = api.call("POST", "/v1/tokens", as_token(longest["token"]), json={"ttl_seconds": 60})
    assert error(refused) == (401, "token_expired")
    assert me(api, user["token"]).status_code == 200  # the account's own first token lives on


# Sign-out and revocation -----------------------------------------------------------------------


def test_sign_out_refuses_the_token_at_once_on_http_and_the_websocket(
    api: Api, server: RuntimeProcess
):
    owner, fan = api.account("creator"), api.account("user")
    session = created(api.call("POST", "/v1/sessions", owner, json={}))["session_id"]
    other = mint(api, fan["token"], ttl_seconds=600)
    assert me(api, fan["token"]).status_code == 200  # looked up, so cached by the server
    assert handshake(server, session, fan["token"]) == 101

    signed_out = api.call("DELETE", "/v1/tokens/current", as_token(fan["token"]))
    assert signed_out.status_code == 204 and signed_out.content == b""

    assert error(me(api, fan["token"])) == (401, "unauthenticated")
    again = api.call("POST", "/v1/tokens", as_token(fan["token"]), json={"ttl_seconds": 60})
    assert error(again) == (401, "unauthenticated")
    buy = api.call(
        "POST", "/v1/wallet/purchases", as_token(fan["token"]), "k-1",
        json={"coins": 70, "channel": "web"},
    )  # fmt: skip
    assert error(buy) == (401, "unauthenticated")
    assert handshake(server, session, fan["token"]) == 403  # refused at the handshake
    twice = api.call("DELETE", "/v1/tokens/current", as_token(fan["token"]))
    assert error(twice) == (401, "unauthenticated")
    # The fan's other token is untouched.
    assert me(api, other["token"]).json()["id"] == fan["id"]
    assert handshake(server, session, other["token"]) == 101
    assert api.call("POST", f"/v1/sessions/{session}/end", owner).status_code == 200


def test_revoke_all_kills_every_token_of_the_account_and_not_another_accounts(
    api: Api, server: RuntimeProcess
):
    alice, bob = api.account("user"), api.account("user")
    alice_tokens = [alice["token"]] + [
        mint(api, alice["token"], ttl_seconds=600)["token"] for _ in range(2)
    ]
    bob_tokens = [bob["token"], mint(api, bob["token"], ttl_seconds=600)["token"]]
    for token in alice_tokens + bob_tokens:  # every one looked up, so cached by the server
        assert me(api, token).status_code == 200

    revoked = api.call("POST", "/v1/tokens/revoke-all", as_token(alice_tokens[1]))
    assert revoked.status_code == 204 and revoked.content == b""

    for token in alice_tokens:
        assert error(me(api, token)) == (401, "unauthenticated")
    for token in bob_tokens:
        assert me(api, token).json()["id"] == bob["id"]
    with closing(read_only(server.db)) as conn:
        left = conn.execute("SELECT count(*) FROM tokens WHERE principal_id = ?", (alice["id"],))
        assert left.fetchone()[0] == 0
    # Revoking is signing out everywhere, not locking the account: the password still works.
    fresh = created(sign_in(api, alice["login"], alice["password"]))
    assert me(api, fresh["token"]).json()["id"] == alice["id"]


# Sign-in -------------------------------------------------------------------------------------


def test_sign_in_with_the_right_password_works_and_wrong_ones_get_the_same_401(api: Api):
    login = f"Ada.Lovelace_{uuid.uuid4().hex[:8]}-X"
    password = "analytical engine 1843"
    ada = created(
        api.call(
            "POST", "/v1/accounts", json={"kind": "creator", "login": login, "password": password}
        )
    )
    # Logins are case-folded: the same login in other cases signs in.
    for spelling in (login, login.lower(), login.upper()):
        before = time.time()
        answer = sign_in(api, spelling, password)
        after = time.time()
        body = created(answer)
        assert sorted(body) == ["expires_at", "id", "kind", "token"]
        assert (body["id"], body["kind"]) == (ada["id"], "creator")
        assert before + TOKEN_TTL_SECONDS - 0.0005 <= body["expires_at"]
        assert body["expires_at"] <= after + TOKEN_TTL_SECONDS + 0.0005
        assert body["token"] != ada["token"]
        assert me(api, body["token"]).json()["id"] == ada["id"]

    wrong_password = sign_in(api, login, password + "!")
    unknown_login = sign_in(api, f"nobody-{uuid.uuid4().hex}", password)
    assert wrong_password.status_code == unknown_login.status_code == 401
    assert wrong_password.json() == unknown_login.json()
    assert wrong_password.json()["error"] == "invalid_credentials"
    assert sign_in(api, login, password.upper()).json() == unknown_login.json()

    # An unknown login costs the server a password check too: it takes about as long.
    wrong_times, unknown_times = [], []
    for n in range(7):
        for times, who, secret in (
            (wrong_times, login, f"not the password {n}"),
            (unknown_times, f"nobody-{uuid.uuid4().hex}", f"not the password {n}"),
        ):
            started = time.perf_counter()
            assert sign_in(api, who, secret).status_code == 401
            times.append(time.perf_counter() - started)
    wrong, unknown = statistics.median(wrong_times), statistics.median(unknown_times)
    assert unknown >= 0.5 * wrong, (wrong_times, unknown_times)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"login": None}, (422, "missing_field")),
        ({"password": None}, (422, "missing_field")),
        ({"login": "ab"}, (422, "invalid_field")),  # 2 characters
        ({"login": "a" * 65}, (422, "invalid_field")),
        ({"login": "has space"}, (422, "invalid_field")),
        ({"login": "k\u212a\u212a"}, (422, "invalid_field")),  # Kelvin signs fold to k
        ({"login": 12345}, (422, "invalid_field")),
        ({"password": "x" * 11}, (422, "invalid_field")),
        ({"password": "x" * 129}, (422, "invalid_field")),
        ({"password": 123456789012}, (422, "invalid_field")),
    ],
)
def test_login_and_password_are_checked(api: Api, change: dict, refusal: tuple[int, str]):
    good = {"kind": "user", **new_credentials("user")}
    body = {k: v for k, v in {**good, **change}.items() if v is not None}
    assert error(api.call("POST", "/v1/accounts", json=body)) == refusal
    sign = {k: v for k, v in body.items() if k in ("login", "password")}
    assert error(api.call("POST", "/v1/sign-in", json=sign)) == refusal


def test_logins_are_unique_whatever_their_case_and_lengths_at_the_bounds_work(api: Api):
    login = f"Grace-{uuid.uuid4().hex[:10]}"
    first = {"kind": "user", "login": login, "password": "p" * 12}
    created(api.call("POST", "/v1/accounts", json=first))
    for taken in (login, login.lower(), login.upper()):
        duplicate = {"kind": "creator", "login": taken, "password": "q" * 128}
        assert error(api.call("POST", "/v1/accounts", json=duplicate)) == (409, "login_taken")
    shortest = uuid.uuid4().hex[:3]  # 3 characters, and a 128-character password
    created(api.call("POST", "/v1/accounts", json={**first, "login": shortest}))
    longest = "z" + uuid.uuid4().hex + "-" * 31  # 64 characters
    assert len(longest) == 64
    created(api.call("POST", "/v1/accounts", json={**first, "login": longest}))
    assert sign_in(api, longest.upper(), "p" * 12).status_code == 201


def test_the_password_is_stored_only_as_an_argon2_hash(api: Api, server: RuntimeProcess):
    password = f"Tr0ub4dor&3 {uuid.uuid4().hex}"
    login = f"Hash.Check-{uuid.uuid4().hex[:10]}"
    user = created(
        api.call(
            "POST", "/v1/accounts", json={"kind": "user", "login": login, "password": password}
        )
    )
    with closing(read_only(server.db)) as conn:
        rows = conn.execute(
            "SELECT login, password_hash FROM credentials WHERE principal_id = ?", (user["id"],)
        ).fetchall()
    assert len(rows) == 1
    stored_login, stored_hash = rows[0]
    assert stored_login == login.lower()
    assert stored_hash.startswith("$argon2id$v=19$")
    assert PasswordHasher().verify(stored_hash, password)  # the library's own check
    # Nowhere in the database, its -wal or its -shm: not the password, nor its plain digests.
    secret = password.encode()
    digests = [
        hashlib.sha256(secret).hexdigest().encode(),
        hashlib.md5(secret).hexdigest().encode(),
    ]
    files = {path.name: path.read_bytes() for path in server.root.glob("ledger.db*")}
    assert "ledger.db" in files
    assert any(stored_hash.encode() in data for data in files.values())  # the scan sees rows
    for name, data in files.items():
        assert secret not in data, f"the password is in {name}"
        assert not any(d in data for d in digests), f"an unsalted digest is in {name}"
    assert created(sign_in(api, login, password))["id"] == user["id"]  # and the hash works


# Limits per address --------------------------------------------------------------------------


def can_bind(address: str) -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
        return True
    except OSError:
        return False


def check_rate_limited(call: Callable[[], httpx.Response], earliest: float, latest: float) -> None:
    """The call gets 429, a one-line JSON error, and a Retry-After (whole seconds) that ends
    the minute being counted, which began between `earliest` and `latest` (monotonic clock,
    the same for the server on this machine)."""
    sent = time.monotonic()
    response = call()
    answered = time.monotonic()
    assert error(response) == (429, "rate_limited")
    assert response.headers["content-type"].startswith("application/json")
    assert "\n" not in response.text.strip()
    retry_after = int(response.headers["retry-after"])
    assert WINDOW_SECONDS - (answered - earliest) <= retry_after  # began at earliest or later
    assert retry_after <= WINDOW_SECONDS - (sent - latest) + 1  # began by latest; rounded up


def test_the_21st_account_creation_in_a_minute_from_one_address_gets_429(
    shipped_limits: RuntimeProcess,
):
    api = Api(shipped_limits.url)
    try:
        began = time.monotonic()  # the minute begins with the first creation
        api.account("creator")
        first_done = time.monotonic()
        for n in range(SIGNUPS_PER_MINUTE - 1):
            api.account("user" if n % 2 else "creator")
        body = {"kind": "user", **new_credentials("user")}
        check_rate_limited(lambda: api.http.post("/v1/accounts", json=body), began, first_done)
        with closing(read_only(shipped_limits.db)) as conn:
            principals = conn.execute("SELECT count(*) FROM principals").fetchone()[0]
        assert principals == SIGNUPS_PER_MINUTE  # the refused one created nothing
        if can_bind("127.0.0.2"):  # Linux: all of 127/8 is loopback; another address is free
            transport = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=shipped_limits.url, transport=transport) as other:
                answer = other.post("/v1/accounts", json={"kind": "user", **new_credentials("u")})
                assert answer.status_code == 201, answer.text
    finally:
        api.http.close()


def test_the_11th_failed_sign_in_in_a_minute_for_a_login_from_one_address_gets_429(
    shipped_limits: RuntimeProcess,
):
    api = Api(shipped_limits.url)
    try:
        target, other = api.account("user"), api.account("user")
        began = time.monotonic()  # the minute begins with the first failure
        first_done = 0.0
        for n in range(FAILED_SIGN_INS_PER_MINUTE):
            wrong = sign_in(api, target["login"], f"wrong password {n}")
            assert error(wrong) == (401, "invalid_credentials")
            first_done = first_done or time.monotonic()
        # Past the limit even the right password is refused until the minute is over.
        right = target["login"], target["password"]
        check_rate_limited(lambda: sign_in(api, *right), began, first_done)
        # Another login from the same address is not affected, nor its right password.
        assert created(sign_in(api, other["login"], other["password"]))["id"] == other["id"]
        # The account's tokens still work: the limit is on guessing, not on the account.
        assert me(api, target["token"]).status_code == 200
    finally:
        api.http.close()


# The token cache -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_token_cache_stays_bounded_and_forgets_revoked_and_stale_entries(tmp_path: Path):
    from live_runtime.ledger.schema import create_ledger_schema, open_ledger
    from live_runtime.server.auth import Authenticator, Principal, TokenCache

    clock = FakeClock()
    cache = TokenCache(max_entries=3, recheck_seconds=5.0, clock=clock)
    people = {f"t{n}": Principal(f"u_{n}", "user") for n in range(5)}
    for token_hash, who in list(people.items())[:3]:
        cache.put(token_hash, who, 2e9, cache.generation)
    assert cache.get("t0") == (people["t0"], 2e9)  # t0 used last, so t1 is the oldest
    for token_hash in ("t3", "t4"):
        cache.put(token_hash, people[token_hash], 2e9, cache.generation)
    assert len(cache) == 3
    assert [h for h in people if cache.get(h) is not None] == ["t0", "t3", "t4"]

    generation = cache.generation  # a lookup that began before a revocation ...
    cache.forget("t3")
    assert cache.get("t3") is None
    cache.put("t3", people["t3"], 2e9, generation)  # ... does not put the revoked row back
    assert cache.get("t3") is None
    cache.forget_principal("u_4")
    assert cache.get("t4") is None and cache.get("t0") is not None

    clock.now += 5.0  # entries are read again from the database after recheck_seconds
    assert cache.get("t0") is None and len(cache) == 0

    # The authenticator over a ledger with more tokens than its cache holds.
    conn = open_ledger(tmp_path / "ledger.db")
    create_ledger_schema(conn)
    conn.execute("INSERT INTO principals VALUES ('u_1', 'user', 'u', '2026-01-01')")
    tokens = [f"ce_token_{n}" for n in range(10)]
    conn.executemany(
        "INSERT INTO tokens VALUES (?, 'u_1', ?, '2026-01-01')",
        [(hashlib.sha256(t.encode()).hexdigest(), time.time() + 600) for t in tokens],
    )
    small = TokenCache(max_entries=4)
    auth = Authenticator(conn, 20, 10, cache=small)
    for _ in range(3):
        for token in tokens:
            scope = {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}
            assert auth.principal(HTTPConnection(scope)) == Principal("u_1", "user")
            assert len(small) <= 4
    conn.close()


def test_the_rate_limiter_has_fixed_memory():
    from live_runtime.server.auth import RateLimiter

    clock = FakeClock()
    limiter = RateLimiter(limit=3, window=60.0, slots=1024, clock=clock)
    sizes = (len(limiter._counts), len(limiter._starts))
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    assert limiter.hit("a") == 60 and limiter.retry_after("a") == 60
    clock.now += 59.5
    assert limiter.hit("a") == 1
    for n in range(100_000):  # many addresses: the table does not grow
        limiter.hit(f"address {n}")
    assert (len(limiter._counts), len(limiter._starts)) == sizes
    clock.now += 60.0
    assert limiter.hit("a") is None  # a new minute


def test_an_outdated_password_hash_is_replaced_at_sign_in(api: Api, server: RuntimeProcess):
    """A hash made with weaker parameters (as an older release might have) still verifies, and
    the sign-in stores a fresh hash of the same password in its place."""
    user = api.account("user")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(user["password"])
    with closing(sqlite3.connect(server.db, timeout=30)) as conn, conn:
        conn.execute(
            "UPDATE credentials SET password_hash = ? WHERE principal_id = ?", (weak, user["id"])
        )
    assert created(sign_in(api, user["login"], user["password"]))["id"] == user["id"]
    with closing(read_only(server.db)) as conn:
        (stored,) = conn.execute(
            "SELECT password_hash FROM credentials WHERE principal_id = ?", (user["id"],)
        ).fetchone()
    assert stored != weak and stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, user["password"])
    assert created(sign_in(api, user["login"], user["password"]))["id"] == user["id"]


def test_tokens_expired_for_over_a_day_are_purged_as_tokens_are_issued(tmp_path: Path):
    from live_runtime.ledger import accounts
    from live_runtime.ledger.writer import LedgerWriter
    from live_runtime.policy import load_policy

    writer = LedgerWriter(tmp_path / "ledger.db", "test")
    writer.start()
    try:
        made = writer.run_now(
            lambda tx: accounts.create_principal(tx, load_policy(), "user", "u")
        ).body
        now = time.time()
        ages = {"two days": 2 * 86_400, "a day and a minute": 86_460, "an hour": 3_600}
        rows = [(f"expired {age}", made["id"], now - seconds) for age, seconds in ages.items()]
        with closing(sqlite3.connect(tmp_path / "ledger.db", timeout=30)) as conn, conn:
            conn.executemany(
                "INSERT INTO tokens VALUES (?, ?, ?, '2026-01-01T00:00:00.000000Z')", rows
            )
        writer.run_now(
            lambda tx: accounts.new_token(tx, made["id"], accounts.hash_token(made["token"]), 60)
        )
        with closing(read_only(tmp_path / "ledger.db")) as conn:
            left = {h for (h,) in conn.execute("SELECT token_hash FROM tokens")}
    finally:
        writer.stop()
    assert "expired an hour" in left  # expired less than a day ago: still `token_expired`
    assert not left & {"expired two days", "expired a day and a minute"}
    assert accounts.hash_token(made["token"]) in left and len(left) == 3


def test_a_socket_open_when_its_token_is_revoked_is_closed(api: Api, server: RuntimeProcess):
    """Sign-out closes the sockets opened with that token (4401) and no other; revoke-all
    closes every socket of the account."""
    owner, fan = api.account("creator"), api.account("user")
    session = created(api.call("POST", "/v1/sessions", owner, json={}))["session_id"]
    other = mint(api, fan["token"], ttl_seconds=600)
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{session}/live"

    def closed_with(socket_) -> int:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket_.recv(timeout=5)
        return closed.value.rcvd.code

    with (
        connect(url, additional_headers={"Authorization": f"Bearer {fan['token']}"}) as first,
        connect(url, additional_headers={"Authorization": f"Bearer {other['token']}"}) as second,
    ):
        for socket_ in (first, second):
            assert json.loads(socket_.recv(timeout=5))["type"] == "state"
        signed_out = api.call("DELETE", "/v1/tokens/current", as_token(fan["token"]))
        assert signed_out.status_code == 204
        assert closed_with(first) == 4401
        assert second.recv(timeout=5)  # still open: it is sent the viewer count
        revoked = api.call("POST", "/v1/tokens/revoke-all", as_token(other["token"]))
        assert revoked.status_code == 204
        assert closed_with(second) == 4401
    assert api.call("POST", f"/v1/sessions/{session}/end", owner).status_code == 200
