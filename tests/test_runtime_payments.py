"""Money moves only on a confirmed payment, against a real server on loopback.

The server knows the webhook secret from CREATOR_ECON_WEBHOOK_SECRET, so these tests act as
the payment provider too: they sign notifications themselves (HMAC-SHA256 of "<t>.<body>",
Stripe's scheme, computed here and not with the code under test) and send them over HTTP.
Expected money is worked out by hand from live_runtime/policy_default.toml.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import runtime_server
from runtime_server import Api, RuntimeProcess, ServerFailed, events_so_far

SECRET = "whsec_test_" + "s" * 32
WEBHOOK = "/v1/webhooks/payments"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("payments"))
    runtime.env["CREATOR_ECON_WEBHOOK_SECRET"] = SECRET
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture
def api(server: RuntimeProcess) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.http.close()


def signed(event: dict, secret: str = SECRET, at: int | None = None) -> tuple[bytes, dict]:
    return runtime_server.signed(event, secret, at)


def event(kind: str, payment: dict, amount: int | None = None, **more) -> dict:
    """A Stripe-shaped event about `payment` (its id, amount and currency)."""
    amount = payment["amount_minor"] if amount is None else amount
    obj = {"amount": amount, "currency": payment["currency"].lower(), **more}
    if kind.startswith("payment_intent."):
        obj |= {"id": payment["payment_id"], "object": "payment_intent"}
    else:
        obj |= {"id": f"ch_{uuid.uuid4().hex}", "payment_intent": payment["payment_id"]}
    return {"id": f"evt_{uuid.uuid4().hex}", "type": kind, "data": {"object": obj}}


def notify(api: Api, body_and_headers: tuple[bytes, dict]) -> httpx.Response:
    body, headers = body_and_headers
    return api.http.post(WEBHOOK, content=body, headers=headers)


def ledger(db: Path) -> dict[str, object]:
    """What money a request may change: balances, movements, payments, telemetry written."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {
            "accounts": sorted(conn.execute("SELECT id, balance FROM accounts")),
            "movements": conn.execute("SELECT count(*) FROM movements").fetchone(),
            "payments": sorted(conn.execute("SELECT id, status FROM payments")),
            "outbox": conn.execute("SELECT count(*) FROM outbox").fetchone(),
        }


def money(api: Api, creator: dict) -> dict:
    """The creator's own view (/v1/me): available, pending, owed, paid out."""
    return api.call("GET", "/v1/me", creator).json()


def purchase(api: Api, user: dict, coins: int = 70, channel: str = "web") -> dict:
    pending = api.call(
        "POST", "/v1/wallet/purchases", user, uuid.uuid4().hex,
        json={"coins": coins, "channel": channel},
    )  # fmt: skip
    assert pending.status_code == 202, pending.text
    return pending.json()


def coins(api: Api, user: dict) -> int:
    return api.call("GET", "/v1/me", user).json()["coins"]


def of_type(server: RuntimeProcess, event_type: str, key: str, value: str) -> list[dict]:
    return [e for e in events_so_far(server) if e["event_type"] == event_type and e[key] == value]


def test_a_purchase_moves_nothing_until_the_provider_confirms_it(api: Api, server):
    user = api.account("user")
    before = ledger(server.db)
    pending = purchase(api, user)
    # The 70-coin pack costs 99; nothing is credited and no event is written yet.
    assert (pending["status"], pending["amount_minor"], pending["coins"]) == ("pending", 99, 70)
    assert coins(api, user) == 0
    after = ledger(server.db)
    assert (after["accounts"], after["movements"], after["outbox"]) == (
        before["accounts"],
        before["movements"],
        before["outbox"],
    )
    paid = api.pay(pending)
    assert paid.status_code == 200 and paid.json()["notification"]["outcome"] == "applied"
    assert coins(api, user) == 70
    (bought,) = of_type(server, "coins_purchased", "purchase_id", pending["purchase_id"])
    # Web processor fee: 2.9% of 99 = 2.871 -> 3, plus 30 fixed = 33; no store fee.
    assert (bought["amount_minor"], bought["payment_fee_minor"], bought["store_fee_minor"]) == (
        99,
        33,
        0,
    )
    assert api.call("GET", f"/v1/payments/{pending['payment_id']}", user).json()["status"] == (
        "succeeded"
    )


def test_forged_stale_or_unsigned_notifications_change_nothing_and_are_logged(api, server):
    user = api.account("user")
    pending = purchase(api, user)
    good = event("payment_intent.succeeded", pending)
    body, headers = signed(good)
    tampered = body.replace(b'"amount": 99', b'"amount": 990')
    attempts = [
        (body, {"content-type": "application/json"}),  # unsigned
        signed(good, secret="whsec_" + "x" * 32),  # signed with another secret
        signed(good, at=int(time.time()) - 3600),  # an hour old: a captured request replayed
        (tampered, headers),  # changed after signing
    ]
    before = ledger(server.db)
    for attempt in attempts:
        response = notify(api, attempt)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_signature"
        assert "\n" not in response.json()["message"]
    assert ledger(server.db) == before and coins(api, user) == 0
    refused = server.log_text().count("payment notification refused")
    assert refused >= len(attempts)


