"""Events inside live sessions: hosts and viewers coming and going, media usage each minute,
gifts split between the hosts present, coin top-ups before gifting, and sales in the live.

All presence is in whole seconds after the session start, so usage seconds are exact
integers; gifts and orders happen at any microsecond while someone is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from simulator.cashflow import Batch, Ledger, coin_purchases, orders
from simulator.lines import json_list, labels, uuid4_strings
from simulator.money import Money
from simulator.world import (
    BITRATE_BPS,
    MAX_HOSTS,
    QUALITIES,
    REGIONS,
    RENDITIONS,
    SECOND_US,
    SESSION_END_REASONS,
    Creators,
    Sessions,
    Window,
    creator_id,
    user_id,
)

MEDIAN_DWELL_S = 180.0
DWELL_SIGMA = 1.0
MEAN_DWELL_S = MEDIAN_DWELL_S * np.exp(DWELL_SIGMA**2 / 2)
# Large primes (above any user count) that spread a session's viewers over the population.
_USER_STRIDES = np.array([1_000_000_007, 998_244_353, 1_000_000_009, 999_999_937])
VIEWER_EVENT_SHARE = 0.25  # viewers whose join and leave are reported; gifters always are

GIFT_COINS = np.array([1, 5, 10, 30, 99, 199, 500, 1000, 5000, 29999])
_GIFT_SHARE = (0.505, 0.18, 0.12, 0.07, 0.05, 0.035, 0.02, 0.015, 0.0045, 0.0005)
GIFTING_VISIT_SHARE = 0.03  # visits with gifts, for a creator of average gift affinity
GIFTS_PER_GIFTING_VISIT = 3.0  # mean; gifts come in streaks
TOP_UP_SHARE = 0.6  # gifting viewers who buy coins just before their first gift
GIFT_FAILURE_RATE = 0.005
GIFT_FAILURE_REASONS = (
    "insufficient_balance",
    "session_closed",
    "rejected",
    "internal_error",
    "timeout",
)
_GIFT_FAILURE_SHARE = (0.45, 0.20, 0.10, 0.10, 0.15)
ORDERS_PER_VISIT = 0.015  # checkout attempts per viewer visit, in lives with a seller present


@dataclass(frozen=True)
class Visits:
    """Viewers' stays in sessions: session index (within the day), user, [join_s, leave_s)."""

    session: np.ndarray
    user: np.ndarray
    join_s: np.ndarray
    leave_s: np.ndarray


def live_events(
    rng: np.random.Generator,
    today: Sessions,
    creators: Creators,
    window: Window,
    money: Money,
    ledger: Ledger,
) -> list[Batch]:
    """Every event of the sessions that start on one day."""
    visits = draw_visits(rng, today, creators.users)
    affinity = creators.gift_affinity[today.owner][visits.session]
    gifting = rng.random(len(visits.user)) < np.minimum(GIFTING_VISIT_SHARE * affinity, 0.5)
    batches = session_events(today, creators, window)
    batches += viewer_events(rng, today, visits, gifting, window)
    batches.append(media_usage(today, visits, creators, window))
    batches += gift_events(rng, today, visits, gifting, window, money, ledger)
    batches += live_orders(rng, today, visits, creators, window, money, ledger)
    return batches


def draw_visits(rng: np.random.Generator, today: Sessions, users: int) -> Visits:
    """Viewers arriving through each session, enough to hold its audience on average.

    Viewers of one session are distinct users, so nobody joins a session twice at once.
    """
    count = rng.poisson(today.audience * today.length_s / MEAN_DWELL_S)
    count = np.minimum(count, users)
    session = np.repeat(np.arange(len(today)), count)
    rank = np.arange(len(session)) - np.repeat(np.cumsum(count) - count, count)
    first_user = rng.integers(0, users, len(today))
    stride = _USER_STRIDES[rng.integers(0, len(_USER_STRIDES), len(today))]
    length = today.length_s[session]
    join = (rng.random(len(session)) * length).astype(np.int64)
    dwell = np.maximum(rng.lognormal(np.log(MEDIAN_DWELL_S), DWELL_SIGMA, len(session)), 5.0)
    return Visits(
        session=session,
        user=(first_user[session] + rank * stride[session]) % users,
        join_s=join,
        leave_s=np.minimum(join + dwell.astype(np.int64), length),
    )


