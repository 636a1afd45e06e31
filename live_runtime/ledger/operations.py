"""The runtime's state changes, each run inside one database transaction by the writer.

Every function takes the transaction context, the acting principal and the request's
validated fields, and returns `(status, body)`; refusals raise `Refused`. Ownership is
checked here, next to the data, so no route can forget it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from live_runtime.events import TIME_FORMAT
from live_runtime.ledger import books
from live_runtime.ledger.books import Refused, Tx, new_id
from live_runtime.policy import Policy

Result = tuple[int, dict[str, Any]]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Accounts and tokens -------------------------------------------------------------------------


def create_principal(tx: Tx, policy: Policy, kind: str, display_name: str) -> Result:
    principal_id = new_id("u" if kind == "user" else "cr")
    tx.conn.execute(
        "INSERT INTO principals (id, kind, display_name, created_at) VALUES (?, ?, ?, ?)",
        (principal_id, kind, display_name, tx.occurred_at),
    )
    if kind == "user":
        books.open_accounts(tx.conn, [books.wallet(principal_id)], books.COIN, negative=False)
    else:
        books.open_accounts(tx.conn, [books.earnings(principal_id)], policy.currency, False)
    token, expires_at = issue_token(tx, principal_id, policy.token_ttl_days * 86_400)
    return 201, {"id": principal_id, "kind": kind, "token": token, "expires_at": expires_at}


def issue_token(tx: Tx, principal_id: str, ttl_seconds: float) -> tuple[str, float]:
    token = f"ce_{secrets.token_urlsafe(32)}"
    expires_at = round(tx.epoch + ttl_seconds, 3)
    tx.conn.execute(
        "INSERT INTO tokens (token_hash, principal_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
        (hash_token(token), principal_id, expires_at, tx.occurred_at),
    )
    return token, expires_at


def new_token(tx: Tx, principal_id: str, ttl_seconds: float) -> Result:
    token, expires_at = issue_token(tx, principal_id, ttl_seconds)
    return 201, {"token": token, "expires_at": expires_at}


def me(tx: Tx, policy: Policy, principal_id: str, kind: str) -> Result:
    account = books.wallet(principal_id) if kind == "user" else books.earnings(principal_id)
    (balance,) = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    key = "coins" if kind == "user" else "balance_minor"
    body = {"id": principal_id, "kind": kind, key: balance}
    if kind == "creator":
        body["currency"] = policy.currency
    return 200, body


# Wallets and gifts -----------------------------------------------------------------------------


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


# Live sessions ---------------------------------------------------------------------------------


def _owned_session(tx: Tx, session_id: str, creator_id: str, live: bool = True) -> tuple:
    row = tx.one("SELECT owner_id, status FROM sessions WHERE id = ?", (session_id,))
    if row is None:
        raise Refused(404, "not_found", f"no session {session_id}")
    if row[0] != creator_id:
        raise Refused(403, "forbidden", f"session {session_id} belongs to another creator")
    if live and row[1] != "live":
        raise Refused(409, "session_closed", f"session {session_id} has ended")
    return row


def hosts_present(tx: Tx, session_id: str) -> list[str]:
    rows = tx.conn.execute(
        "SELECT creator_id FROM session_hosts WHERE session_id = ? AND present = 1 "
        "ORDER BY position",
        (session_id,),
    )
    return [r[0] for r in rows]


def start_session(
    tx: Tx, policy: Policy, creator_id: str, region: str, quality: str, record: bool
) -> Result:
    if quality not in policy.qualities:
        raise Refused(422, "invalid", f"quality must be one of {sorted(policy.qualities)}")
    session_id = new_id("s")
    tx.conn.execute(
        "INSERT INTO sessions (id, owner_id, region, quality, record, status, started_at, "
        "metered_from, advanced_at) VALUES (?, ?, ?, ?, ?, 'live', ?, ?, ?)",
        (session_id, creator_id, region, quality, int(record), tx.occurred_at, tx.epoch, tx.epoch),
    )
    tx.conn.execute(
        "INSERT INTO session_hosts (session_id, creator_id, present, weight, position) "
        "VALUES (?, ?, 1, 1, 0)",
        (session_id, creator_id),
    )
    tx.emit(
        "session_started",
        session_id=session_id,
        creator_ids=[creator_id],
        region=region,
        quality=quality,
    )
    return 201, session_view(tx, session_id)


def session_view(tx: Tx, session_id: str) -> dict[str, Any]:
    row = tx.one(
        "SELECT owner_id, region, quality, record, status, started_at, ended_at, "
        "pinned_product_id FROM sessions WHERE id = ?",
        (session_id,),
    )
    if row is None:
        raise Refused(404, "not_found", f"no session {session_id}")
    hosts = tx.conn.execute(
        "SELECT creator_id, present, weight FROM session_hosts WHERE session_id = ? "
        "ORDER BY position",
        (session_id,),
    ).fetchall()
    owner, region, quality, record, status, started_at, ended_at, pinned = row
    return {
        "session_id": session_id,
        "owner_id": owner,
        "region": region,
        "quality": quality,
        "record": bool(record),
        "status": status,
        "started_at": started_at,
        "ended_at": ended_at,
        "pinned_product_id": pinned,
        "hosts": [{"creator_id": c, "present": bool(p), "weight": w} for c, p, w in hosts],
    }


def get_session(tx: Tx, session_id: str) -> Result:
    return 200, session_view(tx, session_id)


def invite_cohost(tx: Tx, owner_id: str, session_id: str, creator_id: str) -> Result:
    _owned_session(tx, session_id, owner_id)
    kind = tx.one("SELECT kind FROM principals WHERE id = ?", (creator_id,))
    if kind is None or kind[0] != "creator":
        raise Refused(404, "not_found", f"no creator {creator_id}")
    (position,) = tx.one("SELECT count(*) FROM session_hosts WHERE session_id = ?", (session_id,))
    tx.conn.execute(
        "INSERT INTO session_hosts (session_id, creator_id, present, weight, position) "
        "VALUES (?, ?, 0, 1, ?) ON CONFLICT (session_id, creator_id) DO NOTHING",
        (session_id, creator_id, position),
    )
    return 201, session_view(tx, session_id)


def _host_row(tx: Tx, session_id: str, creator_id: str) -> tuple:
    session = tx.one("SELECT status FROM sessions WHERE id = ?", (session_id,))
    if session is None:
        raise Refused(404, "not_found", f"no session {session_id}")
    host = tx.one(
        "SELECT present, position FROM session_hosts WHERE session_id = ? AND creator_id = ?",
        (session_id, creator_id),
    )
    if host is None:
        raise Refused(403, "forbidden", f"{creator_id} is not invited to session {session_id}")
    if session[0] != "live":
        raise Refused(409, "session_closed", f"session {session_id} has ended")
    return host


def advance_hosts(tx: Tx, policy: Policy, session_id: str) -> None:
    """Counts host and relay seconds up to now, before the set of hosts changes."""
    (advanced_at,) = tx.one("SELECT advanced_at FROM sessions WHERE id = ?", (session_id,))
    hosts = len(hosts_present(tx, session_id))
    elapsed = max(0.0, tx.epoch - advanced_at)
    relayed = hosts * elapsed if hosts >= policy.relay_when_hosts_at_least else 0.0
    tx.conn.execute(
        "UPDATE sessions SET advanced_at = ?, publisher_pending = publisher_pending + ?, "
        "relay_pending = relay_pending + ? WHERE id = ?",
        (tx.epoch, hosts * elapsed, relayed, session_id),
    )


def _set_presence(tx: Tx, policy: Policy, session_id: str, creator_id: str, present: int):
    advance_hosts(tx, policy, session_id)
    tx.conn.execute(
        "UPDATE session_hosts SET present = ? WHERE session_id = ? AND creator_id = ?",
        (present, session_id, creator_id),
    )
    tx.emit("host_joined" if present else "host_left", session_id=session_id, creator_id=creator_id)
    tx.push(session_id, {"type": "hosts", "creator_ids": hosts_present(tx, session_id)})


def join_session(tx: Tx, policy: Policy, creator_id: str, session_id: str) -> Result:
    present, _ = _host_row(tx, session_id, creator_id)
    if present:
        raise Refused(409, "already_present", f"{creator_id} is already live in {session_id}")
    _set_presence(tx, policy, session_id, creator_id, 1)
    return 200, session_view(tx, session_id)


def leave_session(tx: Tx, policy: Policy, creator_id: str, session_id: str) -> Result:
    present, position = _host_row(tx, session_id, creator_id)
    if position == 0:
        raise Refused(409, "owner_cannot_leave", "the owner ends the session instead of leaving")
    if not present:
        raise Refused(409, "not_present", f"{creator_id} is not live in {session_id}")
    _set_presence(tx, policy, session_id, creator_id, 0)
    return 200, session_view(tx, session_id)


def set_split(tx: Tx, owner_id: str, session_id: str, weights: dict[str, int]) -> Result:
    _owned_session(tx, session_id, owner_id)
    hosts = {
        r[0]
        for r in tx.conn.execute(
            "SELECT creator_id FROM session_hosts WHERE session_id = ?", (session_id,)
        )
    }
    if set(weights) != hosts:
        raise Refused(422, "invalid", f"weights must name exactly the hosts {sorted(hosts)}")
    tx.conn.executemany(
        "UPDATE session_hosts SET weight = ? WHERE session_id = ? AND creator_id = ?",
        [(w, session_id, c) for c, w in weights.items()],
    )
    return 200, session_view(tx, session_id)


def meter_session(tx: Tx, policy: Policy, session_id: str, viewer_seconds: float) -> Result:
    """Emits the session's `media_usage` since the last report and starts a new interval."""
    if tx.one("SELECT status FROM sessions WHERE id = ?", (session_id,)) != ("live",):
        return 200, {"metered": False}
    advance_hosts(tx, policy, session_id)
    metered_from, publisher, relay, quality, record = tx.one(
        "SELECT metered_from, publisher_pending, relay_pending, quality, record "
        "FROM sessions WHERE id = ?",
        (session_id,),
    )
    seconds = max(0.0, tx.epoch - metered_from)
    viewer_seconds = round(viewer_seconds, 3)  # bytes follow the seconds as reported
    ladder = policy.qualities[quality]
    byte_rate = ladder.bitrate_bps // 8
    tx.emit(
        "media_usage",
        session_id=session_id,
        interval_start=_time(metered_from),
        interval_end=tx.occurred_at,
        publisher_seconds=round(publisher, 3),
        viewer_seconds=viewer_seconds,
        transcode_seconds=round(seconds * ladder.renditions, 3),
        relay_seconds=round(relay, 3),
        egress_bytes=round(viewer_seconds * byte_rate),
        recording_bytes=round(seconds * byte_rate) if record else 0,
    )
    tx.conn.execute(
        "UPDATE sessions SET metered_from = ?, publisher_pending = 0, relay_pending = 0 "
        "WHERE id = ?",
        (tx.epoch, session_id),
    )
    return 200, {"metered": True}


