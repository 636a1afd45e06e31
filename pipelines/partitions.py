"""Daily partitions of the marts, and the run that recomputes the days a load made stale.

A mart partition key is a UTC day: platform_daily's row of that day, the sessions started that
day, and the week (creator_weekly, platform_weekly) holding it. Ingest records in its
materialization which days are dirty (their partitions stale); `creator-econ run` and the marts
sensor read that record (never the warehouse) to launch one run over their span.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import dagster as dg

from models.recompute import Plan, day_range, format_days

# Ingest accepts events from 2000 on; runtime telemetry is dated today (end_offset=1 keeps the
# current day's partition). A day dated later is still recomputed by a dirty-days run, which
# Dagster records under the last partition.
DAILY = dg.DailyPartitionsDefinition(start_date="2000-01-01", end_offset=1)
MARTS_OP = "publish_marts"
# The run tags that make one run cover a range of partitions (a single-run backfill).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
RECOMPUTE_TAG = "creator_econ/recompute"  # what a marts run rewrites, in words


def plan_metadata(plan: Plan) -> dict[str, object]:
    """What the ingest materialization says about the marts: the dirty days to recompute."""
    days = sorted(plan.days)
    return {
        "marts_dirty_days": len(days),
        "marts_dirty_first": days[0].isoformat() if days else "",
        "marts_dirty_last": days[-1].isoformat() if days else "",
        "marts_dirty": format_days(days) or "none",
        "marts_full_recompute": plan.full,
    }


@dataclass(frozen=True)
class MartsRun:
    """A marts run over the span of the dirty days; it rewrites exactly the dirty ones."""

    first: date
    last: date
    days: int
    text: str
    full: bool

    def tags(self) -> dict[str, str]:
        first, last = partition_range(self.first, self.last)
        return {RANGE_START_TAG: first, RANGE_END_TAG: last}

    @staticmethod
    def run_config() -> dict:
        return {"ops": {MARTS_OP: {"config": {"dirty_only": True}}}}

    def describe(self) -> str:
        what = "every day (first publish, or new prices or models)" if self.full else "dirty days"
        return f"{what}: {self.days} ({self.text})"


def marts_run(metadata: Mapping[str, object]) -> MartsRun | None:
    """The marts run an ingest materialization asks for, or None when no day is dirty."""

    def value(key: str):
        raw = metadata.get(key)
        return getattr(raw, "value", raw)

    if not value("marts_dirty_days"):
        return None
    return MartsRun(
        first=date.fromisoformat(value("marts_dirty_first")),
        last=date.fromisoformat(value("marts_dirty_last")),
        days=int(value("marts_dirty_days")),
        text=str(value("marts_dirty")),
        full=bool(value("marts_full_recompute")),
    )


def partition_range(first: date, last: date) -> tuple[str, str]:
    """The run's partition range: the days' span, within the partitions that exist."""
    lowest = date.fromisoformat(DAILY.get_first_partition_key())
    highest = date.fromisoformat(DAILY.get_last_partition_key())
    first, last = min(max(first, lowest), highest), min(max(last, lowest), highest)
    return first.isoformat(), last.isoformat()


def range_days(partition_key_range: dg.PartitionKeyRange) -> list[date]:
    """The days of a run's partition range."""
    return list(
        day_range(
            date.fromisoformat(partition_key_range.start),
            date.fromisoformat(partition_key_range.end),
        )
    )