def session_events(today: Sessions, creators: Creators, window: Window) -> list[Batch]:
    """Starts, co-hosts joining and leaving, and ends (for sessions that end in the window)."""
    started = pl.DataFrame(
        {
            "t": today.start_us,
            "session_id": today.ids,
            "creator_ids": _creator_id_list(today.host, today.host_listed),
            "region": labels(REGIONS, creators.region[today.owner]),
            "quality": labels(QUALITIES, creators.quality[today.owner]),
        }
    )
    valid = today.host >= 0
    joined = _host_changes(today, valid & ~today.host_listed, today.host_from, window)
    left = valid & (today.host_to < today.length_s[:, None])
    end_t = today.start_us + today.length_s * SECOND_US
    ends = end_t < window.end_us
    ended = pl.DataFrame(
        {
            "t": end_t[ends],
            "session_id": today.ids.filter(ends),
            "reason": labels(SESSION_END_REASONS, today.end_reason[ends]),
        }
    )
    return [
        ("session_started", started),
        ("host_joined", joined),
        ("host_left", _host_changes(today, left, today.host_to, window)),
        ("session_ended", ended),
    ]


def _host_changes(
    today: Sessions, changed: np.ndarray, at_s: np.ndarray, window: Window
) -> pl.DataFrame:
    """Host join or leave events for the marked slots, at their slot times."""
    session, slot = np.nonzero(changed)
    t = today.start_us[session] + at_s[session, slot] * SECOND_US
    inside = t < window.end_us
    return pl.DataFrame(
        {
            "t": t[inside],
            "session_id": today.ids.gather(session[inside]),
            "creator_id": today.host[session, slot][inside],
        }
    ).with_columns(creator_id("creator_id"))


def _slot_columns(host: np.ndarray, include: np.ndarray, share: np.ndarray) -> pl.DataFrame:
    """Host slots as columns: creator `h<k>`, whether included `m<k>`, share `s<k>`."""
    columns = {f"h{k}": host[:, k] for k in range(MAX_HOSTS)}
    columns |= {f"m{k}": include[:, k] for k in range(MAX_HOSTS)}
    columns |= {f"s{k}": share[:, k] for k in range(MAX_HOSTS)}
    return pl.DataFrame(columns)


def _creator_id_list(host: np.ndarray, include: np.ndarray) -> pl.Series:
    """JSON arrays of the included slots' creator ids, in slot order."""
    items = [
        pl.when(f"m{k}").then(pl.concat_str([pl.lit('"'), creator_id(f"h{k}"), pl.lit('"')]))
        for k in range(MAX_HOSTS)
    ]
    slots = _slot_columns(host, include, np.zeros_like(host))
    return slots.select(json_list(items)).to_series()


def _split_list(host: np.ndarray, include: np.ndarray, share: np.ndarray) -> pl.Series:
    """JSON arrays of {creator_id, share_minor} for the included slots, in slot order."""
    items = [
        pl.when(f"m{k}").then(
            pl.concat_str(
                [
                    pl.lit('{"creator_id":"'),
                    creator_id(f"h{k}"),
                    pl.lit('","share_minor":'),
                    pl.col(f"s{k}").cast(pl.String),
                    pl.lit("}"),
                ]
            )
        )
        for k in range(MAX_HOSTS)
    ]
    return _slot_columns(host, include, share).select(json_list(items)).to_series()


def viewer_events(
    rng: np.random.Generator,
    today: Sessions,
    visits: Visits,
    gifting: np.ndarray,
    window: Window,
) -> list[Batch]:
    """Join and leave events for the reported share of viewers (all who gift)."""
    reported = np.flatnonzero(gifting | (rng.random(len(gifting)) < VIEWER_EVENT_SHARE))
    session = visits.session[reported]
    batches = []
    for event_type, at_s in (("viewer_joined", visits.join_s), ("viewer_left", visits.leave_s)):
        t = today.start_us[session] + at_s[reported] * SECOND_US
        inside = t < window.end_us
        frame = pl.DataFrame(
            {
                "t": t[inside],
                "session_id": today.ids.gather(session[inside]),
                "user_id": visits.user[reported][inside],
            }
        ).with_columns(user_id("user_id"))
        batches.append((event_type, frame))
    return batches


