"""The runtime's money rules (live_runtime/policy.py), laid out for arrays of events.

Nothing here is a rule of its own: coin packs, fees, the gift split and the payout terms all
come from a `Policy`. Fees are looked up in tables the policy's own functions fill. The gift
split is `Policy.split_gift` in exact integer arithmetic over a whole day of gifts at once,
because calling it once per gift (with fractions) would take longer than writing the events;
tests/test_simulator.py replays the emitted gifts through `split_gift` and compares.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from live_runtime.policy import Policy
from simulator.world import MAX_HOSTS

CHANNELS = ("web", "ios", "android")  # purchase channels, in the order the simulator codes them


class Money:
    """Everything the simulator prices, taken from one policy; the gift carries of `creators`."""

    def __init__(self, policy: Policy, creators: int) -> None:
        self.policy = policy
        self.currency = policy.currency
        self.coin_value_minor = policy.coin_value_minor
        self.packs = CoinPacks(policy, CHANNELS)
        self.gifts = GiftSplitter(policy, creators, MAX_HOSTS)

    def order_fees(self, gross_minor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return order_fees(self.policy, gross_minor)


class CoinPacks:
    """The policy's coin packs by size, with each (pack, channel)'s fees from the policy."""

    def __init__(self, policy: Policy, channels: tuple[str, ...]) -> None:
        packs = sorted(policy.coin_packs.items())
        self.coins = np.array([coins for coins, _ in packs], dtype=np.int64)
        self.price = np.array([price for _, price in packs], dtype=np.int64)
        fees = [[policy.channels[c].fees(price) for c in channels] for _, price in packs]
        self.payment_fee = np.array([[p for p, _ in row] for row in fees], dtype=np.int64)
        self.store_fee = np.array([[s for _, s in row] for row in fees], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.coins)

    def covering(self, coins_wanted: np.ndarray) -> np.ndarray:
        """The smallest pack holding `coins_wanted` coins (the largest when none does)."""
        return np.minimum(np.searchsorted(self.coins, coins_wanted), len(self.coins) - 1)


def order_fees(policy: Policy, gross_minor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(payment fee, commission) of each paid order, by `Policy.order_fees` per distinct gross."""
    distinct, index = np.unique(np.asarray(gross_minor, dtype=np.int64), return_inverse=True)
    fees = np.array([policy.order_fees(int(g)) for g in distinct], dtype=np.int64)
    fees = fees.reshape(len(distinct), 2)
    return fees[index.reshape(-1), 0], fees[index.reshape(-1), 1]


