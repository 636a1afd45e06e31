"""The runtime's API as the load generator sees it: accounts, requests timed as they return,
payments confirmed at the sandbox provider, and the setup a run needs (creators live with
products and co-hosts, viewers watching)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadgen.report import Recorder

QUALITIES = ("480p", "720p", "720p", "1080p")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
TIMEOUT = aiohttp.ClientTimeout(total=30)
JSON = {"Content-Type": "application/json"}


class LoadError(Exception):
    """The load could not start or set up: the server is unreachable or refused the setup."""


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
class WatchingUser:
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


class RuntimeApi:
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


async def check_health(api: RuntimeApi) -> None:
    try:
        async with api.http.get(api.url + "/v1/health") as response:
            if response.status != 200:
                raise LoadError(f"{api.url}/v1/health answered {response.status}")
            await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoadError(f"cannot reach the runtime at {api.url}: {exc}") from exc


async def _required(api: RuntimeApi, what: str, *args: Any, **kwargs: Any) -> Answer:
    answer = await api.call("other", *args, **kwargs)
    if answer is None:
        raise LoadError(f"setup failed to {what}: {api.rec.last_problem}")
    return answer


async def create_account(api: RuntimeApi, kind: str, name: str, seed: int) -> Actor:
    """A new account with a login of its own and a random password (the load signs in with
    the token it gets, never the password). Past the server's per-address limit on account
    creation (429) the setup fails: raise CREATOR_ECON_SIGNUPS_PER_MINUTE on the server."""
    login = f"load-{kind}-{uuid.uuid4().hex[:20]}"
    body = {"kind": kind, "display_name": name, "login": login, "password": uuid.uuid4().hex}
    answer = await _required(api, f"create a {kind}", "POST", "/v1/accounts", body=body)
    headers = {"Authorization": f"Bearer {answer.body['token']}", **JSON}
    return Actor(answer.body["id"], headers, random.Random(seed))


async def coin_packs(api: RuntimeApi, who: Actor) -> list[int]:
    """The coin pack sizes on sale, from the API's description or, failing that, its refusal.

    An unknown pack is refused with a message that lists the packs on sale, and moves nothing.
    """
    try:
        async with api.http.get(api.url + "/openapi.json") as response:
            if response.status == 200:
                packs = _packs_in_openapi(await response.json(content_type=None))
                if packs:
                    return packs
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        pass
    body = {"coins": 1, "channel": "web"}
    answer = await api.call(
        "other", "POST", "/v1/wallet/purchases", who, body, who.key(), expect=(422,)
    )
    message = answer.body.get("message", "") if answer else ""
    _, _, listed = message.partition("packs:")
    packs = sorted(int(p) for p in listed.strip(" )").split(",") if p.strip().isdigit())
    if not packs:
        raise LoadError(f"could not learn the coin packs on sale from {api.url}")
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


async def pay(api: RuntimeApi, pending: dict[str, Any], action: str = "confirm") -> bool:
    """What the payer does at the sandbox provider with a pending payment's client secret
    (`confirm` or `decline`); it answers once the runtime has applied the provider's signed
    notification. True when it was applied; a failure is already counted."""
    path = f"/sandbox/v1/payment_intents/{pending['payment_id']}/{action}"
    body = {"client_secret": pending["client_secret"]}
    answer = await api.call("payment", "POST", path, None, body, expect=(200,))
    if answer is None:
        return False
    outcome = answer.body.get("notification", {}).get("outcome")
    if outcome != "applied":
        api.rec.problem("payment", f"{action} not applied", f"{pending['payment_id']}: {outcome}")
        return False
    return True


async def go_live(api: RuntimeApi, creators: list[Actor]) -> list[Live]:
    """Every creator starts a session; some invite the next creator as a co-host, some set
    the split, most create a product, list their products and pin one."""
    lives = []
    for i, creator in enumerate(creators):
        body = {
            "region": creator.rng.choice(REGIONS),
            "quality": creator.rng.choice(QUALITIES),
            "record": creator.rng.random() < 0.3,
        }
        answer = await _required(api, "start a session", "POST", "/v1/sessions", creator, body)
        lives.append(Live(answer.body["session_id"], creator))
        if i % 3 != 2:
            lives[-1].product_id = await _pin_product(api, creator, lives[-1].id, i)
    for i in range(0, len(creators) - 1, 2):
        await _add_cohost(api, lives[i], creators[i + 1], weighted=i % 4 == 0)
    return lives


async def _pin_product(api: RuntimeApi, creator: Actor, session_id: str, i: int) -> str:
    for n in range(2):
        body = {"name": f"merch {i}-{n}", "price_minor": creator.rng.choice((499, 1499, 2999))}
        await _required(api, "create a product", "POST", "/v1/products", creator, body)
    listed = await _required(
        api, "list products", "GET", f"/v1/creators/{creator.id}/products", creator
    )
    product_id = listed.body["products"][0]["product_id"]
    body = {"product_id": product_id}
    await _required(api, "pin a product", "POST", f"/v1/sessions/{session_id}/pin", creator, body)
    return product_id


async def _add_cohost(api: RuntimeApi, live: Live, guest: Actor, weighted: bool) -> None:
    """The owner invites the next creator, who joins accepting the split the invitation
    shows (every host's weight)."""
    base = f"/v1/sessions/{live.id}"
    body = {"creator_id": guest.id}
    invited = await _required(api, "invite a co-host", "POST", f"{base}/cohosts", live.owner, body)
    accept = {"accept_split": invited.body["split"]}
    await _required(api, "join as co-host", "POST", f"{base}/join", guest, accept)
    if weighted:
        body = {"weights": {live.owner.id: 3, guest.id: 1}}
        await _required(api, "set the split", "PUT", f"{base}/split", live.owner, body)


async def connect_viewer(api: RuntimeApi, viewer: WatchingUser) -> None:
    url = f"{api.url}/v1/sessions/{viewer.live.id}/live".replace("http", "ws", 1)
    auth = {"Authorization": viewer.user.headers["Authorization"]}
    try:
        viewer.socket = await api.http.ws_connect(url, headers=auth, max_msg_size=0)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise LoadError(f"could not watch session {viewer.live.id} over WebSocket: {exc}") from exc