def seconds_in_minutes(
    first_bin: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    weight: np.ndarray | int,
    bins: int,
) -> np.ndarray:
    """Seconds of each span [start_s, end_s) falling in each 60 s bin, times the span's weight.

    Bin `first_bin + m` covers seconds [60 m, 60 m + 60) of a span's session. Partial
    minutes at a span's ends are added directly and whole minutes through a running sum,
    so the cost is linear in spans plus bins however long the spans are.
    """
    first, last = start_s // 60, end_s // 60
    same = first == last
    head = np.where(same, end_s - start_s, 60 * (first + 1) - start_s) * weight
    tail = np.where(same, 0, end_s - 60 * last) * weight
    whole = np.where(last > first, weight, 0)
    size = bins + 2

    def add(index: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.bincount(first_bin + index, values.astype(np.float64), size)

    steps = add(first + 1, whole) - add(last, whole)
    total = add(first, head) + add(last, tail) + 60 * np.cumsum(steps)
    return np.rint(total[:bins]).astype(np.int64)


def _host_segments(today: Sessions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each session cut at every host change: (from_s, to_s, hosts present), (sessions, 2K).

    Empty slots are present on [0, 0), which only adds empty segments.
    """
    valid = today.host >= 0
    points = np.concatenate([today.host_from, today.host_to, today.length_s[:, None]], axis=1)
    points.sort(axis=1)
    seg_from, seg_to = points[:, :-1], points[:, 1:]
    present = (
        valid[:, None, :]
        & (today.host_from[:, None, :] <= seg_from[:, :, None])
        & (seg_from[:, :, None] < today.host_to[:, None, :])
    )
    return seg_from, seg_to, present.sum(axis=2)


def media_usage(today: Sessions, visits: Visits, creators: Creators, window: Window) -> Batch:
    """One usage report per minute of every session, reported at the end of the minute.

    Publisher seconds count each host present; relay seconds count host streams while two
    or more hosts are present and must be forwarded between them.
    """
    bins = -(-today.length_s // 60)
    first_bin = np.cumsum(bins) - bins
    total = int(bins.sum())
    session = np.repeat(np.arange(len(today)), bins)
    start_s = 60 * (np.arange(total) - first_bin[session])
    end_s = np.minimum(start_s + 60, today.length_s[session])
    seconds = end_s - start_s

    seg_from, seg_to, hosts = _host_segments(today)
    seg_bin = np.repeat(first_bin, seg_from.shape[1])
    seg_from, seg_to, hosts = seg_from.ravel(), seg_to.ravel(), hosts.ravel()
    publisher = seconds_in_minutes(seg_bin, seg_from, seg_to, hosts, total)
    relay = seconds_in_minutes(seg_bin, seg_from, seg_to, np.where(hosts >= 2, hosts, 0), total)
    viewer = seconds_in_minutes(first_bin[visits.session], visits.join_s, visits.leave_s, 1, total)

    quality = creators.quality[today.owner][session]
    bitrate = BITRATE_BPS[quality]
    records = creators.records[today.owner][session]
    start_us = today.start_us[session]
    t = start_us + end_s * SECOND_US
    inside = t < window.end_us
    frame = pl.DataFrame(
        {
            "t": t,
            "session_id": today.ids.gather(session),
            "interval_start": start_us + start_s * SECOND_US,
            "interval_end": t,
            "publisher_seconds": publisher,
            "viewer_seconds": viewer,
            "transcode_seconds": seconds * RENDITIONS[quality],
            "relay_seconds": relay,
            "egress_bytes": viewer * bitrate // 8,
            "recording_bytes": np.where(records, seconds * bitrate // 8, 0),
        }
    )
    return "media_usage", frame.filter(inside)


def hosts_present_at(today: Sessions, session: np.ndarray, offset_us: np.ndarray) -> np.ndarray:
    """(events, slots): which host slots are present at each moment of a session."""
    at = offset_us[:, None]
    return (
        (today.host[session] >= 0)
        & (today.host_from[session] * SECOND_US <= at)
        & (at < today.host_to[session] * SECOND_US)
    )


def gift_events(
    rng: np.random.Generator,
    today: Sessions,
    visits: Visits,
    gifting: np.ndarray,
    window: Window,
    money: Money,
    ledger: Ledger,
) -> list[Batch]:
    """Gift streaks during gifting viewers' stays, split between the hosts present then.

    Hosts present share a gift equally, by the policy's split with each host's carry, so the
    gifts are split in time order; nobody is present in two sessions at once, so splitting each
    day's gifts in time order splits every creator's gifts in time order across days.
    """
    gifter = np.flatnonzero(gifting)
    streak = rng.geometric(1.0 / GIFTS_PER_GIFTING_VISIT, len(gifter))
    visit = np.repeat(gifter, streak)
    session = visits.session[visit]
    join_us = visits.join_s[visit] * SECOND_US
    stay_us = visits.leave_s[visit] * SECOND_US - join_us
    offset = join_us + (rng.random(len(visit)) * stay_us).astype(np.int64)
    coins = GIFT_COINS[rng.choice(len(GIFT_COINS), len(visit), p=_GIFT_SHARE)]
    failed = rng.random(len(visit)) < GIFT_FAILURE_RATE
    reason = rng.choice(len(GIFT_FAILURE_REASONS), len(visit), p=_GIFT_FAILURE_SHARE)
    gift_id = uuid4_strings(rng, len(visit))
    t = today.start_us[session] + offset
    inside = t < window.end_us
    sent, lost = inside & ~failed, inside & failed

    present = hosts_present_at(today, session, offset)
    hosts = today.host[session]
    value = coins * money.coin_value_minor
    fee = np.zeros(len(visit), dtype=np.int64)
    share = np.zeros(present.shape, dtype=np.int64)
    in_order = np.flatnonzero(sent)[np.argsort(t[sent], kind="stable")]
    fee[in_order], share[in_order] = money.gifts.split(
        value[in_order], hosts[in_order], present[in_order]
    )
    paid = present & sent[:, None]
    ledger.add(hosts[paid], np.broadcast_to(t[:, None], paid.shape)[paid], share[paid])

    sender = visits.user[visit]
    gifts = pl.DataFrame(
        {
            "t": t[sent],
            "gift_id": gift_id.filter(sent),
            "session_id": today.ids.gather(session[sent]),
            "sender_id": sender[sent],
            "coins": coins[sent],
            "value_minor": value[sent],
            "splits": _split_list(hosts[sent], present[sent], share[sent]),
            "platform_fee_minor": fee[sent],
        }
    ).with_columns(user_id("sender_id"), currency=pl.lit(money.currency))
    failures = pl.DataFrame(
        {
            "t": t[lost],
            "gift_id": gift_id.filter(lost),
            "session_id": today.ids.gather(session[lost]),
            "sender_id": sender[lost],
            "reason": labels(GIFT_FAILURE_REASONS, reason[lost]),
        }
    ).with_columns(user_id("sender_id"))
    top_ups = _top_ups(rng, money, today, visits, gifter, streak, offset, coins, window)
    return [("gift_sent", gifts), ("gift_failed", failures), top_ups]


def _top_ups(
    rng: np.random.Generator,
    money: Money,
    today: Sessions,
    visits: Visits,
    gifter: np.ndarray,
    streak: np.ndarray,
    offset_us: np.ndarray,
    coins: np.ndarray,
    window: Window,
) -> Batch:
    """Coins bought by gifting viewers after joining and before their first gift."""
    if len(gifter) == 0:
        return coin_purchases(rng, money, gifter, gifter, gifter)
    streak_start = np.cumsum(streak) - streak
    first_gift = np.minimum.reduceat(offset_us, streak_start)
    wanted = np.add.reduceat(coins, streak_start)
    join_us = visits.join_s[gifter] * SECOND_US
    t = (
        today.start_us[visits.session[gifter]]
        + join_us
        + (rng.random(len(gifter)) * (first_gift - join_us)).astype(np.int64)
    )
    buys = (rng.random(len(gifter)) < TOP_UP_SHARE) & (t < window.end_us)
    return coin_purchases(rng, money, visits.user[gifter][buys], t[buys], wanted[buys])


def live_orders(
    rng: np.random.Generator,
    today: Sessions,
    visits: Visits,
    creators: Creators,
    window: Window,
    money: Money,
    ledger: Ledger,
) -> list[Batch]:
    """Checkouts during lives, each sold by a selling host present at that moment."""
    sellers = (today.host >= 0) & creators.sells[today.host]
    audience = np.bincount(visits.session, minlength=len(today))
    attempts = rng.poisson(audience * ORDERS_PER_VISIT * sellers.any(axis=1))
    session = np.repeat(np.arange(len(today)), attempts)
    offset = (rng.random(len(session)) * today.length_s[session] * SECOND_US).astype(np.int64)
    selling = hosts_present_at(today, session, offset) & sellers[session]
    slot = np.argmax(np.where(selling, rng.random(selling.shape), -1.0), axis=1)
    t = today.start_us[session] + offset
    keep = selling.any(axis=1) & (t < window.end_us)
    seller = today.host[session, slot]
    session_id = today.ids.gather(session[keep])
    return orders(rng, money, creators, ledger, t[keep], seller[keep], session_id)
