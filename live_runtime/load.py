"""A load generator for the runtime: creators go live, viewers buy coins, watch and send gifts.

It drives a running server over HTTP and WebSocket from one asyncio loop, the way real clients
would: creators start sessions (some with a co-host, a custom split, a pinned product), users
buy coin packs, watch a session over a WebSocket and send gifts as fast as the server answers
(a closed loop), sometimes buy the pinned product, and retry a gift now and then with the
same Idempotency-Key to check the retry moves nothing. At the end creators end their sessions
and ask for payouts. Latency is measured per kind of request.

The generator shares the machine with the server, so it stays light: bodies are encoded once
per request without a client-side model, pushed WebSocket messages are counted, not parsed,
and wallets are checked against the balances the server returns rather than with extra reads.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

KINDS = ("gift", "purchase", "order", "other")
GIFT_COINS = (1, 5, 10, 20, 50, 100, 500, 1000)  # mostly small gifts
GIFT_WEIGHTS = (30, 25, 15, 10, 9, 7, 3, 1)
CHANNEL_WEIGHTS = {"web": 5, "ios": 3, "android": 2}
QUALITIES = ("480p", "720p", "720p", "1080p")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
ORDER_SHARE = 0.02  # of a user's loop iterations: check out the pinned product
READ_SHARE = 0.02  # of a user's loop iterations: look at the session or the wallet
REPLAY_SHARE = 0.01  # of gifts: send the same request again with the same key
OVERSPEND_SHARE = 0.5  # of gifts the wallet cannot afford: try anyway, get a 402, then buy
REFUND_SHARE = 0.1  # of orders: the seller refunds it later
PROGRESS_EVERY = 5.0  # seconds
SETUP_PARALLEL = 16
TIMEOUT = aiohttp.ClientTimeout(total=30)
JSON = {"Content-Type": "application/json"}


class LoadError(Exception):
    """The load could not start or set up: the server is unreachable or refused the setup."""


# Measurement -----------------------------------------------------------------------------


@dataclass
class KindStats:
    """Latencies (seconds) and statuses of one kind of request."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def add(self, status: int | str, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1


@dataclass
class KindReport:
    kind: str
    requests: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    refused: int  # expected business refusals (402 insufficient balance)
    unexpected: int

    @classmethod
    def of(cls, kind: str, stats: KindStats, seconds: float, refused: int, unexpected: int):
        ordered = sorted(stats.latencies)

        def pct(q: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        return cls(
            kind,
            len(ordered),
            len(ordered) / seconds if seconds > 0 else 0.0,
            pct(0.50),
            pct(0.95),
            pct(0.99),
            ordered[-1] * 1000 if ordered else 0.0,
            refused,
            unexpected,
        )


@dataclass
class LoadReport:
    """What one load run measured; `ok` is False on any outcome the server should not give."""

    url: str
    users: int
    creators: int
    sessions: int
    seconds: float  # the closed-loop window, start to the last user's last answer
    kinds: dict[str, KindReport]
    unexpected: dict[str, int]  # label (status, transport error, check) -> count
    refused: dict[str, int]  # expected refusals by label
    ws_messages: int
    ws_connections: int
    replays: int
    setup_requests: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected

    @property
    def gifts_per_second(self) -> float:
        return self.kinds["gift"].per_second

    @property
    def total(self) -> KindReport:
        return self.kinds["all"]

    def table(self) -> str:
        head = (
            f"runtime load: {self.users} users, {self.creators} creators, {self.sessions} live "
            f"sessions, {self.seconds:.1f}s closed loop against {self.url}"
        )
        columns = ("kind", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms")
        columns += ("402s", "unexpected")
        rows = [columns]
        for r in self.kinds.values():
            rows.append(
                (
                    r.kind,
                    f"{r.requests:,}",
                    f"{r.per_second:,.1f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p95_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.max_ms:.1f}",
                    f"{r.refused:,}",
                    f"{r.unexpected:,}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines = [head, ""]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells))
        rate = self.ws_messages / self.seconds if self.seconds > 0 else 0.0
        lines += [
            "",
            f"WebSocket messages received: {self.ws_messages:,} ({rate:,.0f}/s) on "
            f"{self.ws_connections} viewer connections",
            f"idempotent retries checked: {self.replays:,}",
            f"setup and teardown requests: {self.setup_requests:,}",
            f"expected refusals: {_labels(self.refused)}",
            f"unexpected: {_labels(self.unexpected)}",
            *self.notes,
            f"result: {'OK' if self.ok else 'FAILED'}",
        ]
        return "\n".join(lines)


def _labels(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "none"


class Recorder:
    """Collects every answer; the closed-loop window and setup/teardown are kept apart."""

    def __init__(self) -> None:
        self.kinds = {k: KindStats() for k in KINDS}
        self.setup = KindStats()
        self.in_window = False
        self.refused: Counter = Counter()
        self.unexpected: Counter = Counter()
        self.refused_by_kind: Counter = Counter()
        self.unexpected_by_kind: Counter = Counter()
        self.replays = 0
        self.examples: dict[str, str] = {}
        self.last_problem = ""

    def answer(self, kind: str, status: int | str, seconds: float) -> None:
        (self.kinds[kind] if self.in_window else self.setup).add(status, seconds)

    def refusal(self, kind: str, label: str) -> None:
        self.refused[label] += 1
        self.refused_by_kind[kind] += 1

    def problem(self, kind: str, label: str, detail: str = "") -> None:
        self.unexpected[label] += 1
        self.unexpected_by_kind[kind] += 1
        self.last_problem = f"{label}: {detail}" if detail else label
        if detail and label not in self.examples:
            self.examples[label] = detail[:200]


# The client ------------------------------------------------------------------------------


@dataclass
class Actor:
    """A user or creator with a bearer token."""

    id: str
    headers: dict[str, str]
    rng: random.Random
    keys: int = 0
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def key(self) -> str:
        self.keys += 1
        return f"{self.prefix}-{self.keys}"


@dataclass
class Live:
    """A live session as the load knows it."""

    id: str
    owner: Actor
    product_id: str | None = None


@dataclass
class Viewer:
    user: Actor
    live: Live
    coins: int = 0  # the wallet balance the server last reported
    unsure: bool = False  # a money request failed in transit: the next balance is news
    socket: aiohttp.ClientWebSocketResponse | None = None


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool


class Client:
    """Requests against the runtime, each timed and classified as it returns."""

    def __init__(self, url: str, http: aiohttp.ClientSession, recorder: Recorder) -> None:
        self.url = url.rstrip("/")
        self.http = http
        self.rec = recorder

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        who: Actor | None = None,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        expect: tuple[int, ...] = (200, 201),
        refusals: dict[int, str] | None = None,
    ) -> Answer | None:
        """One request; None when it failed unexpectedly (already counted)."""
        headers = dict(who.headers) if who else dict(JSON)
        if key is not None:
            headers["Idempotency-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            async with self.http.request(
                method, self.url + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                status = response.status
                replayed = response.headers.get("Idempotent-Replayed") == "true"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.rec.answer(kind, "transport", time.perf_counter() - started)
            self.rec.problem(kind, "transport error", f"{method} {path}: {exc!r}")
            await asyncio.sleep(0.05)  # a failing server must not turn the loop into a spin
            return None
        self.rec.answer(kind, status, time.perf_counter() - started)
        if status in expect:
            return Answer(status, json.loads(raw) if raw else {}, replayed)
        if refusals and status in refusals:
            self.rec.refusal(kind, f"{status} {refusals[status]}")
            return Answer(status, {}, replayed)
        label = f"{status}" if status >= 500 else f"{status} on {kind}"
        self.rec.problem(kind, label, f"{method} {path}: {raw[:160].decode(errors='replace')}")
        return None


# Setup -----------------------------------------------------------------------------------


async def _check_health(client: Client) -> None:
    try:
        async with client.http.get(client.url + "/v1/health") as response:
            if response.status != 200:
                raise LoadError(f"{client.url}/v1/health answered {response.status}")
            await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoadError(f"cannot reach the runtime at {client.url}: {exc}") from exc


async def _required(client: Client, what: str, *args: Any, **kwargs: Any) -> Answer:
    answer = await client.call("other", *args, **kwargs)
    if answer is None:
        raise LoadError(f"setup failed to {what}: {client.rec.last_problem}")
    return answer


async def _account(client: Client, kind: str, name: str, seed: int) -> Actor:
    answer = await _required(
        client,
        f"create a {kind}",
        "POST",
        "/v1/accounts",
        body={"kind": kind, "display_name": name},
    )
    headers = {"Authorization": f"Bearer {answer.body['token']}", **JSON}
    return Actor(answer.body["id"], headers, random.Random(seed))


async def coin_packs(client: Client, who: Actor) -> list[int]:
    """The coin pack sizes on sale, from the API's description or, failing that, its refusal.

    An unknown pack is refused with a message that lists the packs on sale, and moves nothing.
    """
    try:
        async with client.http.get(client.url + "/openapi.json") as response:
            if response.status == 200:
                packs = _packs_in_openapi(await response.json(content_type=None))
                if packs:
                    return packs
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        pass
    body = {"coins": 1, "channel": "web"}
    answer = await client.call(
        "other", "POST", "/v1/wallet/purchases", who, body, who.key(), expect=(422,)
    )
    message = answer.body.get("message", "") if answer else ""
    _, _, listed = message.partition("packs:")
    packs = sorted(int(p) for p in listed.strip(" )").split(",") if p.strip().isdigit())
    if not packs:
        raise LoadError(f"could not learn the coin packs on sale from {client.url}")
    return packs


def _packs_in_openapi(spec: dict[str, Any]) -> list[int]:
    """The `coins` enum of the purchase request's schema, if the description gives one."""
    try:
        post = spec["paths"]["/v1/wallet/purchases"]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        while "$ref" in schema:
            node: Any = spec
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        return sorted(int(c) for c in schema["properties"]["coins"]["enum"])
    except (KeyError, TypeError, ValueError):
        return []


async def _go_live(client: Client, creators: list[Actor]) -> list[Live]:
    """Every creator starts a session; some invite the next creator as a co-host, some set
    the split, most create a product, list their products and pin one."""
    lives = []
    for i, creator in enumerate(creators):
        body = {
            "region": creator.rng.choice(REGIONS),
            "quality": creator.rng.choice(QUALITIES),
            "record": creator.rng.random() < 0.3,
        }
        answer = await _required(client, "start a session", "POST", "/v1/sessions", creator, body)
        lives.append(Live(answer.body["session_id"], creator))
        if i % 3 != 2:
            lives[-1].product_id = await _pin_product(client, creator, lives[-1].id, i)
    for i in range(0, len(creators) - 1, 2):
        await _add_cohost(client, lives[i], creators[i + 1], weighted=i % 4 == 0)
    return lives


async def _pin_product(client: Client, creator: Actor, session_id: str, i: int) -> str:
    for n in range(2):
        body = {"name": f"merch {i}-{n}", "price_minor": creator.rng.choice((499, 1499, 2999))}
        await _required(client, "create a product", "POST", "/v1/products", creator, body)
    listed = await _required(
        client, "list products", "GET", f"/v1/creators/{creator.id}/products", creator
    )
    product_id = listed.body["products"][0]["product_id"]
    body = {"product_id": product_id}
    await _required(
        client, "pin a product", "POST", f"/v1/sessions/{session_id}/pin", creator, body
    )
    return product_id


async def _add_cohost(client: Client, live: Live, guest: Actor, weighted: bool) -> None:
    base = f"/v1/sessions/{live.id}"
    body = {"creator_id": guest.id}
    await _required(client, "invite a co-host", "POST", f"{base}/cohosts", live.owner, body)
    await _required(client, "join as co-host", "POST", f"{base}/join", guest)
    if weighted:
        body = {"weights": {live.owner.id: 3, guest.id: 1}}
        await _required(client, "set the split", "PUT", f"{base}/split", live.owner, body)


async def _connect(client: Client, viewer: Viewer) -> None:
    url = f"{client.url}/v1/sessions/{viewer.live.id}/live".replace("http", "ws", 1)
    auth = {"Authorization": viewer.user.headers["Authorization"]}
    try:
        viewer.socket = await client.http.ws_connect(url, headers=auth, max_msg_size=0)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoadError(f"could not watch session {viewer.live.id} over WebSocket: {exc}") from exc


# The run ---------------------------------------------------------------------------------


class Load:
    """One run: setup, the closed loop, teardown."""

    def __init__(
        self, client: Client, users: int, duration: float, seed: int, watch: bool = True
    ) -> None:
        self.client = client
        self.watch_sessions = watch
        self.rec = client.rec
        self.users = users
        self.duration = duration
        self.seed = seed
        self.packs: list[int] = []
        self.pack_weights: list[float] = []
        self.creators: list[Actor] = []
        self.lives: list[Live] = []
        self.viewers: list[Viewer] = []
        self.orders: dict[str, list[str]] = {}  # creator id -> orders of theirs, to refund
        self.ws_messages = 0
        self.ended = False

    async def setup(self) -> None:
        await _check_health(self.client)
        count = max(1, round(self.users / 10))
        limit = asyncio.Semaphore(SETUP_PARALLEL)

        async def account(kind: str, n: int) -> Actor:
            async with limit:
                return await _account(self.client, kind, f"load {kind} {n}", self.seed * 7919 + n)

        self.creators = list(await asyncio.gather(*(account("creator", n) for n in range(count))))
        self.orders = {c.id: [] for c in self.creators}
        self.lives = await _go_live(self.client, self.creators)
        users = await asyncio.gather(*(account("user", count + n) for n in range(self.users)))
        self.packs = await coin_packs(self.client, users[0])
        self.pack_weights = [1 / (1 + i) for i in range(len(self.packs))]  # small packs sell most
        self.viewers = [Viewer(u, self.lives[n % len(self.lives)]) for n, u in enumerate(users)]

        async def ready(viewer: Viewer) -> None:
            async with limit:
                if self.watch_sessions:
                    await _connect(self.client, viewer)
                await self.buy(viewer)

        await asyncio.gather(*(ready(v) for v in self.viewers))

    async def watch(self, viewer: Viewer) -> None:
        """Counts what the server pushes to this viewer until the session ends."""
        socket = viewer.socket
        assert socket is not None
        try:
            async for message in socket:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.ws_messages += 1
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
        except (aiohttp.ClientError, OSError) as exc:
            self.rec.problem("other", "WebSocket error", repr(exc))
            return
        if not self.ended:
            self.rec.problem("other", f"WebSocket closed early ({socket.close_code})")

    # One user's actions ------------------------------------------------------------------

    async def buy(self, viewer: Viewer) -> None:
        rng = viewer.user.rng
        coins = rng.choices(self.packs, self.pack_weights)[0]
        channel = rng.choices(list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values()))[0]
        body = {"coins": coins, "channel": channel}
        answer = await self.client.call(
            "purchase", "POST", "/v1/wallet/purchases", viewer.user, body, viewer.user.key()
        )
        if answer is None:
            viewer.unsure = True
        else:
            self._balance(viewer, "purchase", answer.body["balance_coins"], viewer.coins + coins)

    def _balance(self, viewer: Viewer, kind: str, reported: int, expected: int) -> None:
        """Only this user moves this wallet, so every reported balance is predictable."""
        if viewer.unsure:
            viewer.unsure = False
        elif reported != expected:
            detail = f"{viewer.user.id}: server says {reported}, expected {expected}"
            self.rec.problem(kind, "wallet balance off", detail)
        viewer.coins = reported

    async def gift(self, viewer: Viewer) -> None:
        rng = viewer.user.rng
        coins = rng.choices(GIFT_COINS, GIFT_WEIGHTS)[0]
        if coins > viewer.coins and rng.random() >= OVERSPEND_SHARE:
            await self.buy(viewer)
        path = f"/v1/sessions/{viewer.live.id}/gifts"
        key, body = viewer.user.key(), {"coins": coins}
        answer = await self.client.call(
            "gift", "POST", path, viewer.user, body, key, refusals={402: "insufficient balance"}
        )
        if answer is None:
            viewer.unsure = True
            return
        if answer.status == 402:
            if coins <= viewer.coins:
                self.rec.problem("gift", "402 with coins enough", f"{viewer.user.id}")
            await self.buy(viewer)
            return
        self._balance(viewer, "gift", answer.body["balance_coins"], viewer.coins - coins)
        if rng.random() < REPLAY_SHARE:
            await self.replay(viewer, path, key, body, answer)

    async def replay(self, viewer: Viewer, path: str, key: str, body: dict, first: Answer) -> None:
        """The same gift again, as a client would after a lost answer: the first answer comes
        back marked replayed, and the next gift's balance shows whether anything moved."""
        again = await self.client.call("gift", "POST", path, viewer.user, body, key)
        self.rec.replays += 1
        if again is not None and (not again.replayed or again.body != first.body):
            self.rec.problem("gift", "retry not replayed", f"{viewer.user.id} key {key}")

    async def order(self, viewer: Viewer) -> None:
        live = viewer.live
        body = {
            "product_id": live.product_id,
            "quantity": viewer.user.rng.choice((1, 1, 1, 2, 3)),
            "session_id": live.id,
        }
        answer = await self.client.call(
            "order", "POST", "/v1/orders", viewer.user, body, viewer.user.key()
        )
        if answer is not None and viewer.user.rng.random() < REFUND_SHARE:
            self.orders[answer.body["creator_id"]].append(answer.body["order_id"])

    async def look(self, viewer: Viewer) -> None:
        if viewer.user.rng.random() < 0.5:
            await self.client.call("other", "GET", f"/v1/sessions/{viewer.live.id}", viewer.user)
            return
        answer = await self.client.call("other", "GET", "/v1/me", viewer.user)
        if answer is not None:
            self._balance(viewer, "other", answer.body["coins"], viewer.coins)

    async def user_loop(self, viewer: Viewer, deadline: float) -> None:
        rng = viewer.user.rng
        clock = asyncio.get_running_loop().time
        while clock() < deadline:
            roll = rng.random()
            if roll < ORDER_SHARE and viewer.live.product_id:
                await self.order(viewer)
            elif roll < ORDER_SHARE + READ_SHARE:
                await self.look(viewer)
            else:
                await self.gift(viewer)

    async def creator_loop(self, creator: Actor, deadline: float) -> None:
        """Creators act at human pace: now and then a refund of one of their orders."""
        clock = asyncio.get_running_loop().time
        while clock() < deadline:
            await asyncio.sleep(min(creator.rng.uniform(0.5, 1.5), max(0.0, deadline - clock())))
            pending = self.orders[creator.id]
            if pending:
                order_id = pending.pop(0)
                body = {"reason": "requested_by_buyer"}
                await self.client.call(
                    "other", "POST", f"/v1/orders/{order_id}/refund", creator, body
                )

    # The window and the end --------------------------------------------------------------

    async def run_window(self, progress: Callable[[str], None] | None) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.duration
        self.rec.in_window = True
        tasks = [asyncio.create_task(self.user_loop(v, deadline)) for v in self.viewers]
        tasks += [asyncio.create_task(self.creator_loop(c, deadline)) for c in self.creators]
        reporter = asyncio.create_task(self._report_progress(started, progress))
        try:
            await asyncio.gather(*tasks)
        finally:
            reporter.cancel()
            for task in tasks:
                task.cancel()
        seconds = loop.time() - started
        self.rec.in_window = False
        return seconds

    async def _report_progress(
        self, started: float, progress: Callable[[str], None] | None
    ) -> None:
        if progress is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            elapsed = loop.time() - started
            gifts = len(self.rec.kinds["gift"].latencies)
            progress(
                f"{elapsed:5.1f}s: {gifts:,} gifts ({gifts / elapsed:,.0f}/s), "
                f"{sum(len(s.latencies) for s in self.rec.kinds.values()):,} requests, "
                f"{self.ws_messages:,} pushed messages, "
                f"{sum(self.rec.unexpected.values())} unexpected"
            )

    async def teardown(self, watchers: list[asyncio.Task]) -> None:
        """Ends every session (viewers' sockets close after `ended`), then pays creators out."""
        self.ended = True
        for live in self.lives:
            await self.client.call("other", "POST", f"/v1/sessions/{live.id}/end", live.owner)
        _, late = await asyncio.wait(watchers, timeout=10) if watchers else (set(), set())
        for task in late:
            task.cancel()
        if late:
            self.rec.problem("other", "WebSocket not closed after the session ended")
        for creator in self.creators:
            await self.payout(creator)

    async def payout(self, creator: Actor) -> None:
        me = await self.client.call("other", "GET", "/v1/me", creator)
        if me is None or me.body.get("balance_minor", 0) <= 0:
            return
        key = creator.key()
        below = {409: "below payout threshold"}
        first = await self.client.call(
            "other", "POST", "/v1/payouts", creator, {}, key, refusals=below
        )
        if first is None or first.status != 201:
            return
        again = await self.client.call("other", "POST", "/v1/payouts", creator, {}, key)
        self.rec.replays += 1
        if again is not None and (not again.replayed or again.body != first.body):
            self.rec.problem("other", "retry not replayed", f"payout of {creator.id}")

    def report(self, url: str, seconds: float) -> LoadReport:
        rec = self.rec
        kinds = {
            k: KindReport.of(
                k, rec.kinds[k], seconds, rec.refused_by_kind[k], rec.unexpected_by_kind[k]
            )
            for k in KINDS
        }
        everything = KindStats()
        for k in KINDS:
            everything.latencies += rec.kinds[k].latencies
        kinds["all"] = KindReport.of(
            "all",
            everything,
            seconds,
            sum(rec.refused_by_kind.values()),
            sum(rec.unexpected.values()),
        )
        notes = [f"  e.g. {label}: {text}" for label, text in sorted(rec.examples.items())]
        return LoadReport(
            url=url,
            users=self.users,
            creators=len(self.creators),
            sessions=len(self.lives),
            seconds=seconds,
            kinds=kinds,
            unexpected=dict(rec.unexpected),
            refused=dict(rec.refused),
            ws_messages=self.ws_messages,
            ws_connections=sum(1 for v in self.viewers if v.socket is not None),
            replays=rec.replays,
            setup_requests=len(rec.setup.latencies),
            notes=notes,
        )


async def _run(
    url: str,
    users: int,
    duration: float,
    progress: Callable[[str], None] | None,
    seed: int,
    watch: bool,
) -> LoadReport:
    recorder = Recorder()
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as http:
        load = Load(Client(url, http, recorder), users, duration, seed, watch)
        try:
            await load.setup()
            if progress:
                progress(
                    f"set up {len(load.creators)} creators, {len(load.lives)} live sessions and "
                    f"{users} viewers; running {duration:g}s"
                )
            watchers = [asyncio.create_task(load.watch(v)) for v in load.viewers if v.socket]
            seconds = await load.run_window(progress)
            await load.teardown(watchers)
        finally:
            for viewer in load.viewers:
                if viewer.socket is not None and not viewer.socket.closed:
                    await viewer.socket.close()
    return load.report(url, seconds)


def run_load(
    url: str,
    users: int = 50,
    duration: float = 30.0,
    progress: Callable[[str], None] | None = None,
    seed: int = 1,
    watch: bool = True,
) -> LoadReport:
    """Drives the runtime at `url` with `users` closed-loop viewers for `duration` seconds.

    `watch=False` keeps the users off the WebSockets, to measure the API without the fan-out
    of every gift to the session's viewers.
    """
    if users < 1 or duration <= 0:
        raise LoadError("users must be at least 1 and duration positive")
    return _runner()(_run(url, users, duration, progress, seed, watch))


def _runner() -> Callable:
    """uvloop when installed (it ships with the server's dependencies): less CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run

    def run(main):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    return run
