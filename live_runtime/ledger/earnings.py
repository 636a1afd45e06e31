"""A creator's money: earnings held before they become payable, and what a creator owes.

Earnings land in the creator's `pending` account and stay there for the policy's hold
(`payout_hold_days`), so a refund or dispute inside the hold takes them back before anyone was
paid. Released earnings repay a debt first, then become available for payout. A clawback takes
from pending, then available; what neither covers (it was paid out) becomes a debt in the
`owed` account (never above zero), and the buyer is refunded all the same.

All three accounts start with `creator:`, so a creator's earnings in the books are the sum of
their postings, whichever account they land in.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from live_runtime.ledger import books
from live_runtime.ledger.books import Result, Tx, new_id
from live_runtime.policy import Policy


def credit(tx: Tx, policy: Policy, creator_id: str, amount: int) -> dict[str, int]:
    """Postings that pay `amount` into the creator's pending earnings, held until release."""
    if amount <= 0:
        return {}
    releases_on = (tx.now.date() + timedelta(days=policy.payout_hold_days)).isoformat()
    tx.conn.execute(
        "INSERT INTO earnings_holds (creator_id, releases_on, amount_minor) VALUES (?, ?, ?) "
        "ON CONFLICT (creator_id, releases_on) DO UPDATE "
        "SET amount_minor = amount_minor + excluded.amount_minor",
        (creator_id, releases_on, amount),
    )
    return {books.pending(creator_id): amount}


def claw_back(tx: Tx, creator_id: str, amount: int) -> dict[str, int]:
    """Postings that take `amount` back: from pending earnings (the latest held first), then
    available ones; the rest becomes a debt."""
    from_pending = 0
    holds = tx.conn.execute(
        "SELECT releases_on, amount_minor FROM earnings_holds WHERE creator_id = ? "
        "ORDER BY releases_on DESC",
        (creator_id,),
    ).fetchall()
    for releases_on, held in holds:
        take = min(held, amount - from_pending)
        if take <= 0:
            break
        _reduce_hold(tx, creator_id, releases_on, held, take)
        from_pending += take
    rest = amount - from_pending
    from_available = min(_balance(tx, books.earnings(creator_id)), rest)
    return {
        books.pending(creator_id): -from_pending,
        books.earnings(creator_id): -from_available,
        books.owed(creator_id): -(rest - from_available),
    }


def release_due(tx: Tx, creator_id: str | None = None) -> int:
    """Moves every hold whose day has come from pending to available, repaying debts first;
    the number of holds released. One movement per creator and day (kind `release`)."""
    today = tx.now.date().isoformat()
    where = "releases_on <= ?" + (" AND creator_id = ?" if creator_id else "")
    params = (today, creator_id) if creator_id else (today,)
    due = tx.conn.execute(
        f"SELECT creator_id, releases_on, amount_minor FROM earnings_holds WHERE {where}", params
    ).fetchall()
    for creator, releases_on, amount in due:
        repaid = min(-_balance(tx, books.owed(creator)), amount)
        tx.move(new_id("rl"), "release", creator, {
            books.pending(creator): -amount,
            books.owed(creator): repaid,
            books.earnings(creator): amount - repaid,
        })  # fmt: skip
        tx.conn.execute(
            "DELETE FROM earnings_holds WHERE creator_id = ? AND releases_on = ?",
            (creator, releases_on),
        )
    return len(due)


def release_all(tx: Tx) -> Result:
    """The periodic release of every creator's holds that are due."""
    return 200, {"released": release_due(tx)}


def summary(tx: Tx, policy: Policy, creator_id: str) -> dict[str, Any]:
    """What `/v1/me` shows a creator: pending, available, owed, paid out, next payout date.

    A read: holds already due are shown as released (repaying a debt first), as the next
    release will book them."""
    today = tx.now.date().isoformat()
    holds = tx.conn.execute(
        "SELECT releases_on, amount_minor FROM earnings_holds WHERE creator_id = ? "
        "ORDER BY releases_on",
        (creator_id,),
    ).fetchall()
    due = sum(amount for day, amount in holds if day <= today)
    holds = [(day, amount) for day, amount in holds if day > today]
    owed_before = -_balance(tx, books.owed(creator_id))
    owed = max(0, owed_before - due)
    available = _balance(tx, books.earnings(creator_id)) + due - (owed_before - owed)
    (paid_out,) = tx.one(
        "SELECT coalesce(sum(amount_minor), 0) FROM payouts WHERE creator_id = ?", (creator_id,)
    )
    return {
        "pending_minor": sum(amount for _, amount in holds),
        "available_minor": available,
        "owed_minor": owed,
        "paid_out_minor": paid_out,
        "payout_threshold_minor": policy.payout_threshold_minor,
        "next_payout_date": _next_payout(tx.now.date(), available - owed, holds, policy),
        "holds": [{"releases_on": day, "amount_minor": amount} for day, amount in holds],
    }


def _next_payout(
    today: date, payable: int, holds: list[tuple[str, int]], policy: Policy
) -> str | None:
    """The first day on which the available earnings, with the holds released by then and a
    debt repaid, reach the payout threshold; None if what is held now never reaches it."""
    if payable >= policy.payout_threshold_minor:
        return today.isoformat()
    for releases_on, amount in holds:
        payable += amount
        if payable >= policy.payout_threshold_minor:
            return releases_on
    return None


def _reduce_hold(tx: Tx, creator_id: str, releases_on: str, held: int, amount: int) -> None:
    if amount == held:
        tx.conn.execute(
            "DELETE FROM earnings_holds WHERE creator_id = ? AND releases_on = ?",
            (creator_id, releases_on),
        )
    else:
        tx.conn.execute(
            "UPDATE earnings_holds SET amount_minor = amount_minor - ? "
            "WHERE creator_id = ? AND releases_on = ?",
            (amount, creator_id, releases_on),
        )


def _balance(tx: Tx, account: str) -> int:
    row = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    return row[0] if row else 0
