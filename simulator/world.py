"""The simulated population: creators, their catalogues, and the live sessions they plan.

Creator audiences are lognormal with a wide spread, so most creators stream to a handful of
viewers while a few draw thousands; that single choice gives gifting its heavy tail. Every
creator streams at most one session of their own a day, near their usual hour, and only
joins another creator's session as a co-host on days they are not live themselves, so no
one is ever present in two sessions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from simulator.lines import prefixed_id, uuid4_strings

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US

REGIONS = ("us-east", "us-west", "eu-west", "ap-southeast", "sa-east")
_REGION_SHARE = (0.30, 0.12, 0.22, 0.26, 0.10)
_REGION_EVENING_UTC = np.array([0.0, 3.0, 18.5, 12.5, 23.0])  # 20:00 local, as a UTC hour

QUALITIES = ("480p", "720p", "1080p")
_QUALITY_SHARE = (0.15, 0.60, 0.25)
RENDITIONS = np.array([2, 3, 4])  # transcoded renditions of the ladder for each quality
BITRATE_BPS = np.array([1_000_000, 2_500_000, 4_500_000])  # bits/s delivered at each quality

SESSION_END_REASONS = ("host_ended", "timeout", "error")
_END_REASON_SHARE = (0.93, 0.04, 0.03)

MAX_HOSTS = 4  # the owner plus up to three co-hosts
# (co-hosts at the start, co-hosts joining later) of multi-host sessions, with their shares.
_COHOST_MIXES = np.array([(1, 0), (1, 1), (2, 0), (2, 1), (0, 1), (0, 2)])
_COHOST_MIX_SHARE = (0.30, 0.20, 0.12, 0.03, 0.25, 0.10)
MULTI_HOST_SHARE = 0.15
USERS_PER_CREATOR = 200


def creator_id(column: str) -> pl.Expr:
    return prefixed_id("cr_", column, 6)


def user_id(column: str) -> pl.Expr:
    return prefixed_id("u_", column, 8)


def product_id(column: str) -> pl.Expr:
    return prefixed_id("prd_", column, 7)


@dataclass(frozen=True)
class Window:
    """The simulated UTC days; every event happens in [start_us, end_us)."""

    start: date
    days: int

    @property
    def start_us(self) -> int:
        midnight = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return int(midnight.timestamp()) * SECOND_US

    @property
    def end_us(self) -> int:
        return self.day_start_us(self.days)

    def day_start_us(self, day: int) -> int:
        return self.start_us + day * DAY_US

    def day_of(self, t_us: np.ndarray) -> np.ndarray:
        return (np.asarray(t_us) - self.start_us) // DAY_US


@dataclass(frozen=True)
class Creators:
    """One row per creator; products are indexed globally from `product_first`."""

    region: np.ndarray
    start_hour: np.ndarray  # usual UTC hour of going live
    live_share: np.ndarray  # chance of going live on a given day
    audience: np.ndarray  # typical concurrent viewers
    gift_affinity: np.ndarray  # how readily their viewers gift, around 1
    typical_minutes: np.ndarray
    quality: np.ndarray
    records: np.ndarray
    sells: np.ndarray
    product_first: np.ndarray
    product_count: np.ndarray
    product_price: np.ndarray  # cents, one per product

    @property
    def count(self) -> int:
        return len(self.region)

    @property
    def users(self) -> int:
        """Size of the viewer population the audiences are drawn from."""
        return max(USERS_PER_CREATOR * self.count, 200_000)


def draw_creators(rng: np.random.Generator, n: int) -> Creators:
    """A creator population with lognormal audiences: most small, a few very large."""
    region = rng.choice(len(REGIONS), size=n, p=_REGION_SHARE)
    start_hour = (_REGION_EVENING_UTC[region] + rng.normal(0.0, 2.5, n)) % 24.0
    sells = rng.random(n) < 0.25
    product_count = np.where(sells, rng.integers(2, 11, n), 0)
    product_first = np.cumsum(product_count) - product_count
    list_price = rng.lognormal(np.log(2400.0), 0.7, int(product_count.sum()))
    return Creators(
        region=region,
        start_hour=start_hour,
        live_share=rng.beta(0.8, 2.0, n),
        audience=np.minimum(rng.lognormal(np.log(3.0), 1.7, n), 20_000.0),
        gift_affinity=rng.lognormal(0.0, 0.8, n),
        typical_minutes=np.clip(rng.lognormal(np.log(60.0), 0.45, n), 20.0, 240.0),
        quality=rng.choice(len(QUALITIES), size=n, p=_QUALITY_SHARE),
        records=rng.random(n) < 0.25,
        sells=sells,
        product_first=product_first,
        product_count=product_count,
        product_price=np.maximum(np.round(list_price / 100.0) * 100 - 1, 499).astype(np.int64),
    )


@dataclass(frozen=True)
class Sessions:
    """Planned sessions in start order, with their hosts in fixed slots.

    Slot 0 is the owner; then the co-hosts listed at the start; then co-hosts who join, in
    join order. A slot is present on [host_from, host_to) seconds after the start; an empty
    slot has host -1 and is present on [0, 0). Someone is present for the whole session.
    """

    ids: pl.Series
    owner: np.ndarray
    start_us: np.ndarray
    length_s: np.ndarray
    bucket: np.ndarray  # day of the start
    audience: np.ndarray
    end_reason: np.ndarray
    host: np.ndarray
    host_from: np.ndarray
    host_to: np.ndarray
    host_listed: np.ndarray

    def __len__(self) -> int:
        return len(self.owner)

    def of_day(self, day: int) -> Sessions:
        """The sessions that start on a day."""
        lo, hi = np.searchsorted(self.bucket, [day, day + 1])
        return Sessions(
            ids=self.ids.slice(lo, hi - lo),
            **{f.name: getattr(self, f.name)[lo:hi] for f in fields(self) if f.name != "ids"},
        )


def plan_sessions(rng: np.random.Generator, creators: Creators, window: Window) -> Sessions:
    """Owner sessions near each creator's usual hour, then co-hosts for the multi-host ones."""
    owner, day = np.nonzero(
        rng.random((creators.count, window.days)) < creators.live_share[:, None]
    )
    jitter_h = np.clip(rng.normal(0.0, 0.75, len(owner)), -2.0, 2.0)
    start_s = (day * 86_400 + (creators.start_hour[owner] + jitter_h) * 3600).astype(np.int64)
    start_us = window.start_us + start_s * SECOND_US + rng.integers(0, SECOND_US, len(owner))
    minutes = creators.typical_minutes[owner] * rng.lognormal(0.0, 0.35, len(owner))
    length_s = np.clip(minutes * 60, 20 * 60, 240 * 60).astype(np.int64)
    audience = creators.audience[owner] * rng.lognormal(0.0, 0.35, len(owner))
    end_reason = rng.choice(len(SESSION_END_REASONS), size=len(owner), p=_END_REASON_SHARE)

    inside = (start_us >= window.start_us) & (start_us < window.end_us)
    order = np.flatnonzero(inside)[np.argsort(start_us[inside], kind="stable")]
    owner, start_us, length_s = owner[order], start_us[order], length_s[order]
    bucket = window.day_of(start_us)
    host, host_from, host_to, host_listed = _plan_hosts(
        rng, owner, bucket, length_s, creators.count, window.days
    )
    return Sessions(
        ids=uuid4_strings(rng, len(owner)),
        owner=owner,
        start_us=start_us,
        length_s=length_s,
        bucket=bucket,
        audience=audience[order],
        end_reason=end_reason[order],
        host=host,
        host_from=host_from,
        host_to=host_to,
        host_listed=host_listed,
    )


