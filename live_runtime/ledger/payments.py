"""Payments: a purchase or checkout waits as a pending payment until the payment provider
confirms the charge; the provider's refunds and disputes reverse what it paid for.

Money moves only in `apply_notification`, on a notification whose signature the server has
verified (live_runtime/payments/). Each notification applies at most once (`webhook_events`
keeps its id); one that arrives before the state it changes (a refund of a charge not yet
confirmed) changes nothing and is answered 409, so the provider delivers it again later.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from live_runtime.ledger import books, earnings
from live_runtime.ledger.books import Refused, Result, Tx, new_id
from live_runtime.ledger.commerce import product
from live_runtime.policy import Policy

SUCCEEDED = "payment_intent.succeeded"
FAILED = "payment_intent.payment_failed"
REFUNDED = "charge.refunded"
DISPUTED = "charge.dispute.created"
HANDLED = (SUCCEEDED, FAILED, REFUNDED, DISPUTED)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _open(tx: Tx, policy: Policy, kind: str, principal: str, reference: str, amount: int,
          details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Records a pending payment; the client secret lets the payer confirm it with the provider."""
    payment_id = new_id("pi")
    client_secret = f"{payment_id}_secret_{secrets.token_urlsafe(18)}"
    tx.conn.execute(
        "INSERT INTO payments (id, kind, principal_id, reference, amount_minor, currency, "
        "details, client_secret_hash, status, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (payment_id, kind, principal, reference, amount, policy.currency,
         json.dumps(details, sort_keys=True), _hash(client_secret), tx.occurred_at,
         tx.occurred_at),
    )  # fmt: skip
    return {
        "payment_id": payment_id,
        "status": "pending",
        "amount_minor": amount,
        "currency": policy.currency,
        "client_secret": client_secret,
    }


def open_purchase(tx: Tx, policy: Policy, user_id: str, coins: int, channel: str) -> Result:
    """A coin purchase awaiting payment; no coin exists until the provider confirms it."""
    price = policy.coin_packs.get(coins)
    if price is None:
        packs = ", ".join(str(c) for c in sorted(policy.coin_packs))
        raise Refused(422, "unknown_pack", f"no coin pack of {coins} coins (packs: {packs})")
    payment_fee, store_fee = policy.channels[channel].fees(price)
    purchase_id = new_id("pu")
    details = {"coins": coins, "channel": channel, "payment_fee_minor": payment_fee,
               "store_fee_minor": store_fee}  # fmt: skip
    body = _open(tx, policy, "purchase", user_id, purchase_id, price, details)
    return 202, {"purchase_id": purchase_id, "coins": coins, "channel": channel, **body}


def open_order(
    tx: Tx,
    policy: Policy,
    buyer_id: str,
    product_id: str,
    quantity: int,
    session_id: str | None,
) -> Result:
    """An order awaiting payment. A live it names must be one its product's creator hosts."""
    item = product(tx, product_id)
    creator_id, price = item["creator_id"], item["price_minor"]
    if not 0 < quantity <= policy.max_quantity:
        raise Refused(422, "out_of_range", f"quantity must be 1 to {policy.max_quantity}")
    if session_id is not None:
        _check_live_of(tx, session_id, creator_id)
    gross = price * quantity
    payment_fee, commission = policy.order_fees(gross)
    order_id = new_id("o")
    details = {"product_id": product_id, "creator_id": creator_id, "quantity": quantity,
               "session_id": session_id, "payment_fee_minor": payment_fee,
               "commission_minor": commission,
               "creator_net_minor": gross - payment_fee - commission}  # fmt: skip
    body = _open(tx, policy, "order", buyer_id, order_id, gross, details)
    return 202, {"order_id": order_id, "gross_minor": gross, **details, **body}


def _check_live_of(tx: Tx, session_id: str, creator_id: str) -> None:
    """The session is live and the creator is one of its hosts, present now."""
    session = tx.one("SELECT status FROM sessions WHERE id = ?", (session_id,))
    if session is None:
        raise Refused(422, "unknown_session", f"no session {session_id}")  # a body's id
    host = tx.one(
        "SELECT present FROM session_hosts WHERE session_id = ? AND creator_id = ?",
        (session_id, creator_id),
    )
    not_hosting = Refused(
        422, "not_hosting", f"the product's creator is not hosting session {session_id}"
    )
    if host is None:  # another creator's live: nothing is recorded against it
        raise not_hosting
    if session[0] != "live":
        event = {"order_id": new_id("o"), "session_id": session_id, "creator_id": creator_id,
                 "reason": "session_closed"}  # fmt: skip
        raise Refused(
            409, "session_closed", f"session {session_id} has ended", ("checkout_failed", event)
        )
    if not host[0]:
        raise not_hosting


