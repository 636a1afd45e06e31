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

from simulator.cashflow import (
    Batch,
    Ledger,
    offline_coin_purchases,
    offline_orders,
    payouts,
)
from simulator.lines import event_lines
from simulator.live import live_events
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
) -> SimulationSummary:
    """Simulates `days` UTC days from `start` and writes sealed files under `out_dir`."""
    if creators < 1 or days < 1:
        raise ValueError("creators and days must be at least 1")
    if not 0.0 <= duplicate_rate <= 1.0:
        raise ValueError("duplicate_rate must be between 0 and 1")
    if max_file_bytes < 1:
        raise ValueError("max_file_bytes must be positive")
    say = progress or (lambda _line: None)
    rng = np.random.default_rng(seed)
    window = Window(start, days)
    population = draw_creators(rng, creators)
    sessions = plan_sessions(rng, population, window)
    say(f"creators: {creators:,}; sessions planned: {len(sessions):,}")

    ledger = Ledger(population.count, window)
    with EventSink(Path(out_dir), source, max_file_bytes, duplicate_rate, rng) as sink:
        for day in range(days):
            batches = _day_events(rng, population, sessions, ledger, day)
            lines = [
                event_lines(kind, frame, source, rng) for kind, frame in batches if frame.height
            ]
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
    creators: Creators,
    sessions: Sessions,
    ledger: Ledger,
    day: int,
) -> list[Batch]:
    """Events of the sessions starting on `day`, and the day's commerce outside lives.

    Nothing here happens before the day starts, which is what lets the sink write in order.
    """
    batches = live_events(rng, sessions.of_day(day), creators, ledger.window, ledger)
    batches += offline_orders(rng, creators, ledger, day)
    batches.append(offline_coin_purchases(rng, creators, ledger.window, day))
    batches += payouts(rng, ledger, day)
    return batches
