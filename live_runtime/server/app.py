"""The runtime's HTTP and WebSocket API: thin handlers over the ledger's operations.

A handler authenticates, parses, and hands one operation to the ledger writer; it answers
only after the commit, then pushes what the operation produced to the session's viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from live_runtime.events import CHANNELS
from live_runtime.ledger import books
from live_runtime.ledger import operations as ops
from live_runtime.ledger.schema import connect
from live_runtime.ledger.writer import Idempotency, LedgerWriter, Operation, Outcome
from live_runtime.policy import Policy, load_policy
from live_runtime.relay import OutboxRelay
from live_runtime.server import inputs
from live_runtime.server.auth import Authenticator, Principal
from live_runtime.server.inputs import BadRequest
from live_runtime.server.rooms import Room, Rooms, Viewer, send_loop

log = logging.getLogger(__name__)
OPENAPI = Path(__file__).with_name("openapi.json")
MAX_TOKEN_TTL = 366 * 86_400


@dataclass
class RuntimeConfig:
    db: Path
    telemetry: Path
    source: str = "runtime"
    policy: Policy = field(default_factory=load_policy)
    group_commit: bool = True
    durable: bool = True
    max_file_age_seconds: float = 60.0


class Runtime:
    """The running parts: ledger writer, outbox relay, rooms and the metering clock."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.policy = config.policy
        self.rooms = Rooms()
        self._lock = _lock_ledger(Path(config.db))
        self.writer = LedgerWriter(  # first: it creates the schema the relay reads
            config.db,
            config.source,
            group_commit=config.group_commit,
            durable=config.durable,
            on_commit=lambda: self.relay.notify(),
        )
        self.relay = OutboxRelay(
            config.db,
            config.telemetry,
            config.source,
            max_file_age_seconds=config.max_file_age_seconds,
            mark=self._mark_relayed,
        )
        self.auth = Authenticator(connect(config.db))

    def _mark_relayed(self, seqs: list[int]) -> None:
        def mark(tx) -> tuple[int, dict]:
            tx.conn.executemany("UPDATE outbox SET relayed = 1 WHERE seq = ?", [(s,) for s in seqs])
            return 200, {}

        self.writer.run_now(mark)

    async def run(self, operation: Operation, idempotency: Idempotency | None = None) -> Response:
        outcome = await self.writer.run(operation, idempotency)
        return self.respond(outcome)

    def respond(self, outcome: Outcome) -> Response:
        for session_id, message in outcome.pushes:
            self.rooms.push(session_id, message)
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
        return JSONResponse(outcome.body, outcome.status, headers=headers)

    def start(self) -> None:
        self.relay.start()
        self.writer.start()
        books_ready = self.writer.run_now(self._open_books)
        log.info("ledger ready: %s", books_ready.body)

    def _open_books(self, tx) -> tuple[int, dict]:
        books.open_platform_books(tx.conn, self.policy.currency)
        stale = ops.live_sessions(tx)
        for session_id in stale:  # left live by a crash or a stop: their hosts are gone
            ops.end_session(tx, self.policy, None, session_id, 0.0, reason="error", meter=False)
        return 200, {"sessions_ended_at_start": len(stale)}

    async def meter_forever(self) -> None:
        while True:
            await asyncio.sleep(self.policy.metering_interval_seconds)
            try:
                await self.meter_all()
            except Exception:  # the next report covers the interval since the last one
                log.exception("metering failed; the next interval catches up")

    async def meter_all(self) -> None:
        """One usage report per live session; submitted together, they share a commit."""
        await asyncio.gather(*(self._meter(room, ops.meter_session) for room in self.rooms))

    def _meter(self, room: Room, operation, **more) -> Awaitable[Outcome]:
        return self.writer.run(
            partial(
                operation,
                policy=self.policy,
                session_id=room.session_id,
                viewer_seconds=room.take_viewer_seconds(),
                **more,
            )
        )

    async def stop(self) -> None:
        """Ends what is live (reason error: its hosts are cut off), then drains the relay."""
        rooms = list(self.rooms)
        await asyncio.gather(
            *(self._meter(r, ops.end_session, creator_id=None, reason="error") for r in rooms)
        )
        for room in rooms:
            self.rooms.close(room.session_id)
        await asyncio.to_thread(self.relay.stop)  # drains through the writer, so before it
        self.writer.stop()


class LedgerInUse(ValueError):
    """Another runtime serves this ledger: two relays would write the same telemetry files."""