def _plan_hosts(
    rng: np.random.Generator,
    owner: np.ndarray,
    bucket: np.ndarray,
    length_s: np.ndarray,
    creators: int,
    days: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Host slots of every session: who, and when they are present."""
    n = len(owner)
    multi = rng.random(n) < MULTI_HOST_SHARE
    mix = np.where(
        multi[:, None], _COHOST_MIXES[rng.choice(len(_COHOST_MIXES), n, p=_COHOST_MIX_SHARE)], 0
    )
    at_start, joining = mix[:, 0], mix[:, 1]
    slot = np.arange(MAX_HOSTS)
    wanted = (slot >= 1) & (slot <= (at_start + joining)[:, None])

    host = np.full((n, MAX_HOSTS), -1, dtype=np.int64)
    host[:, 0] = owner
    host[wanted] = _pick_cohosts(rng, owner, bucket, wanted.sum(axis=1), creators, days)
    valid = host >= 0

    length = length_s[:, None]
    host_from = np.zeros((n, MAX_HOSTS), dtype=np.int64)
    host_to = np.broadcast_to(length, (n, MAX_HOSTS)).copy()
    listed = valid & (slot <= at_start[:, None])
    leaves_early = listed & (slot >= 1) & (rng.random((n, MAX_HOSTS)) < 0.4)
    early_exit = (length * rng.uniform(0.3, 0.95, (n, MAX_HOSTS))).astype(np.int64)
    host_to = np.where(leaves_early, early_exit, host_to)

    joins = valid & ~listed
    join_s = (length * _joiner_fractions(rng, joins, at_start)).astype(np.int64)
    stay_s = rng.uniform(300.0, length, (n, MAX_HOSTS)).astype(np.int64)
    host_from = np.where(joins, join_s, host_from)
    host_to = np.where(joins, np.minimum(join_s + stay_s, length), host_to)

    cohost_stays = (listed & (slot >= 1) & (host_to == length)).any(axis=1)
    owner_steps_away = cohost_stays & (rng.random(n) < 0.1)
    owner_exit = (length_s * rng.uniform(0.6, 0.95, n)).astype(np.int64)
    host_to[:, 0] = np.where(owner_steps_away, owner_exit, length_s)

    host_from[~valid] = 0
    host_to[~valid] = 0
    return host, host_from, host_to, listed


def _joiner_fractions(
    rng: np.random.Generator, joins: np.ndarray, at_start: np.ndarray
) -> np.ndarray:
    """When, as a fraction of the session, each joining slot joins: later slots join later."""
    drawn = np.where(joins, rng.uniform(0.05, 0.7, joins.shape), np.inf)
    ascending = np.sort(drawn, axis=1)
    rank = np.clip(np.arange(joins.shape[1]) - at_start[:, None] - 1, 0, joins.shape[1] - 1)
    return np.where(joins, np.take_along_axis(ascending, rank, axis=1), 0.0)


def _pick_cohosts(
    rng: np.random.Generator,
    owner: np.ndarray,
    bucket: np.ndarray,
    slots: np.ndarray,
    creators: int,
    days: int,
) -> np.ndarray:
    """Co-hosts for each session's `slots` co-host slots, in session order (-1 if none is free).

    A co-host on day d has no session of their own on days d-1..d+1 and co-hosts nothing
    on day d-1 or d, so their presence can never overlap another (sessions last < 1 day).
    """
    owns = np.zeros((creators, days + 2), dtype=bool)  # column d + 1 is day d
    owns[owner, bucket + 1] = True
    last_cohosted = np.full(creators, -2, dtype=np.int64)
    picks = np.full(int(slots.sum()), -1, dtype=np.int64)
    slot_day = np.repeat(bucket, slots)
    for day in range(days):
        todays = np.flatnonzero(slot_day == day)
        if len(todays) == 0:
            continue
        free = ~owns[:, day : day + 3].any(axis=1) & (last_cohosted < day - 1)
        chosen = rng.permutation(np.flatnonzero(free))[: len(todays)]
        picks[todays[: len(chosen)]] = chosen
        last_cohosted[chosen] = day
    return picks
