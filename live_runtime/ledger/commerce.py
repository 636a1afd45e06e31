"""Creator-led selling: products, pinning one in a live, refund requests and payouts.

Checkout and the money of orders and refunds are payments (payments.py)."""

from __future__ import annotations

from typing import Any

from live_runtime.ledger import books, earnings
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
    return 201, product(tx, product_id)


def product(tx: Tx, product_id: str) -> dict[str, Any]:
    row = tx.one(
        "SELECT creator_id, name, price_minor, currency FROM products WHERE id = ?", (product_id,)
    )
    if row is None:
        raise Refused(422, "unknown_product", f"no product {product_id}")  # a body's id
    creator_id, name, price, currency = row
    return {
        "product_id": product_id,
        "creator_id": creator_id,
        "name": name,
        "price_minor": price,
        "currency": currency,
    }


def list_products(tx: Tx, creator_id: str, limit: int, after: str | None) -> Result:
    """One page of the creator's products, oldest first; `next` continues after the last."""
    rows = tx.conn.execute(
        "SELECT id, creator_id, name, price_minor, currency FROM products "
        "WHERE creator_id = ? AND id > ? ORDER BY id LIMIT ?",
        (creator_id, after or "", limit + 1),
    ).fetchall()
    page = [
        {"product_id": i, "creator_id": c, "name": n, "price_minor": p, "currency": cur}
        for i, c, n, p, cur in rows[:limit]
    ]
    more = len(rows) > limit
    return 200, {"products": page, "next": page[-1]["product_id"] if more else None}


def pin_product(tx: Tx, creator_id: str, session_id: str, product_id: str) -> Result:
    owned_session(tx, session_id, creator_id)
    pinned = product(tx, product_id)
    if pinned["creator_id"] != creator_id:
        raise Refused(403, "forbidden", f"product {product_id} belongs to another creator")
    tx.conn.execute(
        "UPDATE sessions SET pinned_product_id = ? WHERE id = ?", (product_id, session_id)
    )
    tx.push(session_id, {"type": "pinned", "product": pinned})
    return 200, session_view(tx, session_id)


def refundable_payment(tx: Tx, creator_id: str, order_id: str) -> Result:
    """The payment a seller's refund of `order_id` asks the provider to return to the buyer."""
    row = tx.one("SELECT creator_id, status FROM orders WHERE id = ?", (order_id,))
    if row is None:
        raise Refused(404, "not_found", f"no order {order_id}")
    seller, status = row
    if seller != creator_id:
        raise Refused(403, "forbidden", f"order {order_id} was sold by another creator")
    if status == "refunded":
        raise Refused(409, "already_refunded", f"order {order_id} is already refunded")
    payment_id, amount, currency = tx.one(
        "SELECT id, amount_minor, currency FROM payments WHERE kind = 'order' AND reference = ?",
        (order_id,),
    )
    return 200, {"payment_id": payment_id, "amount_minor": amount, "currency": currency}


def payout(tx: Tx, policy: Policy, creator_id: str) -> Result:
    """Pays out the available earnings: those past their hold (earnings.py)."""
    earnings.release_due(tx, creator_id)
    account = books.earnings(creator_id)
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    if balance < policy.payout_threshold_minor:
        raise Refused(
            409,
            "below_threshold",
            f"available earnings {balance} are below the payout threshold "
            f"{policy.payout_threshold_minor} (earnings are held {policy.payout_hold_days} days)",
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
