"""The runtime's policy file: coin packs, fees by channel, gift split, commerce and metering rules.

Fees live in a file, not in code, so finance can change a rate without a release, and every
rate is an integer in basis points so every amount stays an exact integer of minor units.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from telemetry.events import CHANNELS, CURRENCIES

DEFAULT_POLICY = Path(__file__).with_name("policy_default.toml")
BPS = 10_000


class PolicyError(ValueError):
    """The policy file is missing, unreadable or inconsistent."""


def of_bps(amount_minor: int, bps: int) -> int:
    """`amount * bps / 10000`, rounded half up to the minor unit."""
    return (amount_minor * bps * 2 + BPS) // (2 * BPS)


@dataclass(frozen=True)
class ChannelFees:
    processor_bps: int
    processor_fixed_minor: int
    store_bps: int

    def fees(self, amount_minor: int) -> tuple[int, int]:
        """(payment_fee, store_fee) of a purchase; never more than the amount."""
        payment = of_bps(amount_minor, self.processor_bps)
        payment += self.processor_fixed_minor if self.processor_bps or payment else 0
        store = of_bps(amount_minor, self.store_bps)
        payment = min(payment, amount_minor - store)
        return payment, store


@dataclass(frozen=True)
class GiftSplit:
    platform_fee: int
    shares: dict[str, int]  # credited now, in minor units
    carries: dict[str, Fraction]  # what each host is owed beyond that, carried to its next gift


@dataclass(frozen=True)
class Quality:
    bitrate_bps: int
    renditions: int


@dataclass(frozen=True)
class Policy:
    version: str
    currency: str
    coin_value_minor: int
    max_gift_coins: int
    payout_threshold_minor: int
    payout_hold_days: int  # earnings become payable this many days after they are earned
    refund_fee_borne_by: str  # who bears the processor fee kept on a refund: "platform"
    token_ttl_days: int
    coin_packs: dict[int, int]  # coins -> price
    channels: dict[str, ChannelFees]
    gift_platform_fee_bps: int
    host_floor_bps: int  # the least share of the hosts' part any present host gets
    max_hosts: int
    commission_bps: int
    order_processor_bps: int
    order_processor_fixed_minor: int
    max_price_minor: int
    max_quantity: int
    metering_interval_seconds: float
    relay_when_hosts_at_least: int
    qualities: dict[str, Quality]

    @property
    def creator_rate(self) -> Fraction:
        """The share of a gift's value that goes to its hosts together."""
        return Fraction(BPS - self.gift_platform_fee_bps, BPS)

    def split_gift(
        self, value_minor: int, weights: Mapping[str, int], carries: Mapping[str, Fraction]
    ) -> GiftSplit:
        """A gift's value split exactly between the hosts and the platform.

        Each host is owed `creator_rate x value x weight / total weight`, a fraction of a minor
        unit in general. Added to the fraction the host carries from earlier gifts, the whole
        units are credited now and the rest is carried on. So over any sequence of gifts a
        host's earnings are the floor of what the rate gives: never more, less by under one
        minor unit. The platform fee is the rest of the value, so the parts add up exactly.
        """
        parts = self.host_parts(weights)
        owed = {h: carries.get(h, Fraction(0)) + self.creator_rate * value_minor * parts[h]
                for h in weights}  # fmt: skip
        shares = {h: int(o) for h, o in owed.items()}  # o >= 0, so int() is the floor
        for host in reversed(list(shares)):  # small gifts to many hosts: never a negative fee
            excess = sum(shares.values()) - value_minor
            if excess <= 0:
                break
            shares[host] -= min(excess, shares[host])
        carried = {h: owed[h] - shares[h] for h in owed}
        return GiftSplit(value_minor - sum(shares.values()), shares, carried)

    def host_parts(self, weights: Mapping[str, int]) -> dict[str, Fraction]:
        """Each present host's part of the hosts' share: by weight, but never below the floor
        (host_floor_bps); what the floor lifts comes from the others in proportion to theirs."""
        floor = Fraction(self.host_floor_bps, BPS)
        lifted: set[str] = set()
        while True:
            rest = {h: w for h, w in weights.items() if h not in lifted}
            left = 1 - floor * len(lifted)
            total = sum(rest.values())
            parts = {h: left * w / total for h, w in rest.items()}
            below = {h for h, p in parts.items() if p < floor}
            if not below:
                return {**{h: floor for h in lifted}, **parts}
            lifted |= below

    def order_fees(self, gross_minor: int) -> tuple[int, int]:
        """(payment_fee, commission) of a paid order; the creator nets the rest."""
        payment = min(
            of_bps(gross_minor, self.order_processor_bps) + self.order_processor_fixed_minor,
            gross_minor,
        )
        commission = min(of_bps(gross_minor, self.commission_bps), gross_minor - payment)
        return payment, commission


