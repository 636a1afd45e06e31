"""Coin purchases and gifts: coins into a wallet, and a gift's value split between the hosts
present and the platform."""

from __future__ import annotations

from live_runtime.ledger import books
from live_runtime.ledger.books import Refused, Result, Tx, new_id
from live_runtime.policy import Policy


def purchase_coins(tx: Tx, policy: Policy, user_id: str, coins: int, channel: str) -> Result:
    price = policy.coin_packs.get(coins)
    if price is None:
        packs = ", ".join(str(c) for c in sorted(policy.coin_packs))
        raise Refused(422, "unknown_pack", f"no coin pack of {coins} coins (packs: {packs})")
    payment_fee, store_fee = policy.channels[channel].fees(price)
    purchase_id = new_id("pu")
    tx.move(
        purchase_id,
        "purchase",
        user_id,
        {
            books.COINS_ISSUED: -coins,
            books.wallet(user_id): coins,
            books.PAYMENTS: -price,
            books.PROCESSOR_FEES: payment_fee,
            books.STORE_FEES: store_fee,
            books.COIN_SALES: price - payment_fee - store_fee,
        },
    )
    tx.emit(
        "coins_purchased",
        purchase_id,
        purchase_id=purchase_id,
        user_id=user_id,
        coins=coins,
        amount_minor=price,
        currency=policy.currency,
        channel=channel,
        payment_fee_minor=payment_fee,
        store_fee_minor=store_fee,
    )
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (books.wallet(user_id),))
    return 201, {
        "purchase_id": purchase_id,
        "coins": coins,
        "amount_minor": price,
        "currency": policy.currency,
        "payment_fee_minor": payment_fee,
        "store_fee_minor": store_fee,
        "balance_coins": balance,
    }


def send_gift(tx: Tx, policy: Policy, user_id: str, session_id: str, coins: int) -> Result:
    gift_id = new_id("g")

    def failed(status: int, reason: str, code: str, message: str) -> Refused:
        event = ("gift_failed", dict(gift_id=gift_id, session_id=session_id, sender_id=user_id))
        event[1]["reason"] = reason
        return Refused(status, code, message, event)

    if not 0 < coins <= policy.max_gift_coins:
        raise failed(
            422, "rejected", "out_of_range", f"coins must be 1 to {policy.max_gift_coins:,}"
        )
    rows = tx.conn.execute(  # the session's state and its present hosts, in one query
        "SELECT s.status, h.creator_id, h.weight FROM sessions s LEFT JOIN session_hosts h "
        "ON h.session_id = s.id AND h.present = 1 WHERE s.id = ? ORDER BY h.position",
        (session_id,),
    ).fetchall()
    if not rows:
        raise Refused(404, "not_found", f"no session {session_id}")
    if rows[0][0] != "live":
        raise failed(409, "session_closed", "session_closed", f"session {session_id} has ended")
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (books.wallet(user_id),))
    if balance < coins:
        raise failed(
            402,
            "insufficient_balance",
            "insufficient_balance",
            f"the wallet holds {balance} coins, the gift needs {coins}",
        )
    hosts = [(creator, weight) for _, creator, weight in rows]
    value = coins * policy.coin_value_minor
    fee, shares = policy.split_gift(value, dict(hosts))
    tx.move(
        gift_id,
        "gift",
        user_id,
        {
            books.wallet(user_id): -coins,
            books.COINS_ISSUED: coins,
            books.GIFT_FUNDING: -value,
            books.GIFT_FEES: fee,
            **{books.earnings(c): s for c, s in shares.items()},
        },
    )
    splits = [{"creator_id": c, "share_minor": s} for c, s in shares.items()]
    tx.emit(
        "gift_sent",
        gift_id,
        gift_id=gift_id,
        session_id=session_id,
        sender_id=user_id,
        coins=coins,
        value_minor=value,
        currency=policy.currency,
        splits=splits,
        platform_fee_minor=fee,
    )
    tx.push(
        session_id,
        {
            "type": "gift",
            "gift_id": gift_id,
            "sender_id": user_id,
            "coins": coins,
            "value_minor": value,
            "splits": splits,
            "platform_fee_minor": fee,
        },
    )
    return 201, {
        "gift_id": gift_id,
        "coins": coins,
        "value_minor": value,
        "currency": policy.currency,
        "splits": splits,
        "platform_fee_minor": fee,
        "balance_coins": balance - coins,
    }