def payment_view(tx: Tx, principal_id: str, payment_id: str) -> Result:
    row = tx.one(
        "SELECT kind, reference, amount_minor, currency, status, principal_id FROM payments "
        "WHERE id = ?",
        (payment_id,),
    )
    if row is None or row[5] != principal_id:  # another's payment is as unknown as none
        raise Refused(404, "not_found", f"no payment {payment_id}")
    kind, reference, amount, currency, status, _ = row
    return 200, {"payment_id": payment_id, "kind": kind, "reference": reference,
                 "amount_minor": amount, "currency": currency, "status": status}  # fmt: skip


def check_client_secret(tx: Tx, payment_id: str, client_secret: str) -> Result:
    """The sandbox provider's check that the payer holds the payment's client secret."""
    row = tx.one(
        "SELECT amount_minor, currency, status, client_secret_hash FROM payments WHERE id = ?",
        (payment_id,),
    )
    if row is None or not secrets.compare_digest(row[3], _hash(client_secret)):
        raise Refused(404, "not_found", f"no payment {payment_id} with this client secret")
    return 200, {"payment_id": payment_id, "amount_minor": row[0], "currency": row[1],
                 "status": row[2]}  # fmt: skip


# Notifications from the provider ----------------------------------------------------------


def apply_notification(tx: Tx, policy: Policy, event: dict[str, Any]) -> Result:
    """Applies one verified provider event, at most once; see the module docstring."""
    event_id, event_type = str(event.get("id", "")), str(event.get("type", ""))
    seen = tx.one("SELECT outcome FROM webhook_events WHERE event_id = ?", (event_id,))
    if seen is not None:
        return 200, {"event_id": event_id, "outcome": "replayed", "first_outcome": seen[0]}
    obj = event.get("data", {}).get("object", {})
    intent = obj.get("id") if event_type in (SUCCEEDED, FAILED) else obj.get("payment_intent")
    payment = _payment(tx, str(intent)) if event_type in HANDLED else None
    if event_type in HANDLED and payment is None:
        raise Refused(404, "unknown_payment", f"{event_type} for unknown payment {intent}")
    if payment is not None and (obj.get("amount"), str(obj.get("currency", "")).upper()) != (
        payment["amount_minor"],
        payment["currency"],
    ):
        raise Refused(422, "amount_mismatch", f"{event_type} amount or currency differs "
                      f"from payment {payment['id']}")  # fmt: skip
    if event_type == SUCCEEDED:
        outcome = _succeeded(tx, policy, payment)
    elif event_type == FAILED:
        outcome = _failed(tx, payment)
    elif event_type in (REFUNDED, DISPUTED):
        if event_type == REFUNDED and obj.get("amount_refunded") != obj.get("amount"):
            raise Refused(422, "partial_refund", "only full refunds are supported")
        outcome = _reverse(tx, policy, payment, "refund" if event_type == REFUNDED else "dispute")
    else:
        outcome = "ignored"
    tx.conn.execute(
        "INSERT INTO webhook_events (event_id, event_type, payment_id, outcome, received_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (event_id, event_type, payment["id"] if payment else None, outcome, tx.occurred_at),
    )
    return 200, {"event_id": event_id, "outcome": outcome}


def _payment(tx: Tx, payment_id: str) -> dict[str, Any] | None:
    row = tx.one(
        "SELECT kind, principal_id, reference, amount_minor, currency, details, status "
        "FROM payments WHERE id = ?",
        (payment_id,),
    )
    if row is None:
        return None
    kind, principal, reference, amount, currency, details, status = row
    return {"id": payment_id, "kind": kind, "principal_id": principal, "reference": reference,
            "amount_minor": amount, "currency": currency, "status": status,
            **json.loads(details)}  # fmt: skip


def _set_status(tx: Tx, payment: dict[str, Any], status: str) -> None:
    tx.conn.execute(
        "UPDATE payments SET status = ?, updated_at = ? WHERE id = ?",
        (status, tx.occurred_at, payment["id"]),
    )


def _out_of_order(payment: dict[str, Any], wanted: str, what: str) -> Refused:
    return Refused(
        409, "out_of_order", f"{what} of payment {payment['id']} while it is "
        f"{payment['status']}, not {wanted}; deliver it again later",
    )  # fmt: skip


def _succeeded(tx: Tx, policy: Policy, payment: dict[str, Any]) -> str:
    if payment["status"] != "pending":
        return "no_effect"  # already settled one way or the other
    _set_status(tx, payment, "succeeded")
    if payment["kind"] == "purchase":
        _credit_coins(tx, policy, payment)
    else:
        _record_order(tx, policy, payment)
    return "applied"


def _failed(tx: Tx, payment: dict[str, Any]) -> str:
    if payment["status"] != "pending":
        return "no_effect"
    _set_status(tx, payment, "failed")
    if payment["kind"] == "order" and payment["session_id"] is not None:
        tx.emit("checkout_failed", order_id=payment["reference"],
                session_id=payment["session_id"], creator_id=payment["creator_id"],
                reason="payment_declined")  # fmt: skip
    return "applied"


def _credit_coins(tx: Tx, policy: Policy, payment: dict[str, Any]) -> None:
    coins, price = payment["coins"], payment["amount_minor"]
    payment_fee, store_fee = payment["payment_fee_minor"], payment["store_fee_minor"]
    user_id, purchase_id = payment["principal_id"], payment["reference"]
    tx.move(purchase_id, "purchase", user_id, {
        books.COINS_ISSUED: -coins,
        books.wallet(user_id): coins,
        books.PAYMENTS: -price,
        books.PROCESSOR_FEES: payment_fee,
        books.STORE_FEES: store_fee,
        books.COIN_SALES: price - payment_fee - store_fee,
    })  # fmt: skip
    tx.emit("coins_purchased", purchase_id, purchase_id=purchase_id, user_id=user_id,
            coins=coins, amount_minor=price, currency=policy.currency,
            channel=payment["channel"], payment_fee_minor=payment_fee,
            store_fee_minor=store_fee)  # fmt: skip


def _record_order(tx: Tx, policy: Policy, payment: dict[str, Any]) -> None:
    """The paid order. A live that ended while the payment was pending is not named: orders
    of a live happen within it (docs/models.md)."""
    session_id = payment["session_id"]
    if session_id is not None:
        status = tx.one("SELECT status FROM sessions WHERE id = ?", (session_id,))
        session_id = session_id if status and status[0] == "live" else None
    order_id, creator_id = payment["reference"], payment["creator_id"]
    gross, net = payment["amount_minor"], payment["creator_net_minor"]
    payment_fee, commission = payment["payment_fee_minor"], payment["commission_minor"]
    tx.conn.execute(
        "INSERT INTO orders (id, buyer_id, creator_id, product_id, session_id, quantity, "
        "gross_minor, payment_fee_minor, commission_minor, creator_net_minor, status) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'paid')",
        (order_id, payment["principal_id"], creator_id, payment["product_id"], session_id,
         payment["quantity"], gross, payment_fee, commission, net),
    )  # fmt: skip
    tx.move(order_id, "order", payment["principal_id"], {
        books.PAYMENTS: -gross,
        books.PROCESSOR_FEES: payment_fee,
        books.COMMISSION: commission,
        **earnings.credit(tx, policy, creator_id, net),
    })  # fmt: skip
    tx.emit("order_paid", order_id, order_id=order_id, session_id=session_id,
            creator_id=creator_id, product_id=payment["product_id"],
            quantity=payment["quantity"], gross_minor=gross, currency=policy.currency,
            payment_fee_minor=payment_fee, commission_minor=commission,
            creator_net_minor=net)  # fmt: skip


def _reverse(tx: Tx, policy: Policy, payment: dict[str, Any], reason: str) -> str:
    """Gives the buyer their money back. The processor keeps its fee (the platform bears it);
    an app store returns its own. Coins still in the wallet are taken back (the platform bears
    those already gifted); an order's net is clawed back from the creator, as a debt if it
    was paid out."""
    if payment["status"] in ("refunded", "disputed"):
        return "no_effect"
    if payment["status"] != "succeeded":
        raise _out_of_order(payment, "succeeded", reason)
    _set_status(tx, payment, "refunded" if reason == "refund" else "disputed")
    if payment["kind"] == "purchase":
        _reverse_coins(tx, policy, payment, reason)
    else:
        _reverse_order(tx, payment, reason)
    return "applied"


def _reverse_coins(tx: Tx, policy: Policy, payment: dict[str, Any], reason: str) -> None:
    user_id, price = payment["principal_id"], payment["amount_minor"]
    payment_fee, store_fee = payment["payment_fee_minor"], payment["store_fee_minor"]
    (held,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (books.wallet(user_id),))
    taken = min(held, payment["coins"])
    reversal_id = new_id("cr")
    tx.move(reversal_id, "coin_refund", user_id, {
        books.PAYMENTS: price,
        books.wallet(user_id): -taken,
        books.COINS_ISSUED: taken,
        books.STORE_FEES: -store_fee,
        books.COIN_SALES: -(price - payment_fee - store_fee),
        books.REFUND_COSTS: -payment_fee,
    })  # fmt: skip
    tx.emit("coins_refunded", reversal_id, purchase_id=payment["reference"], user_id=user_id,
            refund_minor=price, currency=policy.currency, channel=payment["channel"],
            store_fee_returned_minor=store_fee, coins_taken_back=taken,
            reason=reason)  # fmt: skip


def _reverse_order(tx: Tx, payment: dict[str, Any], reason: str) -> None:
    order_id, creator_id = payment["reference"], payment["creator_id"]
    gross, net = payment["amount_minor"], payment["creator_net_minor"]
    refund_id = new_id("rf")
    tx.conn.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", (order_id,))
    tx.move(refund_id, "refund", creator_id, {
        books.PAYMENTS: gross,
        **earnings.claw_back(tx, creator_id, net),
        books.COMMISSION: -payment["commission_minor"],
        books.REFUND_COSTS: -payment["payment_fee_minor"],
    })  # fmt: skip
    tx.emit("order_refunded", refund_id, order_id=order_id, refund_minor=gross, reason=reason)
