"""Gifts: a gift's value split exactly between the hosts present and the platform.

Coins reach a wallet only through a confirmed payment (payments.py)."""

from __future__ import annotations

from fractions import Fraction

from live_runtime.ledger import books, earnings
from live_runtime.ledger.books import Refused, Result, Tx, new_id
from live_runtime.policy import Policy


def send_gift(tx: Tx, policy: Policy, user_id: str, session_id: str, coins: int) -> Result:
    gift_id = new_id("g")

    def failed(status: int, reason: str, code: str, message: str) -> Refused:
        event = ("gift_failed", dict(gift_id=gift_id, session_id=session_id, sender_id=user_id))
        event[1]["reason"] = reason
        return Refused(status, code, message, event)

    if not 0 < coins <= policy.max_gift_coins:  # bad input: refused, not a failed gift
        raise Refused(422, "out_of_range", f"coins must be 1 to {policy.max_gift_coins:,}")
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
    hosts = {creator: weight for _, creator, weight in rows}
    value = coins * policy.coin_value_minor
    split = policy.split_gift(value, hosts, _carries(tx, hosts))
    fee, shares = split.platform_fee, split.shares
    tx.conn.executemany(
        "INSERT INTO earnings_carry (creator_id, owed) VALUES (?, ?) "
        "ON CONFLICT (creator_id) DO UPDATE SET owed = excluded.owed",
        [(c, str(owed)) for c, owed in split.carries.items()],
    )
    tx.move(
        gift_id,
        "gift",
        user_id,
        {
            books.wallet(user_id): -coins,
            books.COINS_ISSUED: coins,
            books.GIFT_FUNDING: -value,
            books.GIFT_FEES: fee,
            **_credits(tx, policy, shares),
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


def _carries(tx: Tx, hosts: dict[str, int]) -> dict[str, Fraction]:
    """What each host is owed beyond their balance: fractions of a minor unit from past gifts."""
    marks = ", ".join("?" * len(hosts))
    rows = tx.conn.execute(
        f"SELECT creator_id, owed FROM earnings_carry WHERE creator_id IN ({marks})", list(hosts)
    )
    return {creator: Fraction(owed) for creator, owed in rows}


def _credits(tx: Tx, policy: Policy, shares: dict[str, int]) -> dict[str, int]:
    postings: dict[str, int] = {}
    for creator, share in shares.items():
        postings.update(earnings.credit(tx, policy, creator, share))
    return postings
