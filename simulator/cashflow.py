"""Money around the lives: coin purchases and their refunds or disputes, creator-led orders
and their refunds, weekly payouts.

Prices, fees and payout terms are the runtime's policy (simulator/money.py)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from simulator.lines import TIE_ORDER, labels, uuid4_strings
from simulator.money import CHANNELS, Money
from simulator.world import (
    DAY_US,
    SECOND_US,
    Creators,
    Window,
    creator_id,
    product_id,
    user_id,
)

Batch = tuple[str, pl.DataFrame]  # an event type and its columns: `t` plus the type's fields

_CHANNEL_SHARE = (0.15, 0.45, 0.40)
_OFFLINE_PACK_SHARE = (0.40, 0.25, 0.15, 0.10, 0.06, 0.03, 0.01)  # of 7 packs, smallest first
OFFLINE_PURCHASES_PER_CREATOR_DAY = 0.2

CHECKOUT_FAILURE_RATE = 0.01
CHECKOUT_FAILURE_REASONS = (
    "card_declined",
    "insufficient_funds",
    "authentication_failed",
    "processor_error",
    "out_of_stock",
)
REFUND_RATE = 0.03
REFUND_REASONS = (
    "not_as_described",
    "damaged_in_transit",
    "not_received",
    "changed_mind",
    "wrong_size",
)
_QUANTITY_SHARE = (0.80, 0.15, 0.05)
OFFLINE_ORDERS_PER_DAY = 0.1  # per seller, times the square root of their audience

PAYOUT_HOUR_UTC = 9

# Coin purchases the payment provider reverses later (`coins_refunded`). Refunds of app and
# digital-goods purchases run at a few tenths of a percent and come within days; card disputes
# (chargebacks) at about a tenth of a percent, weeks after the charge. A reversal that would
# come after the window does not happen in it.
COIN_REFUND_RATE = 0.003  # of coin purchases, refunded by the provider...
COIN_REFUND_DAYS = (1, 5)  # ...1 to 5 days after the purchase
COIN_DISPUTE_RATE = 0.001  # of coin purchases, disputed by the buyer's bank...
COIN_DISPUTE_DAYS = (3, 28)  # ...3 days to 4 weeks after the purchase
REVERSAL_REASONS = ("refund", "dispute")  # in the order of the rates above


class Ledger:
    """Each creator's earnings as the runtime keeps them (live_runtime/ledger/earnings.py),
    a day at a time, so a Monday payout pays exactly what the runtime would.

    Earnings are held: what a creator earns on day d becomes available at the start of day
    d + payout_hold_days (the day after, with no hold), repaying a debt first. A refund takes
    the order's net back at the end of its day: from the held earnings (the latest first),
    then the available ones; what neither covers becomes a debt. A payout pays the whole
    available balance once it reaches the payout threshold.
    """

    def __init__(self, creators: int, window: Window, money: Money) -> None:
        self.window = window
        self.lag = max(money.policy.payout_hold_days, 1)  # days from earning to payable
        self.threshold = money.policy.payout_threshold_minor
        self.held = np.zeros((creators, window.days), dtype=np.int64)  # by the day earned
        self.available = np.zeros(creators, dtype=np.int64)
        self.debt = np.zeros(creators, dtype=np.int64)
        self.unpaid_from = np.zeros(creators, dtype=np.int64)  # first earnings day not paid out
        self._clawbacks: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(self, creator: np.ndarray, t_us: np.ndarray, amount_minor: np.ndarray) -> None:
        """Holds earnings (>= 0) from the day they are earned."""
        np.add.at(self.held, (creator, self.window.day_of(t_us)), amount_minor)

    def claw_back(self, creator: np.ndarray, t_us: np.ndarray, amount_minor: np.ndarray) -> None:
        """Takes amounts back at the end of the day they happen on (see `close_day`)."""
        day = self.window.day_of(t_us)
        for d in np.unique(day).tolist():
            here = day == d
            self._clawbacks.setdefault(d, []).append((creator[here], amount_minor[here]))

    def close_day(self, day: int) -> None:
        """The day's clawbacks, then the release of the earnings payable from the next day."""
        held, available, debt = self.held, self.available, self.debt
        for creators, amounts in self._clawbacks.pop(day, []):
            for creator, amount in zip(creators.tolist(), amounts.tolist(), strict=True):
                for d in range(day, max(day - self.lag, -1), -1):  # still held, latest first
                    take = min(amount, int(held[creator, d]))
                    held[creator, d] -= take
                    amount -= take
                take = min(amount, int(available[creator]))
                available[creator] -= take
                debt[creator] += amount - take
        released = day + 1 - self.lag
        if 0 <= released < self.window.days:
            amount = held[:, released]
            repaid = np.minimum(debt, amount)
            debt -= repaid
            available += amount - repaid
            held[:, released] = 0

    def settle(self, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(creators, amounts, first unpaid days, last day) of payouts on `day`.

        Creators whose available earnings reach the threshold are paid all of them: the
        earnings of their unpaid days up to the last one released, `day - lag`.
        """
        last = day - self.lag
        paid = np.flatnonzero((self.available >= self.threshold) & (self.available > 0))
        amount = self.available[paid].copy()
        self.available[paid] = 0
        first_day = self.unpaid_from[paid].copy()
        self.unpaid_from[paid] = last + 1
        return paid, amount, first_day, last


def payouts(rng: np.random.Generator, ledger: Ledger, day: int, currency: str) -> list[Batch]:
    """Monday-morning payouts of the available earnings, at least the hold old."""
    window = ledger.window
    if (window.start + timedelta(days=day)).weekday() != 0:
        return []
    creator, amount, first_day, last_day = ledger.settle(day)
    hour_us = 3600 * SECOND_US
    t = window.day_start_us(day) + PAYOUT_HOUR_UTC * hour_us
    frame = pl.DataFrame(
        {
            "t": t + rng.integers(0, 2 * hour_us, len(creator)),
            "payout_id": uuid4_strings(rng, len(creator)),
            "creator_id": creator,
            "amount_minor": amount,
            "period_start": [window.start + timedelta(days=int(d)) for d in first_day],
            "period_end": window.start + timedelta(days=last_day),
        },
        schema_overrides={"period_start": pl.Date, "period_end": pl.Date},
    ).with_columns(creator_id("creator_id"), currency=pl.lit(currency))
    return [("payout_issued", frame)]


def coin_purchases(
    rng: np.random.Generator,
    money: Money,
    user: np.ndarray,
    t_us: np.ndarray,
    coins_wanted: np.ndarray,
) -> Batch:
    """Buying the smallest pack that covers `coins_wanted` (or the largest pack).

    Each (pack, channel) has the policy's fees: on the web the card processor's, in the apps
    the store's.
    """
    packs = money.packs
    pack = packs.covering(coins_wanted)
    channel = rng.choice(len(CHANNELS), size=len(user), p=_CHANNEL_SHARE)
    frame = pl.DataFrame(
        {
            "t": t_us,
            "purchase_id": uuid4_strings(rng, len(user)),
            "user_id": user,
            "coins": packs.coins[pack],
            "amount_minor": packs.price[pack],
            "channel": labels(CHANNELS, channel),
            "payment_fee_minor": packs.payment_fee[pack, channel],
            "store_fee_minor": packs.store_fee[pack, channel],
        }
    ).with_columns(user_id("user_id"), currency=pl.lit(money.currency))
    return "coins_purchased", frame


_MOVES_SCHEMA = {"t": pl.Int64, "tie": pl.Int8, "user_id": pl.String, "coins": pl.Int64}
_REVERSAL_SCHEMA = {
    "t": pl.Int64,
    "purchase_id": pl.String,
    "user_id": pl.String,
    "refund_minor": pl.Int64,
    "currency": pl.String,
    "channel": pl.String,
    "store_fee_returned_minor": pl.Int64,
    "coins": pl.Int64,  # the purchase's, for the coins taken back
    "reason": pl.String,
}


class CoinReversals:
    """Coin purchases refunded by the payment provider or disputed by the buyer's bank, as the
    runtime reverses them (live_runtime/ledger/payments.py, `_reverse_coins`): the buyer gets
    the purchase's amount back, the app store returns its fee (none on the web), and the coins
    still in the buyer's wallet are taken back, at most the purchase's coins; coins already
    gifted stay gifted, so no creator's earnings change.

    Which purchases are reversed, when and why is drawn from a generator of its own, so the
    rest of the simulation is the same with or without reversals.

    The simulator keeps no wallet for every viewer: gifts are drawn without a balance, as a
    viewer's coins may have been bought before the window. So it keeps only the wallets of
    the buyers of reversed purchases, from their first reversed purchase on, counting only the
    coins it saw bought: empty just before that purchase, each coin purchase adds its coins,
    each gift sent spends its coins and each reversal takes back min(the purchase's coins, the
    wallet). A gift the wallet cannot cover spent coins bought before (the wallet empties; it
    never goes below zero), so the coins taken back are those of the purchase and the later
    ones not yet spent by the later gifts.

    Events apply to the wallets in time order, those of one instant in TIE_ORDER (gifts before
    a reversal). A day's events include some of the next day (sessions running past midnight),
    but none of an earlier day, so each day's reversals are settled once its events are known.
    """

    def __init__(self, rng: np.random.Generator, window: Window) -> None:
        self.rng = rng
        self.window = window
        self._pending = pl.DataFrame(schema=_REVERSAL_SCHEMA)  # drawn, not happened yet
        self._moves = pl.DataFrame(schema=_MOVES_SCHEMA)  # wallet moves not applied yet
        self._kept_from: dict[str, int] = {}  # buyer -> time their wallet is kept from
        self._wallet: dict[str, int] = {}  # coins in each kept wallet

    def of_day(self, batches: list[Batch], day: int) -> Batch:
        """Draws the reversals of `batches`' coin purchases (the events of `day`), and returns
        the reversals that happen on `day`, with the coins each takes back."""
        purchases = [f for kind, f in batches if kind == "coins_purchased" and f.height]
        gifts = [f for kind, f in batches if kind == "gift_sent" and f.height]
        if purchases:
            self._draw(pl.concat(purchases))
        purchase_tie, gift_tie = TIE_ORDER.index("coins_purchased"), TIE_ORDER.index("gift_sent")
        bought = [f.select("t", _tie(purchase_tie), "user_id", "coins") for f in purchases]
        spent = [
            f.select("t", _tie(gift_tie), user_id="sender_id", coins=-pl.col("coins"))
            for f in gifts
        ]
        moves = pl.concat([self._moves, *bought, *spent])
        horizon = self.window.day_start_us(day + 1)
        self._moves = moves.filter(pl.col("t") >= horizon)
        due = self._pending.filter(pl.col("t") < horizon)
        self._pending = self._pending.filter(pl.col("t") >= horizon)
        taken = self._settle(moves.filter(pl.col("t") < horizon), due)
        frame = due.with_columns(coins_taken_back=pl.Series(taken, dtype=pl.Int64)).drop("coins")
        return "coins_refunded", frame

    def _draw(self, purchases: pl.DataFrame) -> None:
        """Picks the purchases reversed, and when; keeps the wallets of their buyers."""
        rng = self.rng
        draw = rng.random(purchases.height)
        reason = np.searchsorted(np.cumsum([COIN_REFUND_RATE, COIN_DISPUTE_RATE]), draw, "right")
        reversed_ = reason < len(REVERSAL_REASONS)
        reason = reason[reversed_]
        days = np.array([COIN_REFUND_DAYS, COIN_DISPUTE_DAYS], dtype=np.int64)[reason]
        delay = rng.integers(days[:, 0] * DAY_US, days[:, 1] * DAY_US + 1)
        chosen = purchases.filter(reversed_)
        t = chosen["t"].to_numpy() + delay
        inside = t < self.window.end_us  # the others would happen after the window
        chosen = chosen.filter(inside)
        reversals = chosen.select(
            pl.Series("t", t[inside], dtype=pl.Int64),
            "purchase_id",
            "user_id",
            refund_minor="amount_minor",
            currency="currency",
            channel="channel",
            store_fee_returned_minor="store_fee_minor",
            coins="coins",
            reason=labels(REVERSAL_REASONS, reason[inside]),
        )
        self._pending = pl.concat([self._pending, reversals.cast(_REVERSAL_SCHEMA)])
        for user, bought in chosen.select("user_id", "t").iter_rows():
            self._kept_from[user] = min(bought, self._kept_from.get(user, bought))
            self._wallet.setdefault(user, 0)

    def _settle(self, moves: pl.DataFrame, due: pl.DataFrame) -> list[int]:
        """Applies the moves of the kept wallets and the due reversals in time order; the
        coins each reversal takes back, in the order of `due`."""
        kept = pl.DataFrame(
            {"user_id": list(self._kept_from), "kept_from": list(self._kept_from.values())},
            schema={"user_id": pl.String, "kept_from": pl.Int64},
        )
        moves = (
            moves.join(kept, on="user_id", maintain_order="left")
            .filter(pl.col("t") >= pl.col("kept_from"))
            .select("t", "tie", "user_id", "coins", reversal=pl.lit(-1, dtype=pl.Int64))
        )
        reversals = due.select(
            "t",
            _tie(TIE_ORDER.index("coins_refunded")),
            "user_id",
            "coins",
            reversal=pl.int_range(pl.len(), dtype=pl.Int64),
        )
        events = pl.concat([moves, reversals]).sort(["t", "tie"], maintain_order=True)
        wallet, taken = self._wallet, [0] * due.height
        for user, coins, reversal in events.select("user_id", "coins", "reversal").iter_rows():
            if reversal < 0:
                wallet[user] = max(wallet[user] + coins, 0)
            else:
                taken[reversal] = min(coins, wallet[user])
                wallet[user] -= taken[reversal]
        return taken


def _tie(position: int) -> pl.Expr:
    return pl.lit(position, dtype=pl.Int8).alias("tie")


def _offline_pack_share(packs: int) -> np.ndarray:
    """How often each pack is bought outside a live: the table for 7 packs, else halving."""
    if packs == len(_OFFLINE_PACK_SHARE):
        return np.array(_OFFLINE_PACK_SHARE)
    share = 0.5 ** np.arange(packs)
    return share / share.sum()


def offline_coin_purchases(
    rng: np.random.Generator, money: Money, creators: Creators, window: Window, day: int
) -> Batch:
    """Coin purchases made outside any live, spread over the day."""
    n = rng.poisson(OFFLINE_PURCHASES_PER_CREATOR_DAY * creators.count)
    packs = len(money.packs)
    pack = rng.choice(packs, size=n, p=_offline_pack_share(packs))
    t = window.day_start_us(day) + rng.integers(0, DAY_US, n)
    users = rng.integers(0, creators.users, n)
    return coin_purchases(rng, money, users, t, money.packs.coins[pack])


def orders(
    rng: np.random.Generator,
    money: Money,
    creators: Creators,
    ledger: Ledger,
    t_us: np.ndarray,
    seller: np.ndarray,
    session_id: pl.Series,
) -> list[Batch]:
    """Checkout attempts for `seller`'s products: paid, failed, and some paid ones refunded.

    `session_id` is null for purchases outside a live. A failed checkout names its session
    in the contract, so only checkouts in a live can fail.
    """
    n = len(t_us)
    in_live = session_id.is_not_null().to_numpy()
    failed = in_live & (rng.random(n) < CHECKOUT_FAILURE_RATE)
    product = creators.product_first[seller] + (
        rng.random(n) * creators.product_count[seller]
    ).astype(np.int64)
    quantity = rng.choice(np.arange(1, 4), size=n, p=_QUANTITY_SHARE)
    gross = creators.product_price[product] * quantity
    payment_fee, cut = money.order_fees(gross)
    net = gross - payment_fee - cut
    order_id = uuid4_strings(rng, n)
    reason = rng.choice(len(CHECKOUT_FAILURE_REASONS), size=n)
    refunded = ~failed & (rng.random(n) < REFUND_RATE)
    refund_t = t_us + rng.integers(DAY_US, 10 * DAY_US + 1, n)
    refunded &= refund_t < ledger.window.end_us
    refund_reason = rng.choice(len(REFUND_REASONS), size=n)

    attempts = pl.DataFrame(
        {
            "t": t_us,
            "order_id": order_id,
            "session_id": session_id,
            "creator_id": seller,
            "product_id": product,
            "quantity": quantity,
            "gross_minor": gross,
            "payment_fee_minor": payment_fee,
            "commission_minor": cut,
            "creator_net_minor": net,
        }
    ).with_columns(
        creator_id("creator_id"), product_id("product_id"), currency=pl.lit(money.currency)
    )
    paid = attempts.filter(~failed)
    failures = attempts.filter(failed).select(
        "t",
        "order_id",
        "session_id",
        "creator_id",
        reason=labels(CHECKOUT_FAILURE_REASONS, reason[failed]),
    )
    refunds = pl.DataFrame(
        {
            "t": refund_t[refunded],
            "order_id": order_id.filter(refunded),
            "refund_minor": gross[refunded],
            "reason": labels(REFUND_REASONS, refund_reason[refunded]),
        }
    )
    ledger.add(seller[~failed], t_us[~failed], net[~failed])
    ledger.claw_back(seller[refunded], refund_t[refunded], net[refunded])
    return [("order_paid", paid), ("checkout_failed", failures), ("order_refunded", refunds)]


def offline_orders(
    rng: np.random.Generator, money: Money, creators: Creators, ledger: Ledger, day: int
) -> list[Batch]:
    """Orders from sellers' shops outside their lives, spread over the day."""
    seller = np.flatnonzero(creators.sells)
    count = rng.poisson(OFFLINE_ORDERS_PER_DAY * np.sqrt(creators.audience[seller]))
    seller = np.repeat(seller, count)
    t = ledger.window.day_start_us(day) + rng.integers(0, DAY_US, len(seller))
    no_session = pl.Series("session_id", [None] * len(seller), dtype=pl.String)
    return orders(rng, money, creators, ledger, t, seller, no_session)
