"""The runtime's HTTP API against a real server: every route, its refusals, its telemetry.

Every answer is checked against `live_runtime/server/openapi.json` (documented status,
body schema, error code), so the published contract cannot drift from the server.

Servers: one per module, and no test depends on another's state or order. Each test creates
its own accounts, sessions and products and reads only those (or compares the whole ledger
just before and after its own request). Each test gets its own `Client`, which remembers the
test's successful money calls and the refusals that must leave an event; when the test has
passed, its teardown waits for the relay and finds each of them in the telemetry files
exactly once, and no other event about the test's accounts, sessions or orders. The graceful
stop (sessions left live end as `error`, every file sealed) is checked by one test on a
server of its own.

Money moves only on a confirmed payment: a purchase or an order answers 202 with a pending
payment, and the test confirms it at the sandbox provider (`Client.buy`, `Client.order`), or
signs the provider's notification itself (the module's server knows the webhook secret). So a
pending answer is remembered by its payment, and expected in telemetry only once the provider's
notification was applied.

Expected money is worked out by hand from `live_runtime/policy_default.toml` (the server
runs the shipped policy), never by the policy code under test; the comments show the sums.
`test_the_hand_worked_figures_assume_the_shipped_policy` fails first if the file changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sqlite3
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import pytest
import runtime_server
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from runtime_server import Api, RuntimeProcess, events_so_far, new_credentials, wait_for
from starlette.routing import Route, WebSocketRoute

from live_runtime.server.routes import ROUTES, IdConvertor, create_app
from live_runtime.server.runtime import RuntimeConfig
from telemetry.events import CHANNELS, ENVELOPE, EVENT_FIELDS, TIME_FORMAT
from telemetry.files import list_sealed

SPEC_PATH = Path(__file__).parents[1] / "live_runtime" / "server" / "openapi.json"
SPEC = json.loads(SPEC_PATH.read_text())
SPEC_URI = "urn:creator-econ:runtime-openapi"
REGISTRY = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
SHIPPED_POLICY = Path(__file__).parents[1] / "live_runtime" / "policy_default.toml"
IDEMPOTENT = {
    ("POST", "/v1/wallet/purchases"),
    ("POST", "/v1/sessions/{session_id}/gifts"),
    ("POST", "/v1/orders"),
    ("POST", "/v1/payouts"),
}
MEGABYTE = b"{" + b" " * (1 << 20) + b"}"
GIFTS = "/v1/sessions/{session_id}/gifts"
PURCHASES = "/v1/wallet/purchases"
ORDERS = "/v1/orders"
SESSION = "/v1/sessions/{session_id}"
REFUND = "/v1/orders/{order_id}/refund"
PAYMENT = "/v1/payments/{payment_id}"
WEBHOOK = "/v1/webhooks/payments"
SANDBOX = "/sandbox/v1/payment_intents/{payment_id}/{action}"
# Without a bearer token: the webhook is authenticated by its signature, the sandbox provider
# by the payment's client secret.
PUBLIC = {
    ("GET", "/v1/health"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/accounts"),
    ("POST", "/v1/sign-in"),
    ("POST", WEBHOOK),
    ("POST", SANDBOX),
}
# The module's server verifies notifications with this secret, so tests can sign them too.
WEBHOOK_SECRET = "whsec_api_test_" + "k" * 32
# The sandbox action that sends each kind of provider notification.
NOTIFIED = {
    "payment_intent.succeeded": "confirm",
    "payment_intent.payment_failed": "decline",
    "charge.refunded": "refund",
    "charge.dispute.created": "dispute",
}

# Figures of the shipped policy file the hand arithmetic below relies on (checked by
# test_the_hand_worked_figures_assume_the_shipped_policy against the file itself).
CURRENCY = "USD"
TOKEN_TTL_SECONDS = 30 * 86_400  # token_ttl_days = 30 -> 2,592,000 s
PAYOUT_THRESHOLD = 5_000  # payout_threshold_minor
MAX_GIFT_COINS = 1_000_000
MAX_PRICE_MINOR = 1_000_000
MAX_QUANTITY = 100


# The contract ------------------------------------------------------------------------------


def pointer(*parts: str) -> str:
    """A JSON pointer to a place in the OpenAPI document."""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(node: dict, where: str) -> tuple[dict, str]:
    """Follows OpenAPI component `$ref`s (responses, parameters) to the object and its pointer."""
    while "$ref" in node:
        where = node["$ref"].removeprefix("#")
        node = SPEC
        for part in where.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, where


def schema_errors(schema_pointer: str, value: Any) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{quote(schema_pointer)}"}, registry=REGISTRY
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]


def check_response(method: str, template: str, response: httpx.Response) -> None:
    """The answer's status is documented for the route, and its body has the documented shape."""
    operation = SPEC["paths"][template][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {template} answered undocumented {status}"
    documented, where = resolve(
        operation["responses"][status],
        pointer("paths", template, method.lower(), "responses", status),
    )
    assert response.headers["content-type"].startswith("application/json")
    errors = schema_errors(
        where + pointer("content", "application/json", "schema"), response.json()
    )
    assert not errors, f"{method} {template} {status} {response.text}: {errors}"
    if "idempotent-replayed" in response.headers:
        assert "Idempotent-Replayed" in documented.get("headers", {}), (method, template, status)


def check_request(method: str, template: str, body: Any) -> None:
    """A request the server accepted also matches the documented request schema."""
    operation = SPEC["paths"][template][method.lower()]
    if "requestBody" in operation:
        where = pointer("paths", template, method.lower(), "requestBody")
        errors = schema_errors(where + pointer("content", "application/json", "schema"), body)
        assert not errors, f"{method} {template} accepted an undocumented body {body}: {errors}"


# What one test's calls should leave in telemetry ------------------------------------------


@dataclass
class Expected:
    """One test's successful calls (from the answers), and refusals that must leave an event.

    A purchase or order is expected once its payment is confirmed: the pending answer waits
    in `payments` until the sandbox or a notification the test signed says it was applied.
    """

    principals: set[str] = field(default_factory=set)  # every account the test created
    payments: dict[str, tuple[str, dict]] = field(default_factory=dict)  # id -> kind, answer
    purchases: dict[str, dict] = field(default_factory=dict)
    coin_refunds: dict[str, dict] = field(default_factory=dict)  # purchase -> coins_refunded
    gifts: dict[str, dict] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)
    payouts: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)  # session -> reason
    hosts: Counter = field(default_factory=Counter)  # (type, session, creator)
    gift_failed: Counter = field(default_factory=Counter)  # (session, sender, reason)
    checkout_failed: Counter = field(default_factory=Counter)  # (session, creator, reason)

    def remember(self, route: tuple[str, str], who: dict, sent: Any, data: dict, params: dict):
        """Files a successful answer under what it should have emitted."""
        method, template = route
        if route == ("POST", "/v1/accounts"):
            self.principals.add(data["id"])
        elif route == ("POST", PURCHASES):  # a pending payment: nothing to expect yet
            self.payments[data["payment_id"]] = ("purchase", dict(data, user_id=who["id"]))
        elif route == ("POST", ORDERS):
            self.payments[data["payment_id"]] = ("order", data)
        elif route == ("POST", SANDBOX) and data["notification"]["outcome"] == "applied":
            self.settled(params["payment_id"], params["action"])
        elif route == ("POST", WEBHOOK) and data["outcome"] == "applied":
            event = json.loads(sent)
            found = event["data"]["object"]
            action = NOTIFIED[event["type"]]
            self.settled(found["payment_intent" if "payment_intent" in found else "id"], action)
        elif route == ("POST", GIFTS):
            self.gifts[data["gift_id"]] = dict(data, sender_id=who["id"], **params)
        elif route == ("POST", REFUND):  # the provider's charge.refunded, applied
            self.refunds[data["order_id"]] = {
                "refund_minor": data["refund_minor"],
                "reason": "refund",
            }
        elif route == ("POST", "/v1/payouts"):
            self.payouts[data["payout_id"]] = dict(data, creator_id=who["id"])
        elif route == ("POST", "/v1/sessions"):
            self.sessions[data["session_id"]] = data
        elif route == ("POST", f"{SESSION}/end"):
            self.ended[data["session_id"]] = "host_ended"
        elif route in {("POST", f"{SESSION}/join"), ("POST", f"{SESSION}/leave")}:
            kind = "host_joined" if template.endswith("join") else "host_left"
            self.hosts[(kind, data["session_id"], who["id"])] += 1

    def settled(self, payment_id: str, action: str) -> None:
        """Files what a payment the provider's notification was applied to must emit."""
        kind, pending = self.payments[payment_id]
        if kind == "purchase":
            _, payment_fee, store_fee = PACKS[(pending["channel"], pending["coins"])]
        if action == "confirm" and kind == "purchase":
            fees = {"payment_fee_minor": payment_fee, "store_fee_minor": store_fee}
            self.purchases[pending["purchase_id"]] = pending | fees
        elif action == "confirm":  # a live that ended meanwhile is not named
            live = pending["session_id"]
            self.orders[pending["order_id"]] = pending | {
                "session_id": None if live in self.ended else live
            }
        elif action == "decline" and kind == "order" and pending["session_id"] is not None:
            key = (pending["session_id"], pending["creator_id"], "payment_declined")
            self.checkout_failed[key] += 1
        elif action in ("refund", "dispute") and kind == "purchase":
            self.coin_refunds[pending["purchase_id"]] = {
                "user_id": pending["user_id"], "refund_minor": pending["amount_minor"],
                "currency": pending["currency"], "channel": pending["channel"],
                "store_fee_returned_minor": store_fee, "reason": action,
            }  # fmt: skip
        elif action in ("refund", "dispute"):
            self.refunds[pending["order_id"]] = {
                "refund_minor": pending["gross_minor"],
                "reason": action,
            }

    def concerns(self, event: dict) -> bool:
        """Whether an event is about one of this test's accounts, sessions or orders."""
        people = {event.get(f) for f in ("user_id", "sender_id", "creator_id")}
        people |= set(event.get("creator_ids", []))
        return bool(
            people & self.principals
            or event.get("session_id") in self.sessions
            or event.get("order_id") in self.orders
        )


