"""A load generator for the runtime: creators go live, viewers buy coins, watch and send gifts.

It drives a running server over HTTP and WebSocket from one asyncio loop, the way real clients
would: creators start sessions (some with a co-host, a custom split, a pinned product), users
buy coin packs, watch a session over a WebSocket and send gifts as fast as the server answers
(a closed loop), sometimes buy the pinned product, and retry a gift now and then with the
same Idempotency-Key to check the retry moves nothing. A purchase or an order is a pending
payment until the user confirms it at the sandbox payment provider: only then are the coins
credited or the order paid. Sellers refund some orders. At the end creators end their
sessions and ask for payouts. Latency is measured per kind of request.

The generator shares the machine with the server, so it stays light: bodies are encoded once
per request without a client-side model, pushed WebSocket messages are counted, not parsed,
and wallets are checked against the balances the server returns rather than with extra reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from loadgen.api import (
    TIMEOUT,
    Actor,
    Answer,
    Live,
    LoadError,
    RuntimeApi,
    WatchingUser,
    check_health,
    coin_packs,
    connect_viewer,
    create_account,
    go_live,
    pay,
)
from loadgen.report import KINDS, KindReport, KindStats, LoadReport, Recorder

GIFT_COINS = (1, 5, 10, 20, 50, 100, 500, 1000)  # mostly small gifts
GIFT_WEIGHTS = (30, 25, 15, 10, 9, 7, 3, 1)
CHANNEL_WEIGHTS = {"web": 5, "ios": 3, "android": 2}
ORDER_SHARE = 0.02  # of a user's loop iterations: check out the pinned product
READ_SHARE = 0.02  # of a user's loop iterations: look at the session or the wallet
REPLAY_SHARE = 0.01  # of gifts: send the same request again with the same key
OVERSPEND_SHARE = 0.5  # of gifts the wallet cannot afford: try anyway, get a 402, then buy
REFUND_SHARE = 0.1  # of orders: the seller refunds it later
PROGRESS_EVERY = 5.0  # seconds
SETUP_PARALLEL = 16


class Load:
    """One run: setup, the closed loop, teardown."""

    def __init__(
        self, api: RuntimeApi, users: int, duration: float, seed: int, watch: bool = True
    ) -> None:
        self.api = api
        self.watch_sessions = watch
        self.rec = api.rec
        self.users = users
        self.duration = duration
        self.seed = seed
        self.packs: list[int] = []
        self.pack_weights: list[float] = []
        self.creators: list[Actor] = []
        self.lives: list[Live] = []
        self.viewers: list[WatchingUser] = []
        self.orders: dict[str, list[str]] = {}  # creator id -> orders of theirs, to refund
        self.ws_messages = 0
        self.ended = False

    async def setup(self) -> None:
        await check_health(self.api)
        count = max(1, round(self.users / 10))
        limit = asyncio.Semaphore(SETUP_PARALLEL)

        async def account(kind: str, n: int) -> Actor:
            async with limit:
                return await create_account(
                    self.api, kind, f"load {kind} {n}", self.seed * 7919 + n
                )

        self.creators = list(await asyncio.gather(*(account("creator", n) for n in range(count))))
        self.orders = {c.id: [] for c in self.creators}
        self.lives = await go_live(self.api, self.creators)
        users = await asyncio.gather(*(account("user", count + n) for n in range(self.users)))
        self.packs = await coin_packs(self.api, users[0])
        self.pack_weights = [1 / (1 + i) for i in range(len(self.packs))]  # small packs sell most
        self.viewers = [
            WatchingUser(u, self.lives[n % len(self.lives)]) for n, u in enumerate(users)
        ]

        async def ready(viewer: WatchingUser) -> None:
            async with limit:
                if self.watch_sessions:
                    await connect_viewer(self.api, viewer)
                await self.buy(viewer)

        await asyncio.gather(*(ready(v) for v in self.viewers))

    async def watch(self, viewer: WatchingUser) -> None:
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

    async def buy(self, viewer: WatchingUser) -> None:
        """A coin pack: asked for (a pending payment), then confirmed at the sandbox provider.
        The answers carry no balance: the next gift's answer shows whether it was credited."""
        rng = viewer.user.rng
        coins = rng.choices(self.packs, self.pack_weights)[0]
        channel = rng.choices(list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values()))[0]
        body = {"coins": coins, "channel": channel}
        pending = await self.api.call(
            "purchase", "POST", "/v1/wallet/purchases", viewer.user, body, viewer.user.key(),
            expect=(202,),
        )  # fmt: skip
        if pending is None or not await pay(self.api, pending.body):
            viewer.unsure = True  # perhaps credited: the next balance is news
            return
        viewer.coins += coins

    def _balance(self, viewer: WatchingUser, kind: str, reported: int, expected: int) -> None:
        """Only this user moves this wallet, so every reported balance is predictable."""
        if viewer.unsure:
            viewer.unsure = False
        elif reported != expected:
            detail = f"{viewer.user.id}: server says {reported}, expected {expected}"
            self.rec.problem(kind, "wallet balance off", detail)
        viewer.coins = reported

    async def gift(self, viewer: WatchingUser) -> None:
        rng = viewer.user.rng
        coins = rng.choices(GIFT_COINS, GIFT_WEIGHTS)[0]
        if coins > viewer.coins and rng.random() >= OVERSPEND_SHARE:
            await self.buy(viewer)
        path = f"/v1/sessions/{viewer.live.id}/gifts"
        key, body = viewer.user.key(), {"coins": coins}
        answer = await self.api.call(
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

    async def replay(
        self, viewer: WatchingUser, path: str, key: str, body: dict, first: Answer
    ) -> None:
        """The same gift again, as a client would after a lost answer: the first answer comes
        back marked replayed, and the next gift's balance shows whether anything moved."""
        again = await self.api.call("gift", "POST", path, viewer.user, body, key)
        self.rec.replays += 1
        if again is not None and (not again.replayed or again.body != first.body):
            self.rec.problem("gift", "retry not replayed", f"{viewer.user.id} key {key}")

    async def order(self, viewer: WatchingUser) -> None:
        live = viewer.live
        body = {
            "product_id": live.product_id,
            "quantity": viewer.user.rng.choice((1, 1, 1, 2, 3)),
            "session_id": live.id,
        }
        pending = await self.api.call(
            "order", "POST", "/v1/orders", viewer.user, body, viewer.user.key(), expect=(202,)
        )
        if pending is None or not await pay(self.api, pending.body):
            return
        if viewer.user.rng.random() < REFUND_SHARE:  # paid: the seller may refund it later
            self.orders[pending.body["creator_id"]].append(pending.body["order_id"])

    async def look(self, viewer: WatchingUser) -> None:
        if viewer.user.rng.random() < 0.5:
            await self.api.call("other", "GET", f"/v1/sessions/{viewer.live.id}", viewer.user)
            return
        answer = await self.api.call("other", "GET", "/v1/me", viewer.user)
        if answer is not None:
            self._balance(viewer, "other", answer.body["coins"], viewer.coins)

    async def user_loop(self, viewer: WatchingUser, deadline: float) -> None:
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
            paid = self.orders[creator.id]
            if paid:  # the provider refunds the buyer; no body is needed
                order_id = paid.pop(0)
                await self.api.call("other", "POST", f"/v1/orders/{order_id}/refund", creator)

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
            await self.api.call("other", "POST", f"/v1/sessions/{live.id}/end", live.owner)
        _, late = await asyncio.wait(watchers, timeout=10) if watchers else (set(), set())
        for task in late:
            task.cancel()
        if late:
            self.rec.problem("other", "WebSocket not closed after the session ended")
        for creator in self.creators:
            await self.payout(creator)

    async def payout(self, creator: Actor) -> None:
        me = await self.api.call("other", "GET", "/v1/me", creator)
        if me is None or me.body.get("balance_minor", 0) <= 0:
            return
        key = creator.key()
        below = {409: "below payout threshold"}
        first = await self.api.call(
            "other", "POST", "/v1/payouts", creator, {}, key, refusals=below
        )
        if first is None or first.status != 201:
            return
        again = await self.api.call("other", "POST", "/v1/payouts", creator, {}, key)
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
        load = Load(RuntimeApi(url, http, recorder), users, duration, seed, watch)
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