def _lock_ledger(db: Path) -> IO:
    """Holds an exclusive lock beside the ledger for as long as this process runs."""
    db.parent.mkdir(parents=True, exist_ok=True)
    handle = open(db.with_name(db.name + ".lock"), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise LedgerInUse(
            f"another runtime is serving the ledger {db}; stop it, or give this one its own "
            "--db and --telemetry"
        ) from exc
    return handle


def create_app(config: RuntimeConfig) -> Starlette:
    runtime = Runtime(config)
    policy = runtime.policy

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.start()
        meter = asyncio.create_task(runtime.meter_forever())
        try:
            yield
        finally:
            meter.cancel()
            await runtime.stop()

    def who(request: Request, kind: str | None = None) -> Principal:
        return runtime.auth.principal(request, kind)

    async def idempotent(request: Request, principal: Principal) -> tuple[dict, Idempotency]:
        key = inputs.idempotency_key(request)
        body, raw = await inputs.json_body(request)
        return body, Idempotency(principal.id, key, inputs.request_hash(request, raw))

    # Accounts ---------------------------------------------------------------------------------

    async def create_account(request: Request) -> Response:
        body, _ = await inputs.json_body(request)
        kind = inputs.text(body, "kind", choices=frozenset({"user", "creator"}))
        name = inputs.text(body, "display_name", default=kind)
        return await runtime.run(
            partial(ops.create_principal, policy=policy, kind=kind, display_name=name)
        )

    async def create_token(request: Request) -> Response:
        principal = who(request)
        body, _ = await inputs.json_body(request)
        ttl = body.get("ttl_seconds", policy.token_ttl_days * 86_400)
        if body.get("ttl_seconds") is not None:
            ttl = inputs.integer(body, "ttl_seconds", 1, MAX_TOKEN_TTL)
        return await runtime.run(partial(ops.new_token, principal_id=principal.id, ttl_seconds=ttl))

    async def me(request: Request) -> Response:
        principal = who(request)
        return await runtime.run(
            partial(ops.me, policy=policy, principal_id=principal.id, kind=principal.kind)
        )

    # Wallets and gifts ----------------------------------------------------------------------

    async def purchase(request: Request) -> Response:
        user = who(request, "user")
        body, key = await idempotent(request, user)
        coins = inputs.integer(body, "coins")
        channel = inputs.text(body, "channel", choices=CHANNELS)
        return await runtime.run(
            partial(
                ops.purchase_coins, policy=policy, user_id=user.id, coins=coins, channel=channel
            ),
            key,
        )

    async def gift(request: Request) -> Response:
        user = who(request, "user")
        body, key = await idempotent(request, user)
        coins = inputs.integer(body, "coins", low=-inputs.INT64_MAX)  # the ledger checks range
        return await runtime.run(
            partial(
                ops.send_gift,
                policy=policy,
                user_id=user.id,
                session_id=request.path_params["session_id"],
                coins=coins,
            ),
            key,
        )

    # Live sessions --------------------------------------------------------------------------

    async def start_session(request: Request) -> Response:
        creator = who(request, "creator")
        body, _ = await inputs.json_body(request)
        response = await runtime.run(
            partial(
                ops.start_session,
                policy=policy,
                creator_id=creator.id,
                region=inputs.text(body, "region", default="us-east"),
                quality=inputs.text(
                    body, "quality", default="720p", choices=frozenset(policy.qualities)
                ),
                record=inputs.flag(body, "record"),
            )
        )
        if response.status_code == 201:
            runtime.rooms.open(json.loads(response.body)["session_id"])
        return response

    async def get_session(request: Request) -> Response:
        who(request)
        return await runtime.run(
            partial(ops.get_session, session_id=request.path_params["session_id"])
        )

    async def invite(request: Request) -> Response:
        creator = who(request, "creator")
        body, _ = await inputs.json_body(request)
        return await runtime.run(
            partial(
                ops.invite_cohost,
                owner_id=creator.id,
                session_id=request.path_params["session_id"],
                creator_id=inputs.text(body, "creator_id"),
            )
        )

    async def join(request: Request) -> Response:
        creator = who(request, "creator")
        return await runtime.run(
            partial(
                ops.join_session,
                policy=policy,
                creator_id=creator.id,
                session_id=request.path_params["session_id"],
            )
        )

    async def leave(request: Request) -> Response:
        creator = who(request, "creator")
        return await runtime.run(
            partial(
                ops.leave_session,
                policy=policy,
                creator_id=creator.id,
                session_id=request.path_params["session_id"],
            )
        )

    async def split(request: Request) -> Response:
        creator = who(request, "creator")
        body, _ = await inputs.json_body(request)
        return await runtime.run(
            partial(
                ops.set_split,
                owner_id=creator.id,
                session_id=request.path_params["session_id"],
                weights=inputs.weights(body, "weights"),
            )
        )

    async def pin(request: Request) -> Response:
        creator = who(request, "creator")
        body, _ = await inputs.json_body(request)
        return await runtime.run(
            partial(
                ops.pin_product,
                creator_id=creator.id,
                session_id=request.path_params["session_id"],
                product_id=inputs.text(body, "product_id"),
            )
        )

    async def end(request: Request) -> Response:
        creator = who(request, "creator")
        session_id = request.path_params["session_id"]
        room = runtime.rooms.get(session_id)
        seconds = room.take_viewer_seconds() if room else 0.0
        response = await runtime.run(
            partial(
                ops.end_session,
                policy=policy,
                creator_id=creator.id,
                session_id=session_id,
                viewer_seconds=seconds,
            )
        )
        if response.status_code == 200:
            runtime.rooms.close(session_id)
        elif room is not None:
            room.viewer_seconds += seconds  # not ended: those seconds are still to report
        return response

    # Commerce -------------------------------------------------------------------------------

    async def create_product(request: Request) -> Response:
        creator = who(request, "creator")
        body, _ = await inputs.json_body(request)
        return await runtime.run(
            partial(
                ops.create_product,
                policy=policy,
                creator_id=creator.id,
                name=inputs.text(body, "name"),
                price=inputs.integer(body, "price_minor", low=-inputs.INT64_MAX),
            )
        )

    async def products(request: Request) -> Response:
        who(request)
        return await runtime.run(
            partial(ops.list_products, creator_id=request.path_params["creator_id"])
        )

    async def order(request: Request) -> Response:
        user = who(request, "user")
        body, key = await idempotent(request, user)
        return await runtime.run(
            partial(
                ops.checkout,
                policy=policy,
                buyer_id=user.id,
                product_id=inputs.text(body, "product_id"),
                quantity=inputs.integer(body, "quantity", low=-inputs.INT64_MAX),
                session_id=inputs.optional_text(body, "session_id"),
            ),
            key,
        )

    async def refund(request: Request) -> Response:
        creator = who(request, "creator")
        body, _ = await inputs.json_body(request)
        return await runtime.run(
            partial(
                ops.refund_order,
                creator_id=creator.id,
                order_id=request.path_params["order_id"],
                reason=inputs.text(body, "reason", default="requested_by_seller"),
            )
        )

    async def payout(request: Request) -> Response:
        creator = who(request, "creator")
        body, key = await idempotent(request, creator)
        return await runtime.run(partial(ops.payout, policy=policy, creator_id=creator.id), key)

    # Service --------------------------------------------------------------------------------

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "commits": runtime.writer.commits,
                "operations": runtime.writer.operations,
                "events_relayed": runtime.relay.relayed,
                "live_sessions": sum(1 for _ in runtime.rooms),
            }
        )

    async def openapi(request: Request) -> Response:
        return Response(OPENAPI.read_bytes(), media_type="application/json")

    async def live(socket: WebSocket) -> None:
        session_id = socket.path_params["session_id"]
        try:
            viewer_id = runtime.auth.principal(socket).id
        except BadRequest:
            await socket.close(4401, "send Authorization: Bearer <token>")
            return
        room = runtime.rooms.get(session_id)
        if room is None:
            await socket.close(4404, f"session {session_id} is not live")
            return
        await socket.accept()
        state = await runtime.writer.run(partial(ops.get_session, session_id=session_id))
        await runtime.run(
            partial(
                ops.viewer_event,
                event_type="viewer_joined",
                session_id=session_id,
                user_id=viewer_id,
            )
        )
        viewer = Viewer(viewer_id, socket)
        room.join(viewer)
        await socket.send_json({"type": "state", **state.body, "viewers": len(room.viewers)})
        room.push(room.viewer_count())
        sender = asyncio.create_task(send_loop(viewer))
        receiver = asyncio.create_task(_until_disconnect(socket))
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            receiver.cancel()
            room.leave(viewer)
            room.push(room.viewer_count())
            await runtime.writer.run(
                partial(
                    ops.viewer_event,
                    event_type="viewer_left",
                    session_id=session_id,
                    user_id=viewer_id,
                )
            )

    def error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BadRequest):
            return JSONResponse({"error": exc.code, "message": exc.message}, exc.status)
        if isinstance(exc, HTTPException):
            return JSONResponse({"error": "http_error", "message": exc.detail}, exc.status_code)
        log.error("request failed: %r", exc)  # nothing moved: the operation was rolled back
        return JSONResponse({"error": "internal_error", "message": "please retry"}, 500)

    session = "/v1/sessions/{session_id}"
    routes = [
        Route("/v1/health", health),
        Route("/openapi.json", openapi),
        Route("/v1/accounts", create_account, methods=["POST"]),
        Route("/v1/tokens", create_token, methods=["POST"]),
        Route("/v1/me", me),
        Route("/v1/wallet/purchases", purchase, methods=["POST"]),
        Route("/v1/sessions", start_session, methods=["POST"]),
        Route(session, get_session),
        Route(f"{session}/cohosts", invite, methods=["POST"]),
        Route(f"{session}/join", join, methods=["POST"]),
        Route(f"{session}/leave", leave, methods=["POST"]),
        Route(f"{session}/split", split, methods=["PUT"]),
        Route(f"{session}/pin", pin, methods=["POST"]),
        Route(f"{session}/end", end, methods=["POST"]),
        Route(f"{session}/gifts", gift, methods=["POST"]),
        WebSocketRoute(f"{session}/live", live),
        Route("/v1/products", create_product, methods=["POST"]),
        Route("/v1/creators/{creator_id}/products", products),
        Route("/v1/orders", order, methods=["POST"]),
        Route("/v1/orders/{order_id}/refund", refund, methods=["POST"]),
        Route("/v1/payouts", payout, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={BadRequest: error, HTTPException: error, Exception: error},
    )
    app.state.runtime = runtime
    return app


async def _until_disconnect(socket: WebSocket) -> None:
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass
