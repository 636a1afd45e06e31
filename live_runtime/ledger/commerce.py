"""Creator-led selling: products, pinning one in a live, checkout, refunds and payouts."""

from __future__ import annotations

from typing import Any

from live_runtime.ledger import books
from live_runtime.ledger.books import Refused, Result, Tx, new_id
from live_runtime.ledger.sessions import owned_session, session_view
from live_runtime.policy import Policy


def create_product(tx: Tx, policy: Policy, creator_id: str, name: str, price: int) -> Result:
    if not 0 < price <= policy.max_price_minor:
        raise Refused(422, "out_of_range", f"price_minor must be 1 to {policy.max_price_minor:,}")
    product_id = new_id("p")
    tx.conn.execute(
        "INSERT INTO products (id, creator_id, name, price_minor, currency, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (product_id, creator_id, name, price, policy.currency, tx.occurred_at),
    )
    return 201, _product(tx, product_id)


def _product(tx: Tx, product_id: str) -> dict[str, Any]:
    row = tx.one(
        "SELECT creator_id, name, price_minor, currency FROM products WHERE id = ?", (product_id,)
    )
    if row is None:
        raise Refused(404, "not_found", f"no product {product_id}")
    creator_id, name, price, currency = row
    return {
        "product_id": product_id,
        "creator_id": creator_id,
        "name": name,
        "price_minor": price,
        "currency": currency,
    }


def list_products(tx: Tx, creator_id: str) -> Result:
    ids = tx.conn.execute(
        "SELECT id FROM products WHERE creator_id = ? ORDER BY created_at, id", (creator_id,)
    )
    return 200, {"products": [_product(tx, i) for (i,) in ids.fetchall()]}


def pin_product(tx: Tx, creator_id: str, session_id: str, product_id: str) -> Result:
    owned_session(tx, session_id, creator_id)
    product = _product(tx, product_id)
    if product["creator_id"] != creator_id:
        raise Refused(403, "forbidden", f"product {product_id} belongs to another creator")
    tx.conn.execute(
        "UPDATE sessions SET pinned_product_id = ? WHERE id = ?", (product_id, session_id)
    )
    tx.push(session_id, {"type": "pinned", "product": product})
    return 200, session_view(tx, session_id)


def checkout(
    tx: Tx,
    policy: Policy,
    buyer_id: str,
    product_id: str,
    quantity: int,
    session_id: str | None,
) -> Result:
    order_id = new_id("o")
    product = _product(tx, product_id)
    creator_id = product["creator_id"]

    def failed(status: int, code: str, message: str) -> Refused:
        event = None
        if session_id is not None:
            fields = dict(order_id=order_id, session_id=session_id, creator_id=creator_id)
            event = ("checkout_failed", fields | {"reason": code})
        return Refused(status, code, message, event)

    if not 0 < quantity <= policy.max_quantity:
        raise failed(422, "out_of_range", f"quantity must be 1 to {policy.max_quantity}")
    if session_id is not None:
        session = tx.one("SELECT owner_id, status FROM sessions WHERE id = ?", (session_id,))
        if session is None:
            raise Refused(404, "not_found", f"no session {session_id}")
        if session[1] != "live":
            raise failed(409, "session_closed", f"session {session_id} has ended")
    gross = product["price_minor"] * quantity
    payment_fee, commission = policy.order_fees(gross)
    net = gross - payment_fee - commission
    tx.conn.execute(
        "INSERT INTO orders (id, buyer_id, creator_id, product_id, session_id, quantity, "
        "gross_minor, payment_fee_minor, commission_minor, creator_net_minor, status) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'paid')",
        (
            order_id,
            buyer_id,
            creator_id,
            product_id,
            session_id,
            quantity,
            gross,
            payment_fee,
            commission,
            net,
        ),
    )
    tx.move(
        order_id,
        "order",
        buyer_id,
        {
            books.PAYMENTS: -gross,
            books.PROCESSOR_FEES: payment_fee,
            books.COMMISSION: commission,
            books.earnings(creator_id): net,
        },
    )
    order = {
        "order_id": order_id,
        "session_id": session_id,
        "creator_id": creator_id,
        "product_id": product_id,
        "quantity": quantity,
        "gross_minor": gross,
        "currency": policy.currency,
        "payment_fee_minor": payment_fee,
        "commission_minor": commission,
        "creator_net_minor": net,
    }
    tx.emit("order_paid", order_id, **order)
    return 201, order | {"status": "paid"}


def refund_order(tx: Tx, creator_id: str, order_id: str, reason: str) -> Result:
    row = tx.one(
        "SELECT creator_id, status, gross_minor, payment_fee_minor, commission_minor, "
        "creator_net_minor FROM orders WHERE id = ?",
        (order_id,),
    )
    if row is None:
        raise Refused(404, "not_found", f"no order {order_id}")
    seller, status, gross, payment_fee, commission, net = row
    if seller != creator_id:
        raise Refused(403, "forbidden", f"order {order_id} was sold by another creator")
    if status == "refunded":
        raise Refused(409, "already_refunded", f"order {order_id} is already refunded")
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (books.earnings(seller),))
    if balance < net:
        raise Refused(
            409,
            "insufficient_balance",
            f"the refund takes back {net} from a balance of {balance} (already paid out)",
        )
    refund_id = new_id("rf")
    tx.conn.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", (order_id,))
    tx.move(
        refund_id,
        "refund",
        creator_id,
        {
            books.PAYMENTS: gross,
            books.earnings(seller): -net,
            books.COMMISSION: -commission,
            books.REFUND_COSTS: -payment_fee,
        },
    )
    tx.emit("order_refunded", refund_id, order_id=order_id, refund_minor=gross, reason=reason)
    return 200, {
        "order_id": order_id,
        "refund_id": refund_id,
        "refund_minor": gross,
        "status": "refunded",
    }


def payout(tx: Tx, policy: Policy, creator_id: str) -> Result:
    account = books.earnings(creator_id)
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    if balance < policy.payout_threshold_minor:
        raise Refused(
            409,
            "below_threshold",
            f"balance {balance} is below the payout threshold {policy.payout_threshold_minor}",
        )
    last = tx.one("SELECT max(period_end) FROM payouts WHERE creator_id = ?", (creator_id,))[0]
    created = tx.one("SELECT created_at FROM principals WHERE id = ?", (creator_id,))[0]
    period_start = last or created[:10]
    period_end = tx.occurred_at[:10]
    payout_id = new_id("po")
    tx.conn.execute(
        "INSERT INTO payouts (id, creator_id, amount_minor, period_start, period_end) "
        "VALUES (?, ?, ?, ?, ?)",
        (payout_id, creator_id, balance, period_start, period_end),
    )
    tx.move(payout_id, "payout", creator_id, {account: -balance, books.PAYOUTS: balance})
    tx.emit(
        "payout_issued",
        payout_id,
        payout_id=payout_id,
        creator_id=creator_id,
        amount_minor=balance,
        currency=policy.currency,
        period_start=period_start,
        period_end=period_end,
    )
    return 201, {
        "payout_id": payout_id,
        "amount_minor": balance,
        "currency": policy.currency,
        "period_start": period_start,
        "period_end": period_end,
    }