def load_policy(path: Path | str | None = None, allow_unprofitable_packs: bool = False) -> Policy:
    """Reads and checks a policy file (the shipped default when `path` is None).

    A pack that nets the platform less per coin than creators are paid per gifted coin loses
    money on every coin sold; it is refused unless `allow_unprofitable_packs` (experiments)."""
    path = Path(path) if path else DEFAULT_POLICY
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PolicyError(f"policy file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {path} is not readable TOML: {exc}") from exc
    try:
        policy = _parse(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyError(f"policy file {path}: {exc!r}") from exc
    _check(policy, path)
    if not allow_unprofitable_packs and (losing := unprofitable_packs(policy)):
        raise PolicyError(
            f"policy file {path}: these packs net the platform less per coin than creators "
            f"are paid per coin ({policy.creator_rate * policy.coin_value_minor} minor units): "
            + "; ".join(losing)
            + " (pass --allow-unprofitable-packs to run it anyway)"
        )
    return policy


def unprofitable_packs(policy: Policy) -> list[str]:
    """Each (pack, channel) whose price after fees is below what its coins pay creators."""
    paid_per_coin = policy.creator_rate * policy.coin_value_minor
    losing = []
    for coins, price in sorted(policy.coin_packs.items()):
        for channel, fees in sorted(policy.channels.items()):
            net = price - sum(fees.fees(price))
            if Fraction(net, coins) < paid_per_coin:
                losing.append(
                    f"{coins} coins for {price} on {channel} nets {net} "
                    f"({float(Fraction(net, coins)):.4f} per coin)"
                )
    return losing


def _parse(raw: dict) -> Policy:
    commerce, metering = raw["commerce"], raw["metering"]
    return Policy(
        version=str(raw["version"]),
        currency=raw["currency"],
        coin_value_minor=int(raw["coin_value_minor"]),
        max_gift_coins=int(raw["max_gift_coins"]),
        payout_threshold_minor=int(raw["payout_threshold_minor"]),
        payout_hold_days=int(raw["payout_hold_days"]),
        refund_fee_borne_by=str(raw["refunds"]["processor_fee_borne_by"]),
        token_ttl_days=int(raw["token_ttl_days"]),
        coin_packs={int(p["coins"]): int(p["price_minor"]) for p in raw["coin_packs"]},
        channels={name: ChannelFees(**fees) for name, fees in raw["channels"].items()},
        gift_platform_fee_bps=int(raw["gifts"]["platform_fee_bps"]),
        host_floor_bps=int(raw["gifts"]["host_floor_bps"]),
        max_hosts=int(raw["gifts"]["max_hosts"]),
        commission_bps=int(commerce["commission_bps"]),
        order_processor_bps=int(commerce["processor_bps"]),
        order_processor_fixed_minor=int(commerce["processor_fixed_minor"]),
        max_price_minor=int(commerce["max_price_minor"]),
        max_quantity=int(commerce["max_quantity"]),
        metering_interval_seconds=float(metering["interval_seconds"]),
        relay_when_hosts_at_least=int(metering["relay_when_hosts_at_least"]),
        qualities={name: Quality(**q) for name, q in metering["qualities"].items()},
    )


def _check(policy: Policy, path: Path) -> None:
    problems = []
    if policy.currency not in CURRENCIES:
        problems.append(f"unknown currency {policy.currency}")
    if set(policy.channels) != CHANNELS:
        problems.append(f"channels must be exactly {sorted(CHANNELS)}")
    if policy.max_hosts < 1 or policy.max_hosts * policy.host_floor_bps > BPS:
        problems.append("gifts: max_hosts must be >= 1, and max_hosts x host_floor_bps <= 10000")
    rates = [policy.gift_platform_fee_bps, policy.commission_bps, policy.order_processor_bps]
    rates.append(policy.host_floor_bps)
    rates += [c.processor_bps for c in policy.channels.values()]
    rates += [c.store_bps for c in policy.channels.values()]
    if any(not 0 <= r <= BPS for r in rates):
        problems.append("every *_bps rate must be between 0 and 10000")
    if not policy.coin_packs or any(c <= 0 or p <= 0 for c, p in policy.coin_packs.items()):
        problems.append("coin_packs must list positive coins and prices")
    if policy.coin_value_minor <= 0 or policy.metering_interval_seconds <= 0:
        problems.append("coin_value_minor and metering.interval_seconds must be positive")
    if policy.refund_fee_borne_by != "platform":
        problems.append('refunds.processor_fee_borne_by must be "platform" (the only one built)')
    if not 0 <= policy.payout_hold_days <= 366:
        problems.append("payout_hold_days must be 0 to 366")
    if not policy.qualities:
        problems.append("metering.qualities must list at least one quality")
    if problems:
        raise PolicyError(f"policy file {path}: " + "; ".join(problems))
