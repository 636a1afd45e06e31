"""Fee and split rules, in integer cents, so every emitted amount satisfies the contract."""

from __future__ import annotations

import numpy as np

CURRENCY = "USD"

# Coin packs as sold in the app: (coins, price in cents). One coin is worth one cent in gifts.
COIN_PACKS = np.array(
    [(70, 99), (350, 499), (700, 999), (1400, 1999), (3500, 4999), (7000, 9999), (17500, 24999)]
)
PLATFORM_GIFT_SHARE_PERCENT = 50
COMMISSION_PERCENT = 8


def _round_half_up(numerator: np.ndarray, denominator: int) -> np.ndarray:
    return (numerator * 2 + denominator) // (2 * denominator)


def processor_fee(amount_minor: np.ndarray) -> np.ndarray:
    """A card processor's 2.9% + 30 cents, rounded to the cent."""
    return _round_half_up(np.asarray(amount_minor) * 29, 1000) + 30


def store_fee(amount_minor: np.ndarray) -> np.ndarray:
    """An app store's 30% of an in-app purchase, rounded to the cent."""
    return _round_half_up(np.asarray(amount_minor) * 30, 100)


def commission(gross_minor: np.ndarray) -> np.ndarray:
    """The platform's commission on creator-led sales, rounded to the cent."""
    return _round_half_up(np.asarray(gross_minor) * COMMISSION_PERCENT, 100)


def split_gift(value_minor: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The platform fee and each host slot's share of gifts, given who is present.

    `present` is (gifts, slots) with slot 0 the owner and at least one slot present per
    gift. The fee is half the value rounded down; the rest is split equally between the
    present hosts and the leftover cents go to the first present slot, which is the owner
    whenever the owner is there. Absent slots get 0. Shares plus fee equal the value.
    """
    value = np.asarray(value_minor, dtype=np.int64)
    fee = value * PLATFORM_GIFT_SHARE_PERCENT // 100
    rest = value - fee
    hosts = present.sum(axis=1)
    each = rest // hosts
    shares = np.where(present, each[:, None], 0)
    shares[np.arange(len(value)), np.argmax(present, axis=1)] += rest - each * hosts
    return fee, shares