class Client:
    """Calls the server by route template, checks each answer against the contract."""

    def __init__(self, server: RuntimeProcess) -> None:
        self.server = server
        self.raw = Api(server.url)
        self.expected = Expected()

    def __call__(
        self,
        method: str,
        template: str,
        who: dict | None = None,
        key: str | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict | None = None,
        **params: str,
    ) -> httpx.Response:
        body = {"json": json} if json is not None else {"content": content}
        response = self.raw.call(
            method, template.format(**params), who=who, key=key, headers=headers or {}, **body
        )
        check_response(method, template, response)
        if response.is_success and "idempotent-replayed" not in response.headers:
            if json is not None:
                check_request(method, template, json)
            sent = json if json is not None else content
            self.expected.remember((method, template), who, sent, response.json(), params)
        return response

    def account(self, kind: str) -> dict:
        credentials = new_credentials(kind)
        response = self("POST", "/v1/accounts", json={"kind": kind, **credentials})
        assert response.status_code == 201, response.text
        return {**response.json(), **credentials}

    def pay(self, pending: dict, action: str = "confirm") -> httpx.Response:
        """What the payer does at the sandbox provider with a pending payment's client secret:
        `confirm`, `decline`, `refund` or `dispute`. It answers once the runtime has applied
        the provider's signed notification."""
        return self(
            "POST", SANDBOX, json={"client_secret": pending["client_secret"]},
            payment_id=pending["payment_id"], action=action,
        )  # fmt: skip

    def paid(self, pending: httpx.Response) -> dict:
        """Confirms a 202's pending payment at the sandbox; returns the pending answer."""
        assert pending.status_code == 202, pending.text
        confirmed = self.pay(pending.json())
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["notification"]["outcome"] == "applied", confirmed.text
        return pending.json()

    def buy(self, user: dict, coins: int, channel: str = "web", key: str | None = None) -> dict:
        """A coin purchase asked for (202, a pending payment), then confirmed."""
        body = {"coins": coins, "channel": channel}
        return self.paid(self("POST", PURCHASES, user, key or uuid.uuid4().hex, json=body))

    def order(
        self,
        buyer: dict,
        product_id: str,
        quantity: int = 1,
        session_id: str | None = None,
        key: str | None = None,
    ) -> dict:
        """An order asked for (202, a pending payment), then confirmed."""
        body = {"product_id": product_id, "quantity": quantity, "session_id": session_id}
        return self.paid(self("POST", ORDERS, buyer, key or uuid.uuid4().hex, json=body))

    def join(self, cohost: dict, session_id: str) -> httpx.Response:
        """A co-host joins by accepting the split the session shows them now."""
        split = self("GET", SESSION, cohost, session_id=session_id).json()["split"]
        body = {"accept_split": split}
        return self("POST", f"{SESSION}/join", cohost, json=body, session_id=session_id)

    def user_with(self, *packs: int) -> dict:
        """A new user who bought these coin packs on the web, paid."""
        user = self.account("user")
        for n, coins in enumerate(packs):
            self.buy(user, coins, key=f"buy-{n}")
        return user

    def live(self, owner: dict, **settings: Any) -> str:
        response = self("POST", "/v1/sessions", owner, json=settings)
        assert response.status_code == 201, response.text
        return response.json()["session_id"]

    def product(self, creator: dict, price_minor: int, name: str = "poster") -> str:
        response = self(
            "POST", "/v1/products", creator, json={"name": name, "price_minor": price_minor}
        )
        assert response.status_code == 201, response.text
        return response.json()["product_id"]

    def coins(self, user: dict) -> int:
        return self("GET", "/v1/me", user).json()["coins"]

    def balance(self, creator: dict) -> int:
        return self("GET", "/v1/me", creator).json()["balance_minor"]


def outbox(db: Path) -> int:
    """How many telemetry events the runtime has written."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]


def state(db: Path) -> dict[str, list]:
    """Everything a request may change, read-only: balances, movements, orders, sessions."""
    tables = {
        "accounts": "SELECT id, balance FROM accounts",
        "movements": "SELECT id FROM movements",
        "postings": "SELECT movement_id, account_id, amount FROM postings",
        "orders": "SELECT id, status FROM orders",
        "payments": "SELECT id, status FROM payments",
        "payouts": "SELECT id FROM payouts",
        "products": "SELECT id, price_minor FROM products",
        "sessions": "SELECT id, status, pinned_product_id FROM sessions",
        "hosts": "SELECT session_id, creator_id, present, weight FROM session_hosts",
        "principals": "SELECT id FROM principals",
    }
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {name: sorted(conn.execute(sql).fetchall()) for name, sql in tables.items()}


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def signed(event: dict, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    return runtime_server.signed(event, secret)


def provider_event(kind: str, pending: dict, **fields: Any) -> dict:
    """A Stripe-shaped event about a pending payment (its id, amount and currency)."""
    found = {"amount": pending["amount_minor"], "currency": pending["currency"].lower()}
    if kind.startswith("payment_intent."):
        found |= {"id": pending["payment_id"], "object": "payment_intent"}
    else:
        found |= {"id": f"ch_{uuid.uuid4().hex}", "payment_intent": pending["payment_id"]}
    return {"id": f"evt_{uuid.uuid4().hex}", "type": kind, "data": {"object": found | fields}}


# Checking the telemetry and the books -------------------------------------------------------


def by_type(events: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for event in events:
        found.setdefault(event["event_type"], []).append(event)
    return found


def check_contract(event: dict) -> None:
    names = [f.name for f in ENVELOPE] + [f.name for f in EVENT_FIELDS[event["event_type"]]]
    assert sorted(event) == sorted(names), event
    assert event["schema_version"] == 1 and event["source"] == "runtime"
    datetime.strptime(event["occurred_at"], TIME_FORMAT)
    for spec in EVENT_FIELDS[event["event_type"]]:
        if spec.allowed is not None:
            assert event[spec.name] in spec.allowed, event
        if spec.is_money or spec.kind == "int":
            assert isinstance(event[spec.name], int) and not isinstance(event[spec.name], bool)


def once_each(events: list[dict], key: str, wanted: dict[str, dict], fields: list[str]) -> None:
    """One event per remembered call, none more, each carrying what the answer said."""
    seen = Counter(e[key] for e in events)
    assert set(seen) == set(wanted) and set(seen.values()) <= {1}, (key, seen, set(wanted))
    for event in events:
        expected = wanted[event[key]]
        assert {f: event[f] for f in fields} == {f: expected[f] for f in fields}, event


def check_money_events(events: dict[str, list[dict]], expected: Expected) -> None:
    once_each(
        events.get("coins_purchased", []), "purchase_id", expected.purchases,
        ["user_id", "coins", "amount_minor", "currency", "channel", "payment_fee_minor",
         "store_fee_minor"],
    )  # fmt: skip
    once_each(
        events.get("coins_refunded", []), "purchase_id", expected.coin_refunds,
        ["user_id", "refund_minor", "currency", "channel", "store_fee_returned_minor", "reason"],
    )  # fmt: skip
    gifts = events.get("gift_sent", [])
    once_each(
        gifts, "gift_id", expected.gifts,
        ["session_id", "sender_id", "coins", "value_minor", "currency", "splits",
         "platform_fee_minor"],
    )  # fmt: skip
    for gift in gifts:
        shares = sum(s["share_minor"] for s in gift["splits"])
        assert shares + gift["platform_fee_minor"] == gift["value_minor"], gift
        assert all(s["share_minor"] >= 0 for s in gift["splits"])
    order_fields = [f.name for f in EVENT_FIELDS["order_paid"] if f.name != "order_id"]
    once_each(events.get("order_paid", []), "order_id", expected.orders, order_fields)
    once_each(
        events.get("order_refunded", []), "order_id", expected.refunds, ["refund_minor", "reason"]
    )
    once_each(
        events.get("payout_issued", []), "payout_id", expected.payouts,
        ["creator_id", "amount_minor", "currency", "period_start", "period_end"],
    )  # fmt: skip


def check_refusal_events(events: dict[str, list[dict]], expected: Expected) -> None:
    failed = Counter(
        (e["session_id"], e["sender_id"], e["reason"]) for e in events.get("gift_failed", [])
    )
    assert failed == expected.gift_failed
    assert len({e["gift_id"] for e in events.get("gift_failed", [])}) == failed.total()
    checkout = Counter(
        (e["session_id"], e["creator_id"], e["reason"]) for e in events.get("checkout_failed", [])
    )
    assert checkout == expected.checkout_failed


def check_session_events(events: dict[str, list[dict]], expected: Expected, stopped: bool) -> None:
    """Each session started once; ended once if ended (or, after a stop, as `error`)."""
    started = {e["session_id"]: e for e in events.get("session_started", [])}
    assert len(started) == len(events.get("session_started", []))
    assert set(started) == set(expected.sessions)
    for session_id, event in started.items():
        session = expected.sessions[session_id]
        assert event["creator_ids"] == [session["owner_id"]]
        assert (event["region"], event["quality"]) == (session["region"], session["quality"])
    ended = Counter(e["session_id"] for e in events.get("session_ended", []))
    reasons = {e["session_id"]: e["reason"] for e in events.get("session_ended", [])}
    if stopped:  # the stop ends what was still live, as an error (its hosts were cut off)
        assert reasons == {s: expected.ended.get(s, "error") for s in expected.sessions}
    else:
        assert reasons == expected.ended
    assert set(ended.values()) <= {1}
    hosts = Counter(
        (e["event_type"], e["session_id"], e["creator_id"])
        for kind in ("host_joined", "host_left")
        for e in events.get(kind, [])
    )
    assert hosts == expected.hosts
    check_usage_covers_sessions(events)


def check_usage_covers_sessions(events: dict[str, list[dict]]) -> None:
    """Each session's usage intervals run without gap from its start (to its end, if ended)."""
    usage: dict[str, list[dict]] = {}
    for event in events.get("media_usage", []):
        usage.setdefault(event["session_id"], []).append(event)
    ends = {e["session_id"]: e for e in events.get("session_ended", [])}
    for start in events.get("session_started", []):
        intervals = sorted(usage.get(start["session_id"], []), key=lambda e: e["interval_start"])
        end = ends.get(start["session_id"])
        if end is not None:  # the end reports the last interval
            assert intervals and intervals[-1]["interval_end"] == end["occurred_at"]
        if intervals:
            assert intervals[0]["interval_start"] == start["occurred_at"]
        for before, after in zip(intervals, intervals[1:], strict=False):
            assert before["interval_end"] == after["interval_start"]


