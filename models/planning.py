"""Planning a recompute: which mart partitions the next publish rewrites, from facts read in the
warehouse (the rules themselves are pure functions in models/recompute.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from clickhouse_connect.driver.client import Client

from ingest.dirty_days import pending_dirty_days
from models.recompute import (
    DirtyFacts,
    Plan,
    SessionSpan,
    dirty_days,
    full_days,
    midnight,
    missing_days,
    month_of,
)
from warehouse import aggregates
from warehouse.aggregates import EVENT_DAYS, SESSION_USAGE_END
from warehouse.registry import ensure_warehouse_schema

# The days of the events that draw the models' calendar (the `days` step of models/sql.py), each
# dated as the models date it. Sessions, orders and refunds count on the day of their first
# event (their tables hold one or two rows per id); the other types' days are kept by ingest.
DATA_DAYS = f"""
SELECT DISTINCT d FROM (
  SELECT toDate(min(occurred_at)) AS d FROM raw_session_started GROUP BY session_id
  UNION ALL SELECT toDate(min(occurred_at)) FROM raw_order_paid GROUP BY order_id
  UNION ALL SELECT toDate(min(occurred_at)) FROM raw_order_refunded GROUP BY order_id
  UNION ALL SELECT DISTINCT day FROM {EVENT_DAYS})
ORDER BY d"""

# A session's span: from its first session_started to the last of its session_ended events and
# media usage intervals (from `since` on; a session ending before `since` is left out). How far
# each session reported usage is kept by ingest.
SESSION_SPANS = f"""
SELECT f.session_id AS session_id, toDate(f.first_at) AS first_day,
       toDate(greatest(f.first_at, l.last_at)) AS last_day
FROM (SELECT session_id, min(occurred_at) AS first_at FROM raw_session_started
      GROUP BY session_id) AS f
LEFT JOIN (
  SELECT session_id, max(t) AS last_at FROM (
    SELECT session_id, occurred_at AS t FROM raw_session_ended
    WHERE occurred_at >= {{since:DateTime64(6, 'UTC')}}
    UNION ALL SELECT session_id, last_interval_end FROM {SESSION_USAGE_END}
    WHERE last_interval_end >= {{since:DateTime64(6, 'UTC')}})
  GROUP BY session_id) AS l USING (session_id)
WHERE last_day >= toDate({{since:DateTime64(6, 'UTC')}})"""

LONGEST_SESSION_DAYS = f"SELECT max(dateDiff('day', first_day, last_day)) FROM ({SESSION_SPANS})"

_ON_DAYS = "toDate(occurred_at) IN {days:Array(Date)}"
_SESSION_EVENTS = " UNION ALL ".join(
    f"SELECT session_id FROM raw_{t} WHERE {_ON_DAYS}"
    for t in ("session_started", "session_ended", "host_joined", "host_left", "gift_sent")
)
# Sessions whose figures events on the bound days can change, with the day each started.
TOUCHED_SESSIONS = f"""
SELECT session_id, toDate(min(occurred_at)) FROM raw_session_started
WHERE session_id IN (
  {_SESSION_EVENTS}
  UNION ALL SELECT session_id FROM raw_media_usage WHERE {_ON_DAYS}
  UNION ALL SELECT session_id FROM raw_media_usage
  WHERE toDate(interval_start) IN {{days:Array(Date)}}
  UNION ALL SELECT assumeNotNull(session_id) FROM raw_order_paid
  WHERE session_id IS NOT NULL AND order_id IN (
    SELECT order_id FROM raw_order_paid WHERE {_ON_DAYS}
    UNION ALL SELECT order_id FROM raw_order_refunded WHERE {_ON_DAYS}))
GROUP BY session_id"""

EGRESS_BY_DAY = f"""
SELECT day, sum(egress_bytes) FROM {aggregates.EGRESS_BY_DAY}
WHERE toStartOfMonth(day) IN {{months:Array(Date)}} GROUP BY day"""


def plan_refresh(
    client: Client,
    stored_days: frozenset[date] | None,
    tier_bounds: tuple[int, ...],
    requested: Iterable[date] | None = None,
) -> Plan:
    """What the next publish rewrites.

    `stored_days` are the days of the stored platform_daily partitions, or None when nothing
    stored can be reused (first publish, another cost model): then every partition. Otherwise
    the days the dirty-day notes make stale (`models.recompute.dirty_days`), or, with
    `requested`, those days instead; the notes are then settled only if they are covered.
    """
    ensure_warehouse_schema(client)
    touched, noted_until = pending_dirty_days(client)
    days_with_data = data_days(client)
    longest = longest_session_days(client)
    possible = full_days(days_with_data, longest)
    if stored_days is None:
        return Plan(possible, True, days_with_data, longest, noted_until)
    dirty = _dirty(client, touched, days_with_data, stored_days, tier_bounds)
    if requested is None:
        return Plan(dirty, False, days_with_data, longest, noted_until)
    days = frozenset(requested) & possible
    return Plan(days, False, days_with_data, longest, noted_until if dirty <= days else None)


def _dirty(
    client: Client,
    touched: frozenset[date],
    days_with_data: tuple[date, ...],
    stored_days: frozenset[date],
    tier_bounds: tuple[int, ...],
) -> frozenset[date]:
    if not touched:
        return frozenset(missing_days(days_with_data, stored_days))
    started = touched_sessions(client, touched)
    since = min([*touched, *started.values()])
    facts = DirtyFacts(
        touched=touched,
        spans=session_spans(client, since),
        touched_sessions=frozenset(started),
        egress_by_day=egress_by_day(client, {month_of(d) for d in touched}),
        tier_bounds=tier_bounds,
        data_days=days_with_data,
        stored_days=stored_days,
    )
    return dirty_days(facts)


def data_days(client: Client) -> tuple[date, ...]:
    """The days of the events that draw the models' calendar (the `days` step of models/sql.py),
    each dated as the models date it: platform_daily has a row for every day between the first
    and the last of them."""
    return tuple(r[0] for r in client.query(DATA_DAYS).result_rows)


def session_spans(client: Client, since: date) -> dict[str, SessionSpan]:
    """Spans of the sessions that can be live on `since` or later."""
    rows = client.query(SESSION_SPANS, parameters={"since": midnight(since)}).result_rows
    return {r[0]: SessionSpan(r[1], r[2]) for r in rows}


def longest_session_days(client: Client) -> int:
    """The longest session's span in days (0 when every session starts and ends on one day):
    how far a recompute window reaches around the days it rewrites."""
    since = {"since": midnight(date(1970, 1, 1))}
    rows = client.query(LONGEST_SESSION_DAYS, parameters=since).result_rows
    return int(rows[0][0] or 0) if rows else 0


def touched_sessions(client: Client, days: frozenset[date]) -> dict[str, date]:
    """Sessions whose figures events on `days` can change, with the day each started: sessions
    with a start, end, host change, usage or gift on those days, and the sessions of orders
    paid or refunded on them."""
    rows = client.query(TOUCHED_SESSIONS, parameters={"days": sorted(days)}).result_rows
    return {r[0]: r[1] for r in rows}


def egress_by_day(client: Client, months: set[date]) -> dict[date, int]:
    """Egress bytes per day of interval_start, over the whole of each month in `months`."""
    rows = client.query(EGRESS_BY_DAY, parameters={"months": sorted(months)}).result_rows
    return {r[0]: int(r[1]) for r in rows}
