"""What a creator is paid and what a creator owes: credits repay a debt first, clawbacks that
exceed the balance become a debt.

A refund or dispute after a payout must still return the buyer's money; what the creator's
balance cannot cover is booked to the creator's `owed` account (never above zero) and recovered
from the next earnings. Both accounts start with `creator:`, so a creator's earnings in the
books are the sum of their postings, whichever account they land in.
"""

from __future__ import annotations

from live_runtime.ledger import books
from live_runtime.ledger.books import Tx


def credit(tx: Tx, creator_id: str, amount: int) -> dict[str, int]:
    """Postings that pay `amount` to the creator, repaying what they owe first."""
    debt = -_balance(tx, books.owed(creator_id))
    repaid = min(debt, amount)
    return {books.earnings(creator_id): amount - repaid, books.owed(creator_id): repaid}


def claw_back(tx: Tx, creator_id: str, amount: int) -> dict[str, int]:
    """Postings that take `amount` back; what the balance cannot cover becomes a debt."""
    books.open_accounts(tx.conn, [books.owed(creator_id)], tx_currency(tx), negative=True)
    taken = min(_balance(tx, books.earnings(creator_id)), amount)
    return {books.earnings(creator_id): -taken, books.owed(creator_id): -(amount - taken)}


def owed_by(tx: Tx, creator_id: str) -> int:
    """What the creator owes, in minor units (0 or more)."""
    return -_balance(tx, books.owed(creator_id))


def _balance(tx: Tx, account: str) -> int:
    row = tx.one("SELECT balance FROM accounts WHERE id = ?", (account,))
    return row[0] if row else 0


def tx_currency(tx: Tx) -> str:
    """The ledger's currency: the unit of the platform's payment book."""
    return tx.one("SELECT unit FROM accounts WHERE id = ?", (books.PAYMENTS,))[0]