def check_telemetry(events: list[dict], expected: Expected, stopped: bool) -> None:
    """The events about one test's accounts, sessions and orders are exactly its calls'."""
    assert len({e["event_id"] for e in events}) == len(events), "an event written twice"
    for event in events:
        check_contract(event)
    grouped = by_type([e for e in events if expected.concerns(e)])
    check_money_events(grouped, expected)
    check_refusal_events(grouped, expected)
    check_session_events(grouped, expected, stopped)


def check_books(db: Path) -> None:
    """Every movement sums to zero per unit, so all balances of a unit sum to zero."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        totals = conn.execute("SELECT unit, sum(balance) FROM accounts GROUP BY unit").fetchall()
        unbalanced = conn.execute(
            "SELECT p.movement_id, a.unit FROM postings p JOIN accounts a ON a.id = p.account_id "
            "GROUP BY p.movement_id, a.unit HAVING sum(p.amount) != 0"
        ).fetchall()
        overdrawn = conn.execute(
            "SELECT id FROM accounts WHERE may_go_negative = 0 AND balance < 0"
        ).fetchall()
    assert {unit: total for unit, total in totals} == {"COIN": 0, CURRENCY: 0}
    assert unbalanced == [] and overdrawn == []


# Fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("runtime"))
    runtime.env["CREATOR_ECON_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture
def api(server: RuntimeProcess, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client for one test; once the test has passed, its telemetry and the books hold."""
    client = Client(server)
    failed_before = request.session.testsfailed
    yield client
    client.raw.http.close()
    if request.session.testsfailed == failed_before:  # a failed test's telemetry is moot
        check_telemetry(events_so_far(server), client.expected, stopped=False)
        check_books(server.db)


# The policy the figures come from ----------------------------------------------------------


def test_the_hand_worked_figures_assume_the_shipped_policy():
    """Read with tomllib, not the policy module: the inputs of every hand-worked figure."""
    shipped = tomllib.loads(SHIPPED_POLICY.read_text())
    assert shipped["currency"] == CURRENCY
    assert shipped["coin_value_minor"] == 1
    assert shipped["max_gift_coins"] == MAX_GIFT_COINS
    assert shipped["payout_threshold_minor"] == PAYOUT_THRESHOLD
    assert shipped["token_ttl_days"] * 86_400 == TOKEN_TTL_SECONDS
    assert {p["coins"]: p["price_minor"] for p in shipped["coin_packs"]} == {
        70: 99, 350: 499, 700: 999, 1400: 1999, 3500: 4999, 7000: 9999, 17500: 24999,
    }  # fmt: skip
    in_app = {"processor_bps": 0, "processor_fixed_minor": 0, "store_bps": 3000}
    assert shipped["channels"] == {
        "web": {"processor_bps": 290, "processor_fixed_minor": 30, "store_bps": 0},
        "ios": in_app,
        "android": in_app,
    }
    # Each present host gets at least 10% of the hosts' part: no split below is low enough.
    assert shipped["gifts"] == {"platform_fee_bps": 5000, "host_floor_bps": 1000, "max_hosts": 10}
    # Earnings are held 7 days; test servers hold them 0 days (runtime_server.RuntimeProcess),
    # so what a test earns is available at once, as the figures below assume.
    assert shipped["payout_hold_days"] == 7
    assert shipped["refunds"] == {"processor_fee_borne_by": "platform"}
    assert shipped["commerce"] == {
        "commission_bps": 800, "processor_bps": 290, "processor_fixed_minor": 30,
        "max_price_minor": MAX_PRICE_MINOR, "max_quantity": MAX_QUANTITY,
    }  # fmt: skip


# The description ---------------------------------------------------------------------------


