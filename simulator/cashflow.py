"""Money around the lives: coin purchases, creator-led orders and refunds, weekly payouts."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from simulator.lines import labels, uuid4_strings
from simulator.money import COIN_PACKS, CURRENCY, commission, processor_fee, store_fee
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

CHANNELS = ("web", "ios", "android")
_CHANNEL_SHARE = (0.15, 0.45, 0.40)
_OFFLINE_PACK_SHARE = (0.40, 0.25, 0.15, 0.10, 0.06, 0.03, 0.01)
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

PAYOUT_THRESHOLD_MINOR = 5_000
PAYOUT_HOUR_UTC = 9


class Ledger:
    """What each creator earned on each day, so a Monday payout pays exactly what is unpaid."""

    def __init__(self, creators: int, window: Window) -> None:
        self.window = window
        self.earned = np.zeros((creators, window.days), dtype=np.int64)
        self.unpaid_from = np.zeros(creators, dtype=np.int64)  # first day not yet paid out

    def add(self, creator: np.ndarray, t_us: np.ndarray, amount_minor: np.ndarray) -> None:
        """Books earnings (negative for reversals) on the day they happen."""
        np.add.at(self.earned, (creator, self.window.day_of(t_us)), amount_minor)

    def settle(self, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(creators, amounts, first unpaid days) owed over the threshold for days before `day`.

        Those creators are then paid up to `day`; the others keep accruing.
        """
        running = np.zeros((self.earned.shape[0], day + 1), dtype=np.int64)
        np.cumsum(self.earned[:, :day], axis=1, out=running[:, 1:])
        creators = np.arange(len(self.unpaid_from))
        owed = running[:, day] - running[creators, self.unpaid_from]
        paid = np.flatnonzero(owed > PAYOUT_THRESHOLD_MINOR)
        first_day = self.unpaid_from[paid].copy()
        self.unpaid_from[paid] = day
        return paid, owed[paid], first_day


def payouts(rng: np.random.Generator, ledger: Ledger, day: int) -> list[Batch]:
    """Monday-morning payouts of the previous days' unpaid earnings."""
    window = ledger.window
    if (window.start + timedelta(days=day)).weekday() != 0:
        return []
    creator, amount, first_day = ledger.settle(day)
    hour_us = 3600 * SECOND_US
    t = window.day_start_us(day) + PAYOUT_HOUR_UTC * hour_us
    frame = pl.DataFrame(
        {
            "t": t + rng.integers(0, 2 * hour_us, len(creator)),
            "payout_id": uuid4_strings(rng, len(creator)),
            "creator_id": creator,
            "amount_minor": amount,
            "period_start": [window.start + timedelta(days=int(d)) for d in first_day],
            "period_end": window.start + timedelta(days=day - 1),
        },
        schema_overrides={"period_start": pl.Date, "period_end": pl.Date},
    ).with_columns(creator_id("creator_id"), currency=pl.lit(CURRENCY))
    return [("payout_issued", frame)]


def coin_purchases(
    rng: np.random.Generator, user: np.ndarray, t_us: np.ndarray, coins_wanted: np.ndarray
) -> Batch:
    """Buying the smallest pack that covers `coins_wanted` (or the largest pack).

    Web purchases pay the card processor; in-app purchases pay the app store instead.
    """
    pack = np.minimum(np.searchsorted(COIN_PACKS[:, 0], coins_wanted), len(COIN_PACKS) - 1)
    coins, amount = COIN_PACKS[pack, 0], COIN_PACKS[pack, 1]
    channel = rng.choice(len(CHANNELS), size=len(user), p=_CHANNEL_SHARE)
    web = channel == CHANNELS.index("web")
    frame = pl.DataFrame(
        {
            "t": t_us,
            "purchase_id": uuid4_strings(rng, len(user)),
            "user_id": user,
            "coins": coins,
            "amount_minor": amount,
            "channel": labels(CHANNELS, channel),
            "payment_fee_minor": np.where(web, processor_fee(amount), 0),
            "store_fee_minor": np.where(web, 0, store_fee(amount)),
        }
    ).with_columns(user_id("user_id"), currency=pl.lit(CURRENCY))
    return "coins_purchased", frame


def offline_coin_purchases(
    rng: np.random.Generator, creators: Creators, window: Window, day: int
) -> Batch:
    """Coin purchases made outside any live, spread over the day."""
    n = rng.poisson(OFFLINE_PURCHASES_PER_CREATOR_DAY * creators.count)
    pack = rng.choice(len(COIN_PACKS), size=n, p=_OFFLINE_PACK_SHARE)
    t = window.day_start_us(day) + rng.integers(0, DAY_US, n)
    return coin_purchases(rng, rng.integers(0, creators.users, n), t, COIN_PACKS[pack, 0])


def orders(
    rng: np.random.Generator,
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
    payment_fee, cut = processor_fee(gross), commission(gross)
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
    ).with_columns(creator_id("creator_id"), product_id("product_id"), currency=pl.lit(CURRENCY))
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
    ledger.add(seller[refunded], refund_t[refunded], -net[refunded])
    return [("order_paid", paid), ("checkout_failed", failures), ("order_refunded", refunds)]


def offline_orders(
    rng: np.random.Generator, creators: Creators, ledger: Ledger, day: int
) -> list[Batch]:
    """Orders from sellers' shops outside their lives, spread over the day."""
    seller = np.flatnonzero(creators.sells)
    count = rng.poisson(OFFLINE_ORDERS_PER_DAY * np.sqrt(creators.audience[seller]))
    seller = np.repeat(seller, count)
    t = ledger.window.day_start_us(day) + rng.integers(0, DAY_US, len(seller))
    no_session = pl.Series("session_id", [None] * len(seller), dtype=pl.String)
    return orders(rng, creators, ledger, t, seller, no_session)
