"""A seeded simulation of the platform that writes telemetry exactly as the live runtime does.

It stands in for production telemetry in development, tests and benchmarks: a creator
population with heavy-tailed audiences streams on most days for a month, viewers gift and
buy, creators sell and are paid weekly, and every event goes into sealed files per
docs/telemetry.md, including at-least-once redeliveries. The same arguments always
produce byte-identical files.

Events are generated a day at a time (the sessions starting that day with everything that
happens in them, plus the day's commerce outside lives) and written in time order, so
memory follows the busiest day rather than the whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from live_runtime.policy import Policy, load_policy
from simulator.cashflow import (
    Batch,
    CoinReversals,
    Ledger,
    offline_coin_purchases,
    offline_orders,
    payouts,
)
from simulator.lines import event_lines
from simulator.live import GIFT_COINS, live_events
from simulator.money import Money
from simulator.output import EventSink
from simulator.world import Creators, Sessions, Window, draw_creators, plan_sessions


@dataclass(frozen=True)
class SimulationSummary:
    """What a run wrote; events and by_type count lines, redeliveries included."""

    events: int
    files: int
    bytes: int
    creators: int
    sessions: int
    by_type: dict[str, int]
    duplicates: int = 0


def simulate(
    out_dir: Path,
    creators: int = 2000,
    days: int = 30,
    start: date = date(2026, 10, 1),
    seed: int = 7,
    duplicate_rate: float = 0.0005,
    source: str = "sim",
    max_file_bytes: int = 64 * 1024 * 1024,
    progress: Callable[[str], None] | None = None,
    policy: Policy | None = None,
) -> SimulationSummary:
    """Simulates `days` UTC days from `start` and writes sealed files under `out_dir`.

    Money follows `policy`, the runtime's shipped policy unless another is given.
    """
    if creators < 1 or days < 1:
        raise ValueError("creators and days must be at least 1")
    if not 0.0 <= duplicate_rate <= 1.0:
        raise ValueError("duplicate_rate must be between 0 and 1")
    if max_file_bytes < 1:
        raise ValueError("max_file_bytes must be positive")
    policy = policy or load_policy()
    if int(GIFT_COINS.max()) > policy.max_gift_coins:
        raise ValueError(f"the policy refuses gifts over {policy.max_gift_coins:,} coins")
    say = progress or (lambda _line: None)
    rng = np.random.default_rng(seed)
    # Payouts, coin reversals and redeliveries draw from generators of their own: who is paid
    # depends on every amount earned, so a change to a money rule must not redraw the rest of
    # the world, and reversals (which come last) leave every other event as it was.
    payout_rng, sink_rng, reversal_rng = rng.spawn(3)
    window = Window(start, days)
    population = draw_creators(rng, creators)
    sessions = plan_sessions(rng, population, window)
    say(f"creators: {creators:,}; sessions planned: {len(sessions):,}")

    money = Money(policy, population.count)
    ledger = Ledger(population.count, window, money)
    reversals = CoinReversals(reversal_rng, window)
    with EventSink(Path(out_dir), source, max_file_bytes, duplicate_rate, sink_rng) as sink:
        for day in range(days):
            batches = _day_events(rng, money, population, sessions, ledger, day)
            lines = [
                event_lines(kind, frame, source, rng) for kind, frame in batches if frame.height
            ]
            kind, reversed_ = reversals.of_day(batches, day)
            if reversed_.height:
                lines.append(event_lines(kind, reversed_, source, reversal_rng))
            paid = payouts(payout_rng, ledger, day, money.currency)
            lines += [event_lines(k, f, source, payout_rng) for k, f in paid if f.height]
            ledger.close_day(day)
            sink.push(pl.collect_all(lines), window.day_start_us(day + 1))
            say(
                f"day {day + 1}/{days} ({start + timedelta(days=day)}): "
                f"wrote {sink.events:,} events, {sink.bytes / 1e6:,.0f} MB"
            )
        sink.close()
    say(f"done: {sink.events:,} events in {sink.files:,} files, {sink.bytes / 1e6:,.0f} MB")
    return SimulationSummary(
        events=sink.events,
        files=sink.files,
        bytes=sink.bytes,
        creators=creators,
        sessions=len(sessions),
        by_type=sink.by_type,
        duplicates=sink.duplicates,
    )


def _day_events(
    rng: np.random.Generator,
    money: Money,
    creators: Creators,
    sessions: Sessions,
    ledger: Ledger,
    day: int,
) -> list[Batch]:
    """Events of the sessions starting on `day`, and the day's commerce outside lives.

    Nothing here happens before the day starts, which is what lets the sink write in order.
    """
    batches = live_events(rng, sessions.of_day(day), creators, ledger.window, money, ledger)
    batches += offline_orders(rng, money, creators, ledger, day)
    batches.append(offline_coin_purchases(rng, money, creators, ledger.window, day))
    return batches