def end_session(
    tx: Tx,
    policy: Policy,
    creator_id: str | None,
    session_id: str,
    viewer_seconds: float,
    reason: str = "host_ended",
    meter: bool = True,
) -> Result:
    """Ends a live: a last usage report, then `session_ended`. No creator: the runtime ends it.

    After a crash the runtime ends what was left live with `meter=False`: when the usage
    stopped is unknown, so the seconds since the last report are not billed.
    """
    if creator_id is not None:
        _owned_session(tx, session_id, creator_id)
    if meter:
        meter_session(tx, policy, session_id, viewer_seconds)
    tx.conn.execute(
        "UPDATE sessions SET status = 'ended', ended_at = ? WHERE id = ?",
        (tx.occurred_at, session_id),
    )
    tx.conn.execute("UPDATE session_hosts SET present = 0 WHERE session_id = ?", (session_id,))
    tx.emit("session_ended", session_id=session_id, reason=reason)
    tx.push(session_id, {"type": "ended", "reason": reason})
    return 200, session_view(tx, session_id)


def viewer_event(tx: Tx, event_type: str, session_id: str, user_id: str) -> Result:
    tx.emit(event_type, session_id=session_id, user_id=user_id)
    return 200, {}


def live_sessions(tx: Tx) -> list[str]:
    return [r[0] for r in tx.conn.execute("SELECT id FROM sessions WHERE status = 'live'")]


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(TIME_FORMAT)


# Commerce ----------------------------------------------------------------------------------


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
    _owned_session(tx, session_id, creator_id)
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