class GiftSplitter:
    """`Policy.split_gift` for gifts to equally weighted hosts, over arrays of gifts, with
    each creator's carry kept from one call to the next.

    With `n` hosts present each is owed `q_n x value` of a gift, `q_n = creator_rate x part`;
    every `q_n` is a whole number of 1/`denominator` of a minor unit, so what a creator is
    owed is an integer count of those. A creator's carry is `fraction / denominator + behind`:
    the fraction of a unit the floor leaves (0 <= fraction < denominator) and the whole units
    a small gift to many hosts could not pay (`split_gift` takes the excess of the rounded
    shares over the value from the last hosts, who carry it to their next gift).

    Without whole units behind, a creator's share of a gift is how many whole units its
    running total passes, a cumulative sum per creator. Only gifts that touch a creator who
    is, or may fall, behind are done one by one: gifts whose rounded shares exceed their
    value, and every gift of the creators sharing a gift with those, transitively.
    """

    def __init__(self, policy: Policy, creators: int, max_hosts: int) -> None:
        if max_hosts > policy.max_hosts:
            raise ValueError(
                f"the simulator puts up to {max_hosts} hosts in a session; "
                f"the policy allows {policy.max_hosts}"
            )
        owed = [Fraction(0)]  # owed per unit of value to each host, by hosts present
        for n in range(1, max_hosts + 1):
            parts = set(policy.host_parts(dict.fromkeys(range(n), 1)).values())
            if len(parts) != 1:
                raise ValueError(f"the policy's parts of {n} equal hosts differ: {parts}")
            owed.append(policy.creator_rate * parts.pop())
        self.denominator = math.lcm(*(q.denominator for q in owed))
        self.per_value = np.array([int(q * self.denominator) for q in owed], dtype=np.int64)
        self.fraction = np.zeros(creators, dtype=np.int64)
        self.behind = np.zeros(creators, dtype=np.int64)

    def carry(self, creator: int) -> Fraction:
        """What `creator` carries to its next gift, as `split_gift` would have it."""
        return Fraction(int(self.fraction[creator]), self.denominator) + int(self.behind[creator])

    def split(
        self, value: np.ndarray, host: np.ndarray, present: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(platform fee, share per host slot) of gifts given in time order.

        `host` holds the creator of each (gift, slot) and `present` marks the hosts a gift
        is split between (at least one per gift), in slot order; absent slots get 0.
        """
        value = np.asarray(value, dtype=np.int64)
        if len(value) == 0:
            return value.copy(), np.zeros(present.shape, dtype=np.int64)
        gift, slot = np.nonzero(present)  # gift by gift, slots in order
        creator = host[gift, slot]
        owed = (self.per_value[present.sum(axis=1)] * value)[gift]
        by_creator = np.argsort(creator, kind="stable")  # each creator's entries in time order
        creator_sorted = creator[by_creator]
        first = np.ones(len(gift), dtype=bool)
        first[1:] = creator_sorted[1:] != creator_sorted[:-1]
        owed_sorted = owed[by_creator]
        running = np.cumsum(owed_sorted)
        start = np.flatnonzero(first)
        before = np.repeat((running - owed_sorted)[start], np.diff(start, append=len(gift)))
        total = self.fraction[creator_sorted] + running - before
        units = total // self.denominator
        earlier = np.where(first, 0, np.roll(units, 1))
        base = np.zeros(present.shape, dtype=np.int64)
        base[gift[by_creator], slot[by_creator]] = units - earlier
        last = np.append(start[1:], len(gift)) - 1
        self.fraction[creator_sorted[last]] = total[last] % self.denominator

        share = base
        slow = self._behind_gifts(value, host, present, base)
        if len(slow):
            share = base.copy()
            self._one_by_one(slow, value, host, present, base, share)
        return value - share.sum(axis=1), share

    def _behind_gifts(
        self, value: np.ndarray, host: np.ndarray, present: np.ndarray, base: np.ndarray
    ) -> np.ndarray:
        """The gifts (in time order) touching a creator who is or may fall behind."""
        seeds = present & (base.sum(axis=1) > value)[:, None]
        touched = np.zeros(len(self.behind), dtype=bool)
        touched[np.flatnonzero(self.behind)] = True
        touched[host[seeds]] = True
        if not touched.any():
            return np.empty(0, dtype=np.int64)
        shared = present.sum(axis=1) > 1
        while True:
            spread = shared & (present & touched[np.where(present, host, 0)]).any(axis=1)
            grown = touched.copy()
            grown[host[present & spread[:, None]]] = True
            if (grown == touched).all():
                break
            touched = grown
        return np.flatnonzero((present & touched[np.where(present, host, 0)]).any(axis=1))

    def _one_by_one(
        self,
        gifts: np.ndarray,
        value: np.ndarray,
        host: np.ndarray,
        present: np.ndarray,
        base: np.ndarray,
        share: np.ndarray,
    ) -> None:
        """`split_gift`'s shares for `gifts`: each host is credited its whole units owed
        (what it is behind plus the units its fraction passes), and what exceeds the value is
        taken back from the last hosts, who fall behind by that much."""
        rows, slots = np.nonzero(present[gifts])  # gift by gift, slots in order
        creators = host[gifts[rows], slots].tolist()
        units = base[gifts[rows], slots].tolist()
        ends = np.cumsum(present[gifts].sum(axis=1)).tolist()
        behind = self.behind.tolist()
        paid, start = [], 0
        for left, end in zip(value[gifts].tolist(), ends, strict=True):
            for entry in range(start, end):
                creator = creators[entry]
                owed = units[entry] + behind[creator]
                credited = min(owed, left)
                left -= credited
                behind[creator] = owed - credited
                paid.append(credited)
            start = end
        self.behind[:] = behind
        share[gifts[rows], slots] = paid