def test_a_replayed_notification_credits_once(api, server):
    user = api.account("user")
    pending = purchase(api, user)
    once = signed(event("payment_intent.succeeded", pending))
    first, again = notify(api, once), notify(api, once)
    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert (again.status_code, again.json()["outcome"]) == (200, "replayed")
    # The same charge told again under a new event id does not pay twice either.
    other = notify(api, signed(event("payment_intent.succeeded", pending)))
    assert (other.status_code, other.json()["outcome"]) == (200, "no_effect")
    assert coins(api, user) == 70
    assert len(of_type(server, "coins_purchased", "purchase_id", pending["purchase_id"])) == 1


def test_a_refund_that_arrives_before_its_charge_waits_for_it(api, server):
    user = api.account("user")
    pending = purchase(api, user, coins=350, channel="ios")  # 499 on iOS
    refund = signed(event("charge.refunded", pending, amount_refunded=499))
    before = ledger(server.db)
    early = notify(api, refund)
    assert (early.status_code, early.json()["error"]) == (409, "out_of_order")
    assert ledger(server.db) == before
    assert api.pay(pending).status_code == 200
    assert coins(api, user) == 350
    redelivered = notify(api, refund)  # the provider retries what was not acknowledged
    assert (redelivered.status_code, redelivered.json()["outcome"]) == (200, "applied")
    assert coins(api, user) == 0
    (refunded,) = of_type(server, "coins_refunded", "purchase_id", pending["purchase_id"])
    # iOS: the store's 30% of 499 = 149.7 -> 150 comes back; no processor fee on iOS.
    assert (refunded["refund_minor"], refunded["store_fee_returned_minor"]) == (499, 150)
    assert (refunded["coins_taken_back"], refunded["reason"]) == (350, "refund")


def test_a_notification_for_another_amount_is_refused(api, server):
    user = api.account("user")
    pending = purchase(api, user)
    before = ledger(server.db)
    wrong = notify(api, signed(event("payment_intent.succeeded", pending, amount=1)))
    assert (wrong.status_code, wrong.json()["error"]) == (422, "amount_mismatch")
    unknown = dict(pending, payment_id="pi_unknown")
    missing = notify(api, signed(event("payment_intent.succeeded", unknown)))
    assert (missing.status_code, missing.json()["error"]) == (404, "unknown_payment")
    assert ledger(server.db) == before


def test_a_disputed_purchase_takes_back_the_coins_not_yet_spent(api, server):
    user, creator = api.account("user"), api.account("creator")
    pending = api.buy(user, 70)
    session = api.call("POST", "/v1/sessions", creator, json={}).json()["session_id"]
    gift = api.call("POST", f"/v1/sessions/{session}/gifts", user, "g", json={"coins": 20})
    assert gift.status_code == 201
    disputed = api.pay(pending, "dispute")
    assert disputed.status_code == 200, disputed.text
    assert coins(api, user) == 0  # 70 - 20 gifted = 50 taken back
    (reversal,) = of_type(server, "coins_refunded", "purchase_id", pending["purchase_id"])
    assert (reversal["refund_minor"], reversal["coins_taken_back"], reversal["reason"]) == (
        99,
        50,
        "dispute",
    )
    # The 20 gifted coins stay gifted: the creator keeps the 10 earned on them.
    assert money(api, creator)["available_minor"] == 10


def test_seventy_one_coin_gifts_earn_what_one_seventy_coin_gift_does(api, server):
    """The 70-coin web pack: the buyer pays 99, the processor keeps 33, the platform 66.
    Creators are owed 50% of a gift's value: 70 gifts of 1 coin earn 35, not 70."""
    user, creator = api.account("user"), api.account("creator")
    api.buy(user, 70)
    session = api.call("POST", "/v1/sessions", creator, json={}).json()["session_id"]
    for n in range(70):
        gift = api.call("POST", f"/v1/sessions/{session}/gifts", user, f"g{n}", json={"coins": 1})
        assert gift.status_code == 201, gift.text
    assert money(api, creator)["available_minor"] == 35 < 66


def test_an_order_may_name_only_a_live_its_seller_hosts(api, server):
    seller, other, buyer = api.account("creator"), api.account("creator"), api.account("user")
    product = api.call("POST", "/v1/products", seller, json={"name": "mug", "price_minor": 1500})
    elsewhere = api.call("POST", "/v1/sessions", other, json={}).json()["session_id"]
    before = ledger(server.db)
    order = {"product_id": product.json()["product_id"], "quantity": 1, "session_id": elsewhere}
    refused = api.call("POST", "/v1/orders", buyer, "o1", json=order)
    assert (refused.status_code, refused.json()["error"]) == (422, "not_hosting")
    assert ledger(server.db) == before  # no payment, no checkout_failed against that live


