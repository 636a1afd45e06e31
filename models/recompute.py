"""Which mart partitions new or late events make stale, and what window recomputes them.

The marts are stored per partition: `platform_daily` by day, `session_economics` by the day a
session started, `creator_weekly` and `platform_weekly` by week (its Monday). Ingest notes the
days its new events fall on; `dirty_days` turns those touched days, and a few facts read from the
warehouse, into the day keys whose partitions must be rewritten, and `recompute_window` gives the
time window of events that is enough to compute those partitions exactly (docs/models.md,
"Partitions and late events"). Everything here is pure: no warehouse, no files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

DAY = timedelta(days=1)


def week_of(day: date) -> date:
    """The Monday that keys the week holding `day` (docs/metrics.md: weeks start on Monday)."""
    return day - timedelta(days=day.weekday())


def month_of(day: date) -> date:
    return day.replace(day=1)


def day_range(first: date, last: date) -> Iterator[date]:
    """Every day from `first` to `last`, both included."""
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


@dataclass(frozen=True)
class SessionSpan:
    """The days a session can be live on: from its start to the last of its `session_ended`
    events and media usage intervals (a superset of its live time before and after a load)."""

    first_day: date
    last_day: date

    def days(self) -> Iterator[date]:
        return day_range(self.first_day, self.last_day)


@dataclass(frozen=True)
class DirtyFacts:
    """What the warehouse says about the touched days, after the load that touched them."""

    touched: frozenset[date]  # days noted by ingest
    spans: Mapping[str, SessionSpan]  # every session that can be live on a day from `since` on
    touched_sessions: frozenset[str]  # sessions with an event on a touched day, or an order
    egress_by_day: Mapping[date, int]  # egress bytes per interval_start day, whole months
    tier_bounds: tuple[int, ...]  # month-to-date egress bytes where each priced tier ends
    data_days: tuple[date, ...] = ()  # days that give platform_daily its first and last row
    stored_days: frozenset[date] = field(default_factory=frozenset)  # platform_daily stored


def dirty_days(facts: DirtyFacts) -> frozenset[date]:
    """The day keys to rewrite: every day whose platform_daily row, whose sessions' rows, or
    whose week's rows the touched days can change.

    - a touched day itself (its events, counts and usage; ingest also notes the refund days of
      a newly paid order, whose refunds now count);
    - every day of the sessions with an event on a touched day (their live time, hosts and
      share of each day's fixed cost can move);
    - later days of the month whose egress pricing can change (`spill_days`);
    - the start day of every session live on a day whose live time or usage cost changed
      (its share of the fixed cost and its egress cost follow those);
    - days between the first and last data days that have no stored partition yet.
    Weeks are the weeks of these days, so weekly marts follow (see `partition_keys`).
    """
    live = {d for s in facts.touched_sessions if s in facts.spans for d in facts.spans[s].days()}
    spill = spill_days(facts.touched, facts.egress_by_day, facts.tier_bounds)
    cost_days = facts.touched | live | spill
    starts = {
        span.first_day
        for sid, span in facts.spans.items()
        if sid in facts.touched_sessions or any(d in cost_days for d in span.days())
    }
    missing = missing_days(facts.data_days, facts.stored_days)
    return frozenset(cost_days | starts | missing)


def spill_days(
    touched: Iterable[date], egress_by_day: Mapping[date, int], tier_bounds: Iterable[int]
) -> set[date]:
    """Untouched later days of a touched month whose egress cost can change.

    Egress tiers follow the platform's month-to-date egress. New bytes on a touched day shift
    every later interval of the month by at most the touched days' bytes `delta`; a later day
    whose intervals span the cumulative range (before - delta, after) keeps its price unless
    a tier bound lies strictly inside that range. Days with no egress cost nothing either way.
    """
    touched = set(touched)
    bounds = tuple(tier_bounds)
    out: set[date] = set()
    for month in {month_of(d) for d in touched}:
        first = min(d for d in touched if month_of(d) == month)
        cumulative = delta = 0
        for day in sorted(d for d in egress_by_day if month_of(d) == month):
            size = egress_by_day[day]
            before, cumulative = cumulative, cumulative + size
            if day in touched:
                delta += size
            elif day > first and size and _crosses(before - delta, cumulative, bounds):
                out.add(day)
    return out


def _crosses(low: int, high: int, bounds: tuple[int, ...]) -> bool:
    return any(low < bound < high for bound in bounds)


def missing_days(data_days: Iterable[date], stored_days: frozenset[date]) -> set[date]:
    """Days between the first and last data day without a stored platform_daily partition:
    platform_daily has a row for every such day, with its fixed cost, even with no event."""
    data_days = list(data_days)
    if not data_days:
        return set()
    return set(day_range(min(data_days), max(data_days))) - stored_days


@dataclass(frozen=True)
class Plan:
    """The partitions one publish rewrites, and the notes it settles."""

    days: frozenset[date]  # day keys: platform_daily days, session start days, their weeks
    full: bool  # the stored partitions cannot be reused: recompute and replace them all
    data_days: tuple[date, ...]  # sorted days that bound platform_daily (first to last row)
    longest_session_days: int  # the longest session's span, in days (last - first day)
    settles: datetime | None = None  # dirty-day notes up to this time are covered

    @property
    def empty(self) -> bool:
        return not self.days and not self.full

    def only(self, days: Iterable[date]) -> Plan:
        return replace(self, days=frozenset(days))

    def windows(self) -> list[tuple[tuple[datetime, datetime], frozenset[date]]]:
        """The plan's days a week at a time, each week with the window that computes it.

        A week is the most one window holds, a full recompute included, so the memory of a
        recompute follows a week of the platform, never its history; days far apart (a
        refund of a months-old order) are read as separate weeks, not every week between."""
        weeks: dict[date, set[date]] = {}
        for day in self.days:
            weeks.setdefault(week_of(day), set()).add(day)
        return [
            (recompute_window(self.only(days)), frozenset(days))
            for _, days in sorted(weeks.items())
        ]

    def keys(self) -> dict[str, list[date]]:
        return partition_keys(self.days, self.data_days)

    def describe(self) -> str:
        if self.empty:
            return "nothing to recompute"
        what = "every partition" if self.full else "partitions"
        weeks = sorted({week_of(d) for d in self.days})
        return (
            f"{what} of {len(self.days)} days ({format_days(self.days)}) and "
            f"{len(weeks)} week{'' if len(weeks) == 1 else 's'} ({format_days(weeks, step=7)})"
        )


def full_days(data_days: tuple[date, ...], longest_session_days: int) -> frozenset[date]:
    """Every day a mart can hold a row for: a session started on the last data day can put
    a creator's live hours (and so a creator_weekly row) into the days after it."""
    if not data_days:
        return frozenset()
    last = data_days[-1] + timedelta(days=longest_session_days)
    return frozenset(day_range(data_days[0], last))


def recompute_window(plan: Plan) -> tuple[datetime, datetime]:
    """[start, end) of the events enough to compute the plan's partitions exactly.

    With L the longest session in days: a session live on a day D started on D - L or later,
    and its fixed cost share on each of its days needs every session live on those days, which
    ended by D + 2L. Egress tiers need the month's egress before the window, which the
    warehouse keeps per day (models/reads.py). So the window runs from the first week's
    Monday - L to the last week's Sunday + 2L + 1. The models' calendar runs between the first
    and last days holding events in the window, so the window also reaches a data day on
    either side of the platform_daily keys.
    """
    span = timedelta(days=plan.longest_session_days)
    start = week_of(min(plan.days)) - span
    end = week_of(max(plan.days)) + timedelta(days=6) + 2 * span + DAY
    daily = plan.keys()["platform_daily"]
    if daily:
        start = min(start, max(d for d in plan.data_days if d <= daily[0]))
        end = max(end, min(d for d in plan.data_days if d >= daily[-1]) + DAY)
    return midnight(start), midnight(end)


def partition_keys(days: Iterable[date], data_days: tuple[date, ...]) -> dict[str, list[date]]:
    """The partition keys of each mart that rewriting `days` covers. platform_daily only has
    rows from the first to the last data day; the others take every day (or its week)."""
    days = sorted(set(days))
    weeks = sorted({week_of(d) for d in days})
    lo, hi = (data_days[0], data_days[-1]) if data_days else (None, None)
    daily = [d for d in days if lo is not None and lo <= d <= hi]
    return {
        "platform_daily": daily,
        "session_economics": days,
        "creator_weekly": weeks,
        "platform_weekly": weeks,
    }


# The column holding each mart's partition key, and how a row's key is read from it.
KEY_COLUMNS = {
    "platform_daily": "day",
    "session_economics": "started_at",
    "creator_weekly": "week",
    "platform_weekly": "week",
}


def row_keys(name: str, table: pa.Table) -> pa.Array:
    """Each row's partition key as a date: the day, the week, or a session's start day (UTC)."""
    column = pc.cast(table.column(KEY_COLUMNS[name]), pa.date32())
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def split(
    marts: Mapping[str, pa.Table], keys: Mapping[str, list[date]]
) -> dict[str, dict[date, pa.Table]]:
    """Each mart's rows for each of its keys (an empty table for a key with no rows)."""
    out: dict[str, dict[date, pa.Table]] = {}
    for name, table in marts.items():
        column = row_keys(name, table)
        out[name] = {key: table.filter(pc.equal(column, pa.scalar(key))) for key in keys[name]}
    return out


def format_days(days: Iterable[date], step: int = 1) -> str:
    """Days as short runs, `2026-10-01..2026-10-03, 2026-10-09`; step=7 reads weeks."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][-1]).days == step:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        r[0].isoformat() if len(r) == 1 else f"{r[0].isoformat()}..{r[-1].isoformat()}"
        for r in runs
    )


def format_window(window: tuple[datetime, datetime]) -> str:
    """`events from 2026-10-01 to 2026-10-21`."""
    start, end = window
    return f"events from {start.date().isoformat()} to {(end - DAY).date().isoformat()}"


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