def app_routes(root: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """(path, method) of every HTTP route and the path of every WebSocket route of the app."""
    app = create_app(RuntimeConfig(db=root / "routes.db", telemetry=root / "telemetry"))
    runtime = app.state.runtime
    runtime.writer.conn.close()
    runtime.relay.conn.close()
    http = {
        (template(route.path), method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods - {"HEAD"}
    }
    sockets = {template(route.path) for route in app.routes if isinstance(route, WebSocketRoute)}
    return http, sockets


def template(path: str) -> str:
    """A route's path as OpenAPI writes it: `{session_id:id}` is `{session_id}` (the `id`
    convertor's pattern is the parameter's documented `pattern`)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def test_openapi_is_served_and_lists_exactly_the_app_routes(api: Client, tmp_path: Path):
    served = api("GET", "/openapi.json")
    assert served.status_code == 200 and served.json() == SPEC
    assert SPEC["openapi"].startswith("3.1")
    http, sockets = app_routes(tmp_path)
    documented = {(path, m.upper()) for path, ops in SPEC["paths"].items() for m in ops}
    assert documented == http
    assert set(SPEC["x-websockets"]) == sockets
    for ref in all_refs(SPEC):
        resolve({"$ref": ref}, "")  # raises KeyError on a dangling reference


def test_path_ids_document_the_routes_pattern():
    """An id in a path matches the route's `id` convertor, or no route: documented as such."""
    for route in (r for r in ROUTES if isinstance(r, Route)):
        for method in route.methods - {"HEAD"}:
            operation = SPEC["paths"][template(route.path)][method.lower()]
            parameters = [resolve(p, "")[0] for p in operation.get("parameters", [])]
            documented = {p["name"]: p["schema"] for p in parameters if p["in"] == "path"}
            assert set(documented) == set(route.param_convertors), route.path
            for name, convertor in route.param_convertors.items():
                if isinstance(convertor, IdConvertor):
                    assert documented[name]["pattern"] == f"^{convertor.regex}$", route.path


def test_every_operation_documents_auth_and_idempotency():
    operations = [(p, m.upper(), op) for p, ops in SPEC["paths"].items() for m, op in ops.items()]
    assert len({op["operationId"] for _, _, op in operations}) == len(operations)
    assert SPEC["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, method, op in operations:
        public = (method, path) in PUBLIC
        assert op["security"] == ([] if public else [{"bearerAuth": []}]), path
        assert public or "401" in op["responses"], path
        assert "500" in op["responses"], path
        params = [resolve(p, "")[0] for p in op.get("parameters", [])]
        keyed = any(p["name"] == "Idempotency-Key" and p["required"] for p in params)
        assert keyed == ((method, path) in IDEMPOTENT), path
        if keyed:
            success = next(r for s, r in op["responses"].items() if s.startswith("2"))
            assert "Idempotent-Replayed" in success["headers"], path


def test_health_unknown_route_and_wrong_method_answer_json(api: Client):
    health = api("GET", "/v1/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    missing = api.raw.call("GET", "/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json()["error"] == "http_error"
    wrong = api.raw.call("DELETE", "/v1/me")
    assert wrong.status_code == 405 and wrong.json()["error"] == "http_error"


# Accounts, tokens, authentication ----------------------------------------------------------


def test_accounts_tokens_and_me(api: Client):
    ada = {"kind": "user", "display_name": "Ada", **new_credentials("user")}
    before = time.time()
    user = api("POST", "/v1/accounts", json=ada).json()
    after = time.time()
    # The first token lasts token_ttl_days = 30: 30 * 86,400 = 2,592,000 s
    assert before + TOKEN_TTL_SECONDS - 0.0005 <= user["expires_at"]
    assert user["expires_at"] <= after + TOKEN_TTL_SECONDS + 0.0005
    creator = api.account("creator")
    assert user["id"].startswith("u_") and creator["id"].startswith("cr_")
    assert api("GET", "/v1/me", user).json() == {"id": user["id"], "kind": "user", "coins": 0}
    assert api("GET", "/v1/me", creator).json() == {
        "id": creator["id"], "kind": "creator", "balance_minor": 0, "currency": CURRENCY,
        "pending_minor": 0, "available_minor": 0, "owed_minor": 0, "paid_out_minor": 0,
        "payout_threshold_minor": PAYOUT_THRESHOLD, "next_payout_date": None, "holds": [],
    }  # fmt: skip
    # expires_at is the server's clock at the request plus the TTL, to the millisecond: it
    # lies between this clock read just before the request and just after the answer.
    before = time.time()
    token = api("POST", "/v1/tokens", creator, json={"ttl_seconds": 60})
    after = time.time()
    assert token.status_code == 201
    assert before + 60 - 0.0005 <= token.json()["expires_at"] <= after + 60 + 0.0005
    again = {"token": token.json()["token"]}
    assert api("GET", "/v1/me", again).json()["id"] == creator["id"]
    # The default lifetime, token_ttl_days = 30 (2,592,000 s), is more than the user's first
    # token has left (it was issued 30 days ahead, before this request): capped at its expiry.
    default = api("POST", "/v1/tokens", user).json()
    assert default["expires_at"] == user["expires_at"]


@pytest.mark.parametrize(
    ("path", "body", "refusal"),
    [
        ("/v1/accounts", {}, (422, "missing_field")),
        ("/v1/accounts", {"kind": "admin"}, (422, "invalid_field")),
        ("/v1/accounts", {"kind": "user", "display_name": ""}, (422, "invalid_field")),
        ("/v1/accounts", {"kind": "user", "display_name": 7}, (422, "invalid_field")),
        ("/v1/tokens", {"ttl_seconds": 0}, (422, "out_of_range")),
        ("/v1/tokens", {"ttl_seconds": 10**9}, (422, "out_of_range")),
        ("/v1/tokens", {"ttl_seconds": "60"}, (422, "invalid_field")),
        ("/v1/tokens", {"ttl_seconds": True}, (422, "invalid_field")),
        ("/v1/tokens", {"ttl_seconds": 1.5}, (422, "invalid_field")),
    ],
)
def test_account_and_token_fields_are_checked(api: Client, path: str, body: dict, refusal):
    user = api.account("user")
    before = state(api.server.db)
    assert error(api("POST", path, user, json=body)) == refusal
    assert state(api.server.db) == before


def test_missing_forged_and_expired_tokens_are_401(api: Client):
    user = api.account("user")
    short = api("POST", "/v1/tokens", user, json={"ttl_seconds": 1}).json()
    assert api("GET", "/v1/me", {"token": short["token"]}).status_code == 200
    assert error(api("GET", "/v1/me")) == (401, "unauthenticated")
    assert error(api("GET", "/v1/me", {"token": "ce_forged"})) == (401, "unauthenticated")
    basic = api("GET", "/v1/me", headers={"Authorization": f"Basic {user['token']}"})
    assert error(basic) == (401, "unauthenticated")
    # The server refuses a token once its clock reaches expires_at; both run on this clock.
    wait_for(lambda: time.time() >= short["expires_at"], "the short token's expiry", 10)
    assert error(api("GET", "/v1/me", {"token": short["token"]})) == (401, "token_expired")
    assert api("GET", "/v1/me", user).status_code == 200  # the first token still works


def test_tokens_are_stored_only_as_their_sha256(api: Client):
    """No raw token anywhere in the ledger's files, and each one's sha256 in `tokens`."""
    user, creator = api.user_with(70), api.account("creator")
    extra = [api("POST", "/v1/tokens", who, json={"ttl_seconds": 600}) for who in (user, creator)]
    issued = {user["token"]: user["id"], creator["token"]: creator["id"]}
    issued |= {t.json()["token"]: who["id"] for t, who in zip(extra, (user, creator), strict=True)}
    session = api.live(creator)
    gift = api("POST", GIFTS, user, "g-1", json={"coins": 5}, session_id=session)
    assert gift.status_code == 201
    for token in issued:  # every token works, so the server knows each one
        assert api("GET", "/v1/me", {"token": token}).status_code == 200
    with closing(sqlite3.connect(f"file:{api.server.db}?mode=ro", uri=True)) as conn:
        stored = dict(conn.execute("SELECT token_hash, principal_id FROM tokens"))
    for token, owner in issued.items():
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert stored.get(digest) == owner, f"sha256 of {owner}'s token is not in tokens"
    assert not set(issued) & set(stored), "a raw token is a key of the tokens table"
    # The database, its -wal (recent pages live there, not yet copied back) and its -shm.
    files = {path.name: path.read_bytes() for path in api.server.root.glob("ledger.db*")}
    assert "ledger.db" in files and "ledger.db-wal" in files
    for token in issued:
        secret = token.removeprefix("ce_").encode()
        assert not [name for name, data in files.items() if secret in data], "a raw token"
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        assert any(digest in data for data in files.values())  # what is stored, the scan sees


def test_users_and_creators_cannot_call_each_others_operations(api: Client):
    user, creator = api.user_with(70), api.account("creator")
    session = api.live(creator)
    product = api.product(creator, 500)
    before = state(api.server.db)
    as_creator = [
        ("POST", PURCHASES, {"coins": 70, "channel": "web"}, {}),
        ("POST", GIFTS, {"coins": 1}, {"session_id": session}),
        ("POST", "/v1/orders", {"product_id": product, "quantity": 1}, {}),
    ]
    for method, template, body, params in as_creator:
        refused = api(method, template, creator, "k", json=body, **params)
        assert error(refused) == (403, "forbidden"), template
    as_user = [
        ("POST", "/v1/sessions", {}, {}),
        ("POST", "/v1/products", {"name": "x", "price_minor": 100}, {}),
        ("POST", "/v1/payouts", {}, {}),
        ("POST", f"{SESSION}/end", None, {"session_id": session}),
        ("POST", f"{SESSION}/pin", {"product_id": product}, {"session_id": session}),
        ("POST", f"{SESSION}/join", None, {"session_id": session}),
    ]
    for method, template, body, params in as_user:
        refused = api(method, template, user, "k", json=body, **params)
        assert error(refused) == (403, "forbidden"), template
    assert state(api.server.db) == before


def test_a_user_spends_only_their_own_coins(api: Client):
    a, b = api.user_with(350), api.user_with(70)
    session = api.live(api.account("creator"))
    a_gift = api("POST", GIFTS, a, "same-key", json={"coins": 5}, session_id=session)
    assert a_gift.status_code == 201
    naming_a = {"coins": 5, "sender_id": a["id"], "user_id": a["id"], "wallet": f"wallet:{a['id']}"}
    b_gift = api("POST", GIFTS, b, "same-key", json=naming_a, session_id=session)
    assert b_gift.status_code == 201 and "idempotent-replayed" not in b_gift.headers
    assert b_gift.json()["gift_id"] != a_gift.json()["gift_id"]  # keys belong to their principal
    assert (api.coins(a), api.coins(b)) == (345, 65)  # 350 - 5 and 70 - 5
    balances = dict(state(api.server.db)["accounts"])
    assert (balances[f"wallet:{a['id']}"], balances[f"wallet:{b['id']}"]) == (345, 65)


def test_a_creator_cannot_touch_another_creators_session_or_order(api: Client):
    owner, other, buyer = api.account("creator"), api.account("creator"), api.user_with(70)
    session = api.live(owner)
    theirs, mine = api.product(other, 300), api.product(owner, 400)
    order = api.order(buyer, mine, key="o1")
    before = state(api.server.db)
    attempts = [
        ("POST", f"{SESSION}/end", None),
        ("POST", f"{SESSION}/pin", {"product_id": theirs}),
        ("POST", f"{SESSION}/cohosts", {"creator_id": other["id"]}),
        ("PUT", f"{SESSION}/split", {"weights": {owner["id"]: 1}}),
        ("POST", f"{SESSION}/join", None),
    ]
    for method, template, body in attempts:
        assert error(api(method, template, other, json=body, session_id=session)) == (
            403,
            "forbidden",
        ), template
    pin_theirs = api(
        "POST", f"{SESSION}/pin", owner, json={"product_id": theirs}, session_id=session
    )
    assert error(pin_theirs) == (403, "forbidden")
    refund = api("POST", REFUND, other, order_id=order["order_id"])
    assert error(refund) == (403, "forbidden")
    assert state(api.server.db) == before
    assert api("GET", SESSION, buyer, session_id=session).json()["status"] == "live"


# Bad input --------------------------------------------------------------------------------


class Bad(NamedTuple):
    """A bad request body and the error code it must get; it leaves no telemetry."""

    body: Any
    code: str

    @property
    def status(self) -> int:
        statuses = {"malformed_json": 400, "invalid_signature": 400, "body_too_large": 413}
        return (statuses | {"not_found": 404}).get(self.code, 422)


NOT_OBJECTS = [Bad(b"{not json", "malformed_json"), Bad(b"[1, 2]", "malformed_json")]
NOT_OBJECTS += [Bad(b'"coins"', "malformed_json"), Bad(b"\xff\xfe", "malformed_json")]
NOT_OBJECTS += [Bad(MEGABYTE, "body_too_large")]


def bad_input_cases(
    user: dict, creator: dict, session: str, product: str, pending: dict
) -> list[tuple]:
    """((who, method, template, path params), Bad) for every route that reads a body."""
    out, wrong, missing = "out_of_range", "invalid_field", "missing_field"
    live = {"session_id": session}
    purchase = [Bad({"coins": c, "channel": "web"}, code) for c, code in [
        (0, out), (-70, out), (10**30, out), (10**12, "unknown_pack"), (71, "unknown_pack"),
        (70.5, wrong), (True, wrong), ("70", wrong), (None, missing),
    ]]  # fmt: skip
    purchase += [Bad({"coins": 70, "channel": c}, wrong) for c in ("fax", 3, "WEB")]
    gift = [Bad({"coins": c}, out) for c in (0, -5, 10**12, MAX_GIFT_COINS + 1)]
    gift += [Bad({"coins": c}, code) for c, code in [
        (10**30, out), (-(10**30), out), (1.5, wrong), (True, wrong), ("5", wrong),
        (None, missing),
    ]]  # fmt: skip
    price = [Bad({"name": "poster", "price_minor": p}, code) for p, code in [
        (0, out), (-1, out), (10**12, out), (MAX_PRICE_MINOR + 1, out), (9.99, wrong),
        (True, wrong), (None, missing),
    ]]  # fmt: skip
    price += [Bad({"name": n, "price_minor": 100}, code) for n, code in [
        ("", wrong), ("x" * 201, wrong), (None, missing),
    ]]  # fmt: skip
    order = [Bad({"product_id": product, "quantity": q}, code) for q, code in [
        (0, out), (10**6, out), (-1, out), (MAX_QUANTITY + 1, out), (1.5, wrong),
        (True, wrong), ("1", wrong), (None, missing),
    ]]  # fmt: skip
    order += [
        Bad({"product_id": "p_none", "quantity": 1}, "unknown_product"),
        Bad({"product_id": product, "quantity": 1, "session_id": 5}, wrong),
    ]
    start = [Bad({"quality": "4k"}, wrong), Bad({"quality": None}, missing)]
    start += [Bad({"record": "yes"}, wrong), Bad({"region": 5}, wrong)]
    weights = [Bad({"weights": w}, code) for w, code in [
        ({}, wrong), ([1], wrong), ({creator["id"]: 0}, out), ({creator["id"]: 1.5}, wrong),
        ({"cr_nobody": 1}, "invalid"), ({f"cr_{n}": 1 for n in range(101)}, wrong),
    ]]  # fmt: skip
    invite = [Bad({"creator_id": 7}, wrong)]
    invite += [Bad({"creator_id": creator["id"], "weight": w}, code) for w, code in [
        (0, out), (1_000_001, out), (1.5, wrong), ("2", wrong), (None, missing),
    ]]  # fmt: skip
    join = [Bad({"accept_split": s}, wrong) for s in (5, "", "x" * 201)]
    secret = [Bad({"client_secret": s}, code) for s, code in [
        (None, missing), (5, wrong), ("", wrong), ("x" * 201, wrong),
        (f"{pending['payment_id']}_secret_forged", "not_found"),
    ]]  # fmt: skip
    # Unsigned, whatever the body: not JSON, not an event, or an event no provider signed.
    succeeded = {
        "id": "evt_bad",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": pending["payment_id"],
                "amount": pending["amount_minor"],
                "currency": "usd",
            }
        },
    }
    unsigned = [Bad(b, "invalid_signature") for b in (b"{not json", b"\xff\xfe", b"[1, 2]")]
    unsigned += [Bad(succeeded, "invalid_signature"), Bad(MEGABYTE, "body_too_large")]
    payment = {"payment_id": pending["payment_id"], "action": "confirm"}
    routes = [
        ((user, "POST", PURCHASES, {}), NOT_OBJECTS + purchase),
        ((None, "POST", SANDBOX, payment), NOT_OBJECTS + secret),
        (
            (None, "POST", SANDBOX, payment | {"action": "capture"}),
            [Bad({"client_secret": pending["client_secret"]}, "not_found")],
        ),
        ((None, "POST", WEBHOOK, {}), unsigned),
        ((user, "POST", GIFTS, live), NOT_OBJECTS + gift),
        ((user, "POST", "/v1/orders", {}), NOT_OBJECTS + order),
        ((creator, "POST", "/v1/products", {}), NOT_OBJECTS + price),
        ((creator, "POST", "/v1/sessions", {}), NOT_OBJECTS + start),
        ((creator, "PUT", f"{SESSION}/split", live), NOT_OBJECTS + weights),
        ((creator, "POST", f"{SESSION}/cohosts", live), invite),
        ((creator, "POST", f"{SESSION}/join", live), NOT_OBJECTS + join),
        ((creator, "POST", f"{SESSION}/pin", live), [Bad({}, missing)]),
    ]
    return [(route, bad) for route, bads in routes for bad in bads]


def test_bad_input_is_refused_and_changes_nothing(api: Client):
    user, creator = api.user_with(350), api.account("creator")
    session = api.live(creator)
    product = api.product(creator, 250)
    pending = api("POST", PURCHASES, user, "pending", json={"coins": 70, "channel": "web"})
    cases = bad_input_cases(user, creator, session, product, pending.json())
    for n, (route, bad) in enumerate(cases):
        who, method, template, params = route
        payload = {"content": bad.body} if isinstance(bad.body, bytes) else {"json": bad.body}
        before = state(api.server.db), outbox(api.server.db)
        response = api(method, template, who, f"bad-{n}", **payload, **params)
        shown = bad.body if len(str(bad.body)) < 99 else "1 MB"
        assert error(response) == (bad.status, bad.code), (template, shown)
        # nothing moved, and no telemetry: bad input is not a failed gift or checkout
        assert (state(api.server.db), outbox(api.server.db)) == before, (template, shown)
    assert api.coins(user) == 350 and api.balance(creator) == 0
    shown = api("GET", PAYMENT, user, payment_id=pending.json()["payment_id"])
    assert shown.json()["status"] == "pending"  # no bad confirmation confirmed it


# Coins and gifts ---------------------------------------------------------------------------

# (channel, coins, price_minor, payment_fee_minor, store_fee_minor) of every pack on every
# channel, from policy_default.toml. A rate is applied as amount * bps / 10,000 rounded half up
# (policy.py of_bps): every figure here has a fraction above one half, so it rounds up, where
# truncating would give one less (web 99: 2.871 -> 3, not 2).
# web: processor 290 bps (2.9%) + 30 fixed, no store fee.
# ios and android: store 3000 bps (30%), no processor fee (its fixed fee applies only with a rate).
PACK_FEES = [
    ("web", 70, 99, 33, 0),  # 2.9% of 99 = 2.871, half up -> 3, + 30 = 33
    ("web", 350, 499, 44, 0),  # 2.9% of 499 = 14.471 -> 14, + 30 = 44
    ("web", 700, 999, 59, 0),  # 2.9% of 999 = 28.971 -> 29, + 30 = 59
    ("web", 1400, 1999, 88, 0),  # 2.9% of 1,999 = 57.971 -> 58, + 30 = 88
    ("web", 3500, 4999, 175, 0),  # 2.9% of 4,999 = 144.971 -> 145, + 30 = 175
    ("web", 7000, 9999, 320, 0),  # 2.9% of 9,999 = 289.971 -> 290, + 30 = 320
    ("web", 17500, 24999, 755, 0),  # 2.9% of 24,999 = 724.971 -> 725, + 30 = 755
    ("ios", 70, 99, 0, 30),  # 30% of 99 = 29.7, half up -> 30
    ("ios", 350, 499, 0, 150),  # 30% of 499 = 149.7 -> 150
    ("ios", 700, 999, 0, 300),  # 30% of 999 = 299.7 -> 300
    ("ios", 1400, 1999, 0, 600),  # 30% of 1,999 = 599.7 -> 600
    ("ios", 3500, 4999, 0, 1500),  # 30% of 4,999 = 1,499.7 -> 1,500
    ("ios", 7000, 9999, 0, 3000),  # 30% of 9,999 = 2,999.7 -> 3,000
    ("ios", 17500, 24999, 0, 7500),  # 30% of 24,999 = 7,499.7 -> 7,500
    ("android", 70, 99, 0, 30),  # as ios
    ("android", 350, 499, 0, 150),
    ("android", 700, 999, 0, 300),
    ("android", 1400, 1999, 0, 600),
    ("android", 3500, 4999, 0, 1500),
    ("android", 7000, 9999, 0, 3000),
    ("android", 17500, 24999, 0, 7500),
]
# (channel, coins) -> (price_minor, payment_fee_minor, store_fee_minor): what a confirmed
# purchase's coins_purchased must carry (checked for every test's purchases at teardown).
PACKS = {(channel, coins): fees for channel, coins, *fees in PACK_FEES}


def test_purchase_fees_follow_the_policy_on_every_channel(api: Client):
    """Each pack is charged its price; the coins and the fees come with the confirmation."""
    assert {channel for channel, *_ in PACK_FEES} == CHANNELS
    user = api.account("user")
    total = 0
    bought: dict[str, tuple] = {}
    for channel, coins, price, payment_fee, store_fee in PACK_FEES:
        key = f"{channel}-{coins}"
        pending = api("POST", PURCHASES, user, key, json={"coins": coins, "channel": channel})
        assert pending.status_code == 202, pending.text
        unknown = {"purchase_id": None, "payment_id": None, "client_secret": None}
        assert pending.json() | unknown == unknown | {
            "coins": coins, "channel": channel, "status": "pending", "amount_minor": price,
            "currency": CURRENCY,
        }, (channel, coins)  # fmt: skip
        assert api.coins(user) == total  # nothing is credited before the confirmation
        api.paid(pending)
        total += coins
        assert api.coins(user) == total
        bought[pending.json()["purchase_id"]] = (channel, coins, price, payment_fee, store_fee)
    assert total == 3 * 30_520  # 70 + 350 + 700 + 1,400 + 3,500 + 7,000 + 17,500 per channel
    fields = ("channel", "coins", "amount_minor", "payment_fee_minor", "store_fee_minor")
    told = {
        e["purchase_id"]: tuple(e[f] for f in fields)
        for e in events_so_far(api.server)
        if e["event_type"] == "coins_purchased" and e["purchase_id"] in bought
    }
    assert told == bought


def test_money_moves_only_once_the_provider_confirms(api: Client):
    """A purchase is a pending payment until the sandbox provider's notification: nothing is
    credited and no event written before; a decline leaves nothing but a failed payment; the
    payer alone sees the payment; the provider refuses actions the payment's state forbids."""
    user, other, creator = api.account("user"), api.account("user"), api.account("creator")
    body = {"coins": 350, "channel": "web"}
    before, events = state(api.server.db), outbox(api.server.db)
    declined = api("POST", PURCHASES, user, "declined", json=body).json()
    pending = api("POST", PURCHASES, user, "confirmed", json=body).json()
    after = state(api.server.db)
    assert after.pop("payments") == sorted(
        before.pop("payments") + [(declined["payment_id"], "pending"),
                                  (pending["payment_id"], "pending")]
    )  # fmt: skip
    assert (after, outbox(api.server.db)) == (before, events)  # no coin, no movement, no event
    assert pending["amount_minor"] == 499  # the 350-coin pack

    def status(who: dict | None, payment: dict) -> httpx.Response:
        return api("GET", PAYMENT, who, payment_id=payment["payment_id"])

    assert status(user, pending).json() == {
        "payment_id": pending["payment_id"], "kind": "purchase",
        "reference": pending["purchase_id"], "amount_minor": 499, "currency": CURRENCY,
        "status": "pending",
    }  # fmt: skip
    for someone_else in (other, creator):  # another's payment is as unknown as none
        assert error(status(someone_else, pending)) == (404, "not_found")
    assert error(status(user, {"payment_id": "pi_none"})) == (404, "not_found")
    assert error(status(None, pending)) == (401, "unauthenticated")

    refused = api.pay(declined, "decline")
    assert refused.json() == {
        "event_type": "payment_intent.payment_failed",
        "notification": {"event_id": refused.json()["notification"]["event_id"],
                         "outcome": "applied"},
    }  # fmt: skip
    assert status(user, declined).json()["status"] == "failed"
    assert error(api.pay(declined)) == (409, "invalid_state")  # a declined payment stays so
    assert error(api.pay(pending, "refund")) == (409, "invalid_state")  # nothing to refund yet
    forged = dict(pending, client_secret=declined["client_secret"])
    assert error(api.pay(forged)) == (404, "not_found")  # another payment's secret
    assert error(api.pay(pending, "capture")) == (404, "not_found")  # no such action
    assert api.coins(user) == 0 and outbox(api.server.db) == events  # a decline: no event

    confirmed = api.pay(pending)
    assert confirmed.status_code == 200
    assert confirmed.json()["event_type"] == "payment_intent.succeeded"
    assert confirmed.json()["notification"]["outcome"] == "applied"
    assert status(user, pending).json()["status"] == "succeeded"
    assert error(api.pay(pending)) == (409, "invalid_state")  # confirmed once
    assert api.coins(user) == 350


def test_a_retried_purchase_is_the_same_pending_payment_and_credits_once(api: Client):
    user = api.account("user")
    body = {"coins": 70, "channel": "ios"}
    first = api("POST", PURCHASES, user, "buy-1", json=body)
    again = api("POST", PURCHASES, user, "buy-1", json=body)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    api.paid(first)
    later = api("POST", PURCHASES, user, "buy-1", json=body)  # a retry after the confirmation
    assert later.json() == first.json() and later.headers["idempotent-replayed"] == "true"
    assert error(api.pay(later.json())) == (409, "invalid_state")  # the same, paid payment
    other = api("POST", PURCHASES, user, "buy-1", json={"coins": 350, "channel": "ios"})
    assert error(other) == (422, "idempotency_key_reused")
    assert api.coins(user) == 70  # one pack credited; one coins_purchased (checked after)


def test_payment_notifications_answer_as_documented(api: Client):
    """The provider's notifications, signed here with the module server's secret: each answer
    the description lists, and money moved once per applied event."""
    user = api.account("user")
    pending = api("POST", PURCHASES, user, "buy", json={"coins": 350, "channel": "ios"}).json()

    def notify(event: dict, secret: str = WEBHOOK_SECRET) -> httpx.Response:
        body, headers = signed(event, secret)
        return api("POST", WEBHOOK, content=body, headers=headers)

    succeeded = provider_event("payment_intent.succeeded", pending)
    refund = provider_event("charge.refunded", pending, amount_refunded=499)
    before = state(api.server.db), outbox(api.server.db)
    assert error(notify(refund)) == (409, "out_of_order")  # before its charge: deliver later
    partial = provider_event("charge.refunded", pending, amount_refunded=100)
    assert error(notify(partial)) == (422, "partial_refund")
    wrong = provider_event("payment_intent.succeeded", pending, amount=1)
    assert error(notify(wrong)) == (422, "amount_mismatch")
    unknown = provider_event("payment_intent.succeeded", pending | {"payment_id": "pi_none"})
    assert error(notify(unknown)) == (404, "unknown_payment")
    forged = notify(succeeded, secret="whsec_" + "x" * 32)
    assert error(forged) == (400, "invalid_signature")
    assert (state(api.server.db), outbox(api.server.db)) == before
    other = {"id": f"evt_{uuid.uuid4().hex}", "type": "customer.created",
             "data": {"object": {"id": "cus_1"}}}  # fmt: skip
    assert notify(other).json() == {"event_id": other["id"], "outcome": "ignored"}

    assert notify(succeeded).json() == {"event_id": succeeded["id"], "outcome": "applied"}
    assert notify(succeeded).json() == {
        "event_id": succeeded["id"], "outcome": "replayed", "first_outcome": "applied"
    }  # fmt: skip
    told_again = notify(provider_event("payment_intent.succeeded", pending))
    assert told_again.json()["outcome"] == "no_effect"
    assert api.coins(user) == 350
    assert notify(refund).json()["outcome"] == "applied"  # the early refund, delivered again
    assert api.coins(user) == 0
    (refunded,) = [
        e for e in events_so_far(api.server)
        if e["event_type"] == "coins_refunded" and e["purchase_id"] == pending["purchase_id"]
    ]  # fmt: skip
    # iOS: the store's 30% of 499 = 149.7 -> 150 comes back; all 350 coins were still held.
    assert (refunded["refund_minor"], refunded["store_fee_returned_minor"]) == (499, 150)
    assert refunded["coins_taken_back"] == 350


def test_gifts_split_between_present_hosts_equally_then_by_weight(api: Client):
    """Gift value = coins * coin_value_minor (1). The present hosts are owed 50% of it (the
    platform fee is 5000 bps), in proportion to their weights. Each host is credited the whole
    minor units of what it is owed plus the fraction it carries from earlier gifts, and carries
    the rest; the platform keeps the value less the credited shares."""
    owner, cohost, invited = (api.account("creator") for _ in range(3))
    user = api.user_with(17500)
    session = api.live(owner)
    for guest in (cohost, invited):
        invite = {"creator_id": guest["id"]}
        api("POST", f"{SESSION}/cohosts", owner, json=invite, session_id=session)
    assert api.join(cohost, session).status_code == 200

    def gift(coins: int, key: str) -> tuple[int, dict[str, int]]:
        response = api("POST", GIFTS, user, key, json={"coins": coins}, session_id=session)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["value_minor"] == coins  # coin_value_minor = 1
        splits = {s["creator_id"]: s["share_minor"] for s in body["splits"]}
        assert list(splits) == [s["creator_id"] for s in body["splits"]]  # no host twice
        return body["platform_fee_minor"], splits

    # Owner and co-host present, equal weights (1, 1); the invited host is not present.
    # Value 9: the hosts are owed 4.5, 2.25 each: 2 credited, 0.25 carried; fee 9 - 4 = 5.
    assert gift(9, "g-equal") == (5, {owner["id"]: 2, cohost["id"]: 2})

    weights = {owner["id"]: 3, cohost["id"]: 1, invited["id"]: 5}
    split = api("PUT", f"{SESSION}/split", owner, json={"weights": weights}, session_id=session)
    assert {h["creator_id"]: h["weight"] for h in split.json()["hosts"]} == weights
    # Weights 3 : 1 among the present (total 4). Value 102: the hosts are owed 51; owner
    # 51 * 3/4 = 38.25, + 0.25 carried = 38.5 -> 38, carries 0.5; co-host 51 / 4 = 12.75, + 0.25
    # = 13 -> 13, carries 0. Fee 102 - 51 = 51.
    assert gift(102, "g-weighted") == (51, {owner["id"]: 38, cohost["id"]: 13})

    assert api.join(invited, session).status_code == 200
    # Weights 3 : 1 : 5 (total 9). Value 14: the hosts are owed 7; owner 7 * 3/9 = 2.33, + 0.5
    # = 2.83 -> 2, carries 0.83; co-host 7/9 = 0.78 -> 0, carries 0.78; invited 35/9 = 3.89 ->
    # 3, carries 0.89. Fee 14 - 5 = 9.
    assert gift(14, "g-three") == (9, {owner["id"]: 2, cohost["id"]: 0, invited["id"]: 3})

    for guest in (cohost, invited):
        assert api("POST", f"{SESSION}/leave", guest, session_id=session).status_code == 200
    # Owner alone. Value 10: owed 5, + 0.83 carried = 5.83 -> 5; fee 5.
    assert gift(10, "g-alone") == (5, {owner["id"]: 5})

    # Each balance is what the rate gives, less the carried fraction:
    assert api.balance(owner) == 47  # 2 + 38 + 2 + 5; owed 2.25 + 38.25 + 2.33 + 5 = 47.83
    assert api.balance(cohost) == 15  # 2 + 13 + 0; owed 2.25 + 12.75 + 0.78 = 15.78
    assert api.balance(invited) == 3  # owed 3.89
    assert api.coins(user) == 17_365  # 17,500 - 9 - 102 - 14 - 10


def test_refused_gifts_move_nothing_and_record_gift_failed(api: Client):
    user, creator = api.user_with(70), api.account("creator")
    session = api.live(creator)
    before = state(api.server.db)
    poor = api("POST", GIFTS, user, "too-much", json={"coins": 71}, session_id=session)
    assert error(poor) == (402, "insufficient_balance")
    unknown = api("POST", GIFTS, user, "nowhere", json={"coins": 1}, session_id="s_none")
    assert error(unknown) == (404, "not_found")
    assert state(api.server.db) == before
    assert api("POST", f"{SESSION}/end", creator, session_id=session).status_code == 200
    before = state(api.server.db)
    closed = api("POST", GIFTS, user, "closed", json={"coins": 1}, session_id=session)
    assert error(closed) == (409, "session_closed")
    assert state(api.server.db) == before
    api.expected.gift_failed[(session, user["id"], "insufficient_balance")] += 1
    api.expected.gift_failed[(session, user["id"], "session_closed")] += 1
    assert api.coins(user) == 70


def test_gift_idempotency_replays_and_refuses_a_reused_key(api: Client):
    user, creator = api.user_with(350), api.account("creator")
    session = api.live(creator)
    first = api("POST", GIFTS, user, "gift-1", json={"coins": 5}, session_id=session)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    before = state(api.server.db)
    for body in ({"json": {"coins": 5}}, {"content": b'{ "coins" : 5 }'}):
        again = api("POST", GIFTS, user, "gift-1", session_id=session, **body)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
    other = api("POST", GIFTS, user, "gift-1", json={"coins": 6}, session_id=session)
    assert error(other) == (422, "idempotency_key_reused")
    elsewhere = api("POST", PURCHASES, user, "gift-1", json={"coins": 70, "channel": "web"})
    assert error(elsewhere) == (422, "idempotency_key_reused")
    assert state(api.server.db) == before
    refused = api("POST", GIFTS, user, "gift-2", json={"coins": 1000}, session_id=session)
    assert error(refused) == (402, "insufficient_balance")
    api.expected.gift_failed[(session, user["id"], "insufficient_balance")] += 1
    api.buy(user, 1400, "ios", key="top-up")
    retried = api("POST", GIFTS, user, "gift-2", json={"coins": 1000}, session_id=session)
    assert error(retried) == (402, "insufficient_balance")  # the first answer, replayed
    assert retried.headers["idempotent-replayed"] == "true"
    assert api.coins(user) == 1_745  # 350 - 5 + 1,400


def test_concurrent_gifts_never_overdraw_and_a_key_moves_coins_once(api: Client):
    """Gifts racing through one group commit: the wallet's balance holds, a key counts once."""
    spender, retrier, creator = api.user_with(70), api.user_with(70), api.account("creator")
    session = api.live(creator)

    def gift(who: dict, key: str) -> httpx.Response:
        return api("POST", GIFTS, who, key, json={"coins": 10}, session_id=session)

    with ThreadPoolExecutor(max_workers=8) as pool:
        racing = list(pool.map(lambda n: gift(spender, f"race-{n}"), range(10)))
        retried = list(pool.map(lambda _: gift(retrier, "one-key"), range(8)))
    assert Counter(r.status_code for r in racing) == {201: 7, 402: 3}  # 70 coins = 7 gifts of 10
    api.expected.gift_failed[(session, spender["id"], "insufficient_balance")] += 3
    assert api.coins(spender) == 0
    assert {r.status_code for r in retried} == {201}
    assert len({r.json()["gift_id"] for r in retried}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in retried) == 1
    assert api.coins(retrier) == 60
    # 7 gifts of 10 from the spender and 1 from the retrier, one host: fee 5 each, share 5.
    assert api.balance(creator) == 40  # 8 * 5


# Sessions ----------------------------------------------------------------------------------


def test_session_lifecycle(api: Client):
    owner, cohost, stranger, viewer = (api.account(k) for k in ("creator",) * 3 + ("user",))
    started = api(
        "POST",
        "/v1/sessions",
        owner,
        json={"region": "eu-west", "quality": "1080p", "record": True},
    )
    session = started.json()["session_id"]
    assert started.json() | {"session_id": None, "started_at": None, "split": None} == {
        "session_id": None, "owner_id": owner["id"], "region": "eu-west", "quality": "1080p",
        "record": True, "status": "live", "started_at": None, "ended_at": None,
        "pinned_product_id": None,
        "hosts": [{"creator_id": owner["id"], "present": True, "weight": 1}], "split": None,
    }  # fmt: skip
    assert api("GET", SESSION, viewer, session_id=session).json() == started.json()

    def do(who: dict, action: str, body: dict | None = None) -> httpx.Response:
        return api("POST", f"{SESSION}/{action}", who, json=body, session_id=session)

    invited = do(owner, "cohosts", {"creator_id": cohost["id"]})
    assert invited.status_code == 201
    assert invited.json()["hosts"][1] == {"creator_id": cohost["id"], "present": False, "weight": 1}
    assert invited.json()["host_floor_bps"] == 1_000  # gifts.host_floor_bps: 10%
    accept = {"accept_split": invited.json()["split"]}
    assert invited.json()["split"] != started.json()["split"]  # the hosts changed
    assert error(do(cohost, "join")) == (409, "split_not_accepted")  # a co-host must accept it
    assert do(cohost, "join", accept).json()["hosts"][1]["present"] is True
    assert error(do(cohost, "join", accept)) == (409, "already_present")
    assert error(do(stranger, "join")) == (403, "forbidden")
    assert error(do(stranger, "leave")) == (403, "forbidden")
    assert error(do(owner, "leave")) == (409, "owner_cannot_leave")
    assert do(cohost, "leave").json()["hosts"][1]["present"] is False
    assert error(do(cohost, "leave")) == (409, "not_present")
    assert do(cohost, "join", accept).status_code == 200
    assert error(do(owner, "cohosts", {"creator_id": "cr_nobody"})) == (422, "unknown_creator")
    assert error(do(owner, "cohosts", {"creator_id": viewer["id"]})) == (422, "unknown_creator")
    assert error(api("GET", SESSION, viewer, session_id="s_none")) == (404, "not_found")
    assert error(api("POST", f"{SESSION}/end", owner, session_id="s_none")) == (404, "not_found")
    ended = do(owner, "end").json()
    assert ended["status"] == "ended" and ended["ended_at"] >= ended["started_at"]
    assert not any(h["present"] for h in ended["hosts"])
    assert error(do(owner, "end")) == (409, "session_closed")
    assert error(do(cohost, "join")) == (409, "session_closed")
    assert error(do(owner, "cohosts", {"creator_id": stranger["id"]})) == (409, "session_closed")
    assert api("GET", SESSION, viewer, session_id=session).json() == ended


# Commerce and payouts ----------------------------------------------------------------------


def test_products_pins_checkout_and_refund(api: Client):
    """Order fees from policy_default.toml [commerce]: payment = 2.9% of gross rounded half
    up, + 30 fixed; commission = 8% of gross rounded half up; the creator nets the rest."""
    seller, buyer = api.account("creator"), api.user_with(70)
    first, second = api.product(seller, 2_500, "hoodie"), api.product(seller, 999, "sticker")
    listed = api("GET", "/v1/creators/{creator_id}/products", buyer, creator_id=seller["id"])
    assert [p["product_id"] for p in listed.json()["products"]] == [first, second]
    assert listed.json()["next"] is None  # one page
    assert listed.json()["products"][0] == {
        "product_id": first, "creator_id": seller["id"], "name": "hoodie",
        "price_minor": 2_500, "currency": CURRENCY,
    }  # fmt: skip
    nobody = api("GET", "/v1/creators/{creator_id}/products", buyer, creator_id="cr_nobody")
    assert nobody.json() == {"products": [], "next": None}
    session = api.live(seller)
    pinned = api("POST", f"{SESSION}/pin", seller, json={"product_id": first}, session_id=session)
    assert pinned.json()["pinned_product_id"] == first
    missing = api("POST", f"{SESSION}/pin", seller, json={"product_id": "p_x"}, session_id=session)
    assert error(missing) == (422, "unknown_product")

    def buy(key: str, product: str, quantity: int, live: str | None, money: tuple) -> dict:
        """A checkout: the pending payment carries the fees; the confirmation pays the net."""
        gross, payment_fee, commission, net = money
        body = {"product_id": product, "quantity": quantity, "session_id": live}
        earned = api.balance(seller)
        order = api("POST", ORDERS, buyer, key, json=body)
        assert order.status_code == 202, order.text
        unknown = {"order_id": None, "payment_id": None, "client_secret": None}
        assert order.json() | unknown == unknown | {
            "session_id": live, "creator_id": seller["id"], "product_id": product,
            "quantity": quantity, "gross_minor": gross, "amount_minor": gross,
            "currency": CURRENCY, "payment_fee_minor": payment_fee,
            "commission_minor": commission, "creator_net_minor": net, "status": "pending",
        }  # fmt: skip
        assert api.balance(seller) == earned  # nothing until the provider confirms
        api.paid(order)
        assert api.balance(seller) == earned + net
        return order.json()

    # 3 hoodies: gross 3 * 2,500 = 7,500. Payment: 2.9% of 7,500 = 217.5, exactly half, half
    # up -> 218 (half to even or truncation would give 217), + 30 = 248. Commission: 8% of
    # 7,500 = 600. Net 7,500 - 248 - 600 = 6,652.
    in_live = buy("in-live", first, 3, session, (7_500, 248, 600, 6_652))
    # 1 sticker: gross 999. Payment: 2.9% of 999 = 28.971 -> 29, + 30 = 59. Commission: 8% of
    # 999 = 79.92 -> 80. Net 999 - 59 - 80 = 860.
    outside = buy("outside", second, 1, None, (999, 59, 80, 860))
    assert api.balance(seller) == 7_512  # 6,652 + 860
    unknown_live = {"product_id": first, "quantity": 1, "session_id": "s_none"}
    unknown = api("POST", ORDERS, buyer, "nowhere", json=unknown_live)
    assert error(unknown) == (422, "unknown_session")
    before, events = state(api.server.db), outbox(api.server.db)
    zero_in_live = {"product_id": first, "quantity": 0, "session_id": session}
    assert error(api("POST", ORDERS, buyer, "zero", json=zero_in_live)) == (422, "out_of_range")
    assert (state(api.server.db), outbox(api.server.db)) == (before, events)  # bad input
    # A declined payment for an order in the live records a checkout_failed, and pays nothing.
    declined = api("POST", ORDERS, buyer, "declined", json={
        "product_id": second, "quantity": 1, "session_id": session})  # fmt: skip
    assert api.pay(declined.json(), "decline").status_code == 200
    shown = api("GET", PAYMENT, buyer, payment_id=declined.json()["payment_id"]).json()
    assert (shown["kind"], shown["reference"], shown["status"]) == (
        "order", declined.json()["order_id"], "failed",
    )  # fmt: skip
    assert api.balance(seller) == 7_512
    # Paid after the live ended: the order is paid, and names no live (Expected.settled).
    across_end = api("POST", ORDERS, buyer, "across-end", json={
        "product_id": first, "quantity": 1, "session_id": session})  # fmt: skip
    assert across_end.status_code == 202, across_end.text
    api("POST", f"{SESSION}/end", seller, session_id=session)
    before = state(api.server.db)
    late = {"product_id": first, "quantity": 1, "session_id": session}
    assert error(api("POST", ORDERS, buyer, "late", json=late)) == (409, "session_closed")
    api.expected.checkout_failed[(session, seller["id"], "session_closed")] += 1
    assert state(api.server.db) == before
    api.paid(across_end)
    # 1 hoodie: gross 2,500. Payment: 2.9% of 2,500 = 72.5, exactly half, half up -> 73, + 30
    # = 103. Commission: 8% of 2,500 = 200. Net 2,500 - 103 - 200 = 2,197.
    assert across_end.json()["creator_net_minor"] == 2_197
    assert api.balance(seller) == 9_709  # 7,512 + 2,197

    refund = api("POST", REFUND, seller, order_id=in_live["order_id"])
    assert refund.status_code == 200
    assert refund.json() == {
        "order_id": in_live["order_id"], "payment_id": in_live["payment_id"],
        "refund_minor": 7_500, "status": "refunded",
    }  # fmt: skip
    assert api.balance(seller) == 3_057  # 9,709 - the refunded order's net 6,652
    shown = api("GET", PAYMENT, buyer, payment_id=in_live["payment_id"]).json()
    assert (shown["amount_minor"], shown["status"]) == (7_500, "refunded")
    after_refund = state(api.server.db)
    again = api("POST", REFUND, seller, order_id=in_live["order_id"])
    assert error(again) == (409, "already_refunded")
    assert error(api.pay(in_live, "refund")) == (409, "invalid_state")  # at the provider too
    assert error(api("POST", REFUND, seller, order_id="o_none")) == (404, "not_found")
    assert state(api.server.db) == after_refund
    shown = api("GET", PAYMENT, buyer, payment_id=outside["payment_id"]).json()
    assert shown["status"] == "succeeded"  # the other order stays paid


def test_payouts_pay_the_whole_balance_past_the_threshold(api: Client):
    creator, buyer = api.account("creator"), api.user_with(70)
    assert error(api("POST", "/v1/payouts", creator, "early")) == (409, "below_threshold")
    cheap = api.product(creator, 100)
    api.order(buyer, cheap, key="cheap")
    # Gross 100: payment 2.9% = 2.9 -> 3, + 30 = 33; commission 8% = 8; net 100 - 33 - 8 = 59.
    assert api.balance(creator) == 59  # below the 5,000 threshold
    assert error(api("POST", "/v1/payouts", creator, "still-early")) == (409, "below_threshold")
    dear = api.product(creator, 10_000)
    order = api.order(buyer, dear, key="dear")
    # Gross 10,000: payment 2.9% = 290, + 30 = 320; commission 8% = 800; net 8,880.
    assert order["creator_net_minor"] == 8_880
    assert api.balance(creator) == 8_939  # 59 + 8,880, past the threshold of 5,000
    paid = api("POST", "/v1/payouts", creator, "payout-1", json={})
    assert paid.status_code == 201 and paid.json()["amount_minor"] == 8_939
    assert paid.json()["currency"] == CURRENCY
    assert paid.json()["period_start"] <= paid.json()["period_end"]
    assert api.balance(creator) == 0
    replay = api("POST", "/v1/payouts", creator, "payout-1", json={})
    assert replay.json() == paid.json() and replay.headers["idempotent-replayed"] == "true"
    assert error(api("POST", "/v1/payouts", creator, "payout-2")) == (409, "below_threshold")
    # A refund after the payout still returns the buyer's 10,000. The paid-out balance holds
    # none of the 8,880 net: all of it becomes the creator's debt; the commission (800) comes
    # back and the processor keeps its fee (320), borne by the platform: 8,880 + 800 + 320.
    refund = api("POST", REFUND, creator, order_id=order["order_id"])
    assert refund.status_code == 200 and refund.json()["refund_minor"] == 10_000
    shown = api("GET", PAYMENT, buyer, payment_id=order["payment_id"]).json()
    assert shown["status"] == "refunded"
    me = api("GET", "/v1/me", creator).json()
    assert (me["available_minor"], me["owed_minor"], me["paid_out_minor"]) == (0, 8_880, 8_939)
    owed = f"creator:{creator['id']}:owed"
    with closing(sqlite3.connect(f"file:{api.server.db}?mode=ro", uri=True)) as conn:
        refunded = dict(
            conn.execute(
                "SELECT p.account_id, p.amount FROM postings p JOIN movements m "
                "ON m.id = p.movement_id WHERE m.kind = 'refund' AND m.principal_id = ?",
                (creator["id"],),
            )
        )
    assert refunded == {
        "external:payments": 10_000, owed: -8_880, "platform:commission": -800,
        "platform:refund_costs": -320,
    }  # fmt: skip
    # What the creator earns next repays the debt first: another order of 100 nets 59 (as
    # above), all of it to the debt (once released: the test server holds earnings 0 days):
    # 8,880 - 59 = 8,821 owed, and nothing available.
    api.order(buyer, cheap, key="cheap-again")
    me = api("GET", "/v1/me", creator).json()
    assert (me["available_minor"], me["owed_minor"]) == (0, 8_821)


def test_the_books_balance(api: Client):
    """Every movement sums to zero per unit, and each account holds its hand-worked sum."""
    user, creator = api.account("user"), api.account("creator")
    api.buy(user, 350, "android", key="buy")
    session = api.live(creator)
    api("POST", GIFTS, user, "gift", json={"coins": 101}, session_id=session)
    product = api.product(creator, 500)
    api.order(user, product, key="order")
    disputed = api.buy(user, 70, "web", key="disputed")
    assert api.pay(disputed, "dispute").json()["notification"]["outcome"] == "applied"
    assert api.coins(user) == 249  # the disputed pack's 70 coins are taken back
    with closing(sqlite3.connect(f"file:{api.server.db}?mode=ro", uri=True)) as conn:
        postings = dict(
            conn.execute(
                "SELECT p.account_id, sum(p.amount) FROM postings p JOIN movements m "
                "ON m.id = p.movement_id WHERE m.principal_id = ? GROUP BY p.account_id",
                (user["id"],),
            )
        )
    # Android pack of 350 coins at 499: store 30% of 499 = 149.7, half up -> 150; no processor
    # fee in-app; the platform keeps 499 - 150 = 349.
    # Gift of 101 coins = 101 (coin_value_minor 1): the owner, alone, is owed 50% = 50.5:
    # 50 credited, 0.5 carried; the platform keeps 101 - 50 = 51.
    # Order of 500: payment 2.9% of 500 = 14.5, exactly half, half up -> 15, + 30 fixed = 45;
    # commission 8% of 500 = 40; the creator nets 500 - 45 - 40 = 415.
    # Web pack of 70 coins at 99, disputed: processor 2.9% of 99 = 2.871 -> 3, + 30 = 33, kept
    # by the processor and borne by the platform; the buyer gets 99 back, the 70 coins (all
    # still in the wallet) are taken back, and the platform's 99 - 33 = 66 of sales reversed.
    assert postings == {
        "coins:issued": -249,  # -350 - 70 minted, +101 back from the gift, +70 taken back
        f"wallet:{user['id']}": 249,  # 350 - 101 (+ 70 - 70)
        "external:payments": -999,  # 499 + 500 + 99 paid in, 99 refunded
        "external:store_fees": 150,
        "platform:coin_sales": 349,  # 349 (+ 66 - 66)
        "platform:gift_funding": -101,
        "platform:gift_fees": 51,
        "external:processor_fees": 78,  # 45 from the order, 33 from the disputed pack
        "platform:refund_costs": -33,  # the disputed pack's processor fee
        "platform:commission": 40,
        f"creator:{creator['id']}:pending": 465,  # 50 + 415, held (then released to available)
    }
    assert api.balance(creator) == 465  # the test server's hold is 0 days: available at once
    check_books(api.server.db)


# The graceful stop -------------------------------------------------------------------------


def test_telemetry_after_a_graceful_stop(tmp_path: Path):
    """A server of its own: calls of every kind, a stop, then each call once in sealed files."""
    server = RuntimeProcess(tmp_path / "runtime").start()
    try:
        api = Client(server)
        owner, cohost, fan = api.account("creator"), api.account("creator"), api.account("user")
        bought = {channel: api.buy(fan, 700, channel, key=channel) for channel in CHANNELS}
        ended = api.live(owner, region="eu-west", quality="1080p")
        api(
            "POST", f"{SESSION}/cohosts", owner, json={"creator_id": cohost["id"]}, session_id=ended
        )
        api.join(cohost, ended)
        gift = api("POST", GIFTS, fan, "g1", json={"coins": 11}, session_id=ended).json()
        # 11: the two equal hosts are owed 5.5, 2.75 each -> 2 and 2; the fee is 11 - 4 = 7.
        assert (gift["platform_fee_minor"], [s["share_minor"] for s in gift["splits"]]) == (
            7,
            [2, 2],
        )
        poor = api("POST", GIFTS, fan, "g2", json={"coins": 5_000}, session_id=ended)
        assert error(poor) == (402, "insufficient_balance")
        api.expected.gift_failed[(ended, fan["id"], "insufficient_balance")] += 1
        assert api.pay(bought["ios"], "dispute").status_code == 200
        assert api.coins(fan) == 1_389  # 3 * 700 - 11 gifted - 700 taken back
        api("POST", f"{SESSION}/leave", cohost, session_id=ended)
        api("POST", f"{SESSION}/end", owner, session_id=ended)
        left_live = api.live(owner)
        product = api.product(owner, 10_000)
        first_order = api.order(fan, product, session_id=left_live, key="o1")
        api.order(fan, product, key="o2")
        zero = {"product_id": product, "quantity": 0, "session_id": left_live}
        assert error(api("POST", ORDERS, fan, "o3", json=zero)) == (422, "out_of_range")
        declined = {"product_id": product, "quantity": 1, "session_id": left_live}
        pending = api("POST", ORDERS, fan, "o4", json=declined).json()
        assert api.pay(pending, "decline").status_code == 200  # a checkout_failed
        refund = api("POST", REFUND, owner, order_id=first_order["order_id"])
        assert refund.status_code == 200
        payout = api("POST", "/v1/payouts", owner, "p1")
        # Orders of 10,000 net 10,000 - (290 + 30) - 800 = 8,880 each, one refunded; plus the
        # owner's 2 from the gift: 8,882.
        assert payout.status_code == 201 and payout.json()["amount_minor"] == 8_882
        api.raw.http.close()
    finally:
        server.stop()
    assert server.process is not None
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    assert "Traceback" not in server.log_text()
    assert list((server.telemetry / "open").iterdir()) == []
    lines = [
        line for path in list_sealed(server.telemetry) for line in path.read_text().splitlines()
    ]
    events = [json.loads(line) for line in lines]
    assert api.expected.ended == {ended: "host_ended"}
    check_telemetry(events, api.expected, stopped=True)  # left_live ends as "error"
    assert {e["event_type"] for e in events} >= {
        "coins_purchased", "coins_refunded", "gift_sent", "gift_failed", "order_paid",
        "order_refunded", "payout_issued", "checkout_failed", "session_started", "session_ended",
        "host_joined", "host_left", "media_usage",
    }  # fmt: skip
    check_books(server.db)