def test_a_refund_after_a_payout_is_paid_back_from_later_earnings(api, server):
    """A 6,000 order nets the seller 6,000 - (2.9% = 174, + 30) - 8% commission 480 = 5,316,
    over the 5,000 payout threshold. Paid out, then refunded: the buyer gets 6,000 back and
    the seller owes 5,316, repaid first from what they earn next."""
    seller, buyer, fan = api.account("creator"), api.account("user"), api.account("user")
    product = api.call("POST", "/v1/products", seller, json={"name": "print", "price_minor": 6000})
    pending = api.call(
        "POST", "/v1/orders", buyer, "o1", json={"product_id": product.json()["product_id"],
                                                  "quantity": 1},
    )  # fmt: skip
    assert pending.status_code == 202, pending.text
    assert api.pay(pending.json()).status_code == 200
    payout = api.call("POST", "/v1/payouts", seller, "p1")
    assert (payout.status_code, payout.json()["amount_minor"]) == (201, 5316)
    refund = api.call("POST", f"/v1/orders/{pending.json()['order_id']}/refund", seller)
    assert (refund.status_code, refund.json()["status"]) == (200, "refunded")
    assert money(api, seller)["owed_minor"] == 5316
    (refunded,) = of_type(server, "order_refunded", "order_id", pending.json()["order_id"])
    assert refunded["refund_minor"] == 6000
    # A 1,000-coin gift earns the seller 500, all of it to the debt.
    api.buy(fan, 1400)
    session = api.call("POST", "/v1/sessions", seller, json={}).json()["session_id"]
    gift = api.call("POST", f"/v1/sessions/{session}/gifts", fan, "g", json={"coins": 1000})
    assert gift.json()["splits"] == [{"creator_id": seller["id"], "share_minor": 500}]
    after = money(api, seller)
    assert (after["owed_minor"], after["available_minor"], after["paid_out_minor"]) == (
        4816,
        0,
        5316,
    )


def test_a_policy_whose_pack_loses_money_per_coin_is_refused_at_startup(tmp_path: Path):
    """A 100-coin pack for 60: on the web 60 - (2.9% of 60 = 1.74 -> 2) - 30 = 28 nets 0.28
    per coin; in the app stores 60 - 30% (18) = 42 nets 0.42; creators are paid 0.5 per coin."""
    shipped = (Path(__file__).parents[1] / "live_runtime" / "policy_default.toml").read_text()
    policy = tmp_path / "policy.toml"
    policy.write_text(
        shipped.replace("{ coins = 70, price_minor = 99 },", "{ coins = 100, price_minor = 60 },")
    )
    refused = RuntimeProcess(tmp_path / "refused", extra_args=["--policy", str(policy)])
    with pytest.raises(ServerFailed):
        refused.start()
    assert refused.process is not None and refused.process.returncode == 2
    message = refused.log_text()
    for channel, net, per_coin in (("web", 28, "0.2800"), ("ios", 42, "0.4200")):
        assert f"100 coins for 60 on {channel} nets {net} ({per_coin} per coin)" in message
    assert "Traceback" not in message
    allowed = RuntimeProcess(
        tmp_path / "allowed", extra_args=["--policy", str(policy), "--allow-unprofitable-packs"]
    ).start()
    allowed.stop()


def test_earnings_are_held_for_the_policy_days_and_a_refund_inside_takes_them_back(tmp_path):
    """The shipped policy holds earnings 7 days. A 6,000 order nets the seller 5,316: pending,
    over the 5,000 threshold from a week today, not payable now; refunded inside the hold, it
    leaves nothing pending and no debt."""
    server = RuntimeProcess(tmp_path / "held", hold_days=None).start()
    try:
        api = Api(server.url)
        seller, buyer = api.account("creator"), api.account("user")
        product = api.call("POST", "/v1/products", seller, json={"name": "p", "price_minor": 6000})
        body = {"product_id": product.json()["product_id"], "quantity": 1}
        pending = api.call("POST", "/v1/orders", buyer, "o1", json=body).json()
        assert api.pay(pending).status_code == 200
        held = money(api, seller)
        week = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
        assert (held["pending_minor"], held["available_minor"], held["owed_minor"]) == (5316, 0, 0)
        assert held["next_payout_date"] == week
        assert held["holds"] == [{"releases_on": week, "amount_minor": 5316}]
        payout = api.call("POST", "/v1/payouts", seller, "p1")
        assert (payout.status_code, payout.json()["error"]) == (409, "below_threshold")
        refund = api.call("POST", f"/v1/orders/{pending['order_id']}/refund", seller)
        assert refund.status_code == 200
        after = money(api, seller)
        assert (after["pending_minor"], after["owed_minor"], after["next_payout_date"]) == (
            0,
            0,
            None,
        )
        api.http.close()
    finally:
        server.stop()
