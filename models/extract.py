"""What the models read from the warehouse, as Arrow tables, and the facts that plan a recompute.

Row-level data is pulled only where a model needs event order or time overlap; everything that is
a plain daily count or sum is grouped in ClickHouse, where it is cheapest. Every query reads one
time window, so a recompute of a few days reads those days and what they depend on (see
`models.recompute.recompute_window`); the full window reads everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.dirty_days import pending_dirty_days
from models.recompute import (
    FULL_WINDOW,
    DirtyFacts,
    Plan,
    SessionSpan,
    dirty_days,
    full_days,
    missing_days,
    month_of,
)
from warehouse.registry import ensure_warehouse_schema

START = "{start:DateTime64(6, 'UTC')}"
END = "{end:DateTime64(6, 'UTC')}"


def _within(column: str) -> str:
    return f"{column} >= {START} AND {column} < {END}"


QUERIES: dict[str, str] = {
    # A session belongs to the window it started in (its first session_started).
    "started": f"""
        SELECT session_id, min(occurred_at) AS started_at,
               argMin(creator_ids, occurred_at) AS creator_ids
        FROM raw_session_started GROUP BY session_id HAVING {_within("started_at")}""",
    "ended": f"""
        SELECT session_id, min(occurred_at) AS ended_at
        FROM raw_session_ended WHERE {_within("occurred_at")} GROUP BY session_id""",
    "host_changes": f"""
        SELECT session_id, creator_id, occurred_at AS ts, 'join' AS kind FROM raw_host_joined
        WHERE {_within("occurred_at")}
        UNION ALL
        SELECT session_id, creator_id, occurred_at AS ts, 'leave' AS kind FROM raw_host_left
        WHERE {_within("occurred_at")}""",
    "usage": f"""
        SELECT toString(event_id) AS event_id, session_id, interval_start, interval_end,
               publisher_seconds, viewer_seconds, transcode_seconds, relay_seconds,
               egress_bytes, recording_bytes
        FROM raw_media_usage WHERE {_within("interval_start")}""",
    "gift_shares": f"""
        SELECT occurred_at AS ts, session_id, split.creator_id AS creator_id,
               split.share_minor AS share_minor, currency
        FROM raw_gift_sent ARRAY JOIN splits AS split WHERE {_within("occurred_at")}""",
    "gifts": f"""
        SELECT occurred_at AS ts, session_id, value_minor, platform_fee_minor, currency
        FROM raw_gift_sent WHERE {_within("occurred_at")}""",
    # Orders paid in the window, and those refunded in it (a refund needs its order's amounts).
    "orders": f"""
        SELECT order_id, min(occurred_at) AS ts, argMin(session_id, occurred_at) AS session_id,
               argMin(creator_id, occurred_at) AS creator_id,
               argMin(gross_minor, occurred_at) AS gross_minor,
               argMin(payment_fee_minor, occurred_at) AS payment_fee_minor,
               argMin(commission_minor, occurred_at) AS commission_minor,
               argMin(creator_net_minor, occurred_at) AS creator_net_minor,
               argMin(currency, occurred_at) AS currency
        FROM raw_order_paid GROUP BY order_id
        HAVING {_within("ts")} OR order_id IN (
          SELECT order_id FROM raw_order_refunded WHERE {_within("occurred_at")})""",
    # Refunds in the window, and those of orders paid in it, however much later (a session's
    # figures count its orders' refunds).
    "refunds": f"""
        SELECT order_id, min(occurred_at) AS ts FROM raw_order_refunded GROUP BY order_id
        HAVING {_within("ts")} OR order_id IN (
          SELECT order_id FROM raw_order_paid WHERE {_within("occurred_at")})""",
    "purchases_daily": f"""
        SELECT toDate(occurred_at) AS day, currency, count() AS purchases,
               sum(payment_fee_minor) AS payment_fee_minor, sum(store_fee_minor) AS store_fee_minor
        FROM raw_coins_purchased WHERE {_within("occurred_at")} GROUP BY day, currency""",
    "failures_daily": f"""
        SELECT day, count() AS failed FROM (
          SELECT toDate(occurred_at) AS day FROM raw_gift_failed WHERE {_within("occurred_at")}
          UNION ALL SELECT toDate(occurred_at) AS day FROM raw_checkout_failed
          WHERE {_within("occurred_at")})
        GROUP BY day""",
}


def extract(client: Client, window: tuple[datetime, datetime] = FULL_WINDOW) -> dict[str, pa.Table]:
    """The models' input tables for the events of `window` ([start, end), UTC)."""
    ensure_warehouse_schema(client)
    start, end = window
    params = {"start": start, "end": end}
    return {name: client.query_arrow(sql, parameters=params) for name, sql in QUERIES.items()}


# --- planning a recompute ----------------------------------------------------------------------


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
    rows = client.query(
        """
        SELECT DISTINCT d FROM (
          SELECT toDate(min(occurred_at)) AS d FROM raw_session_started GROUP BY session_id
          UNION ALL SELECT toDate(min(occurred_at)) FROM raw_order_paid GROUP BY order_id
          UNION ALL SELECT toDate(min(occurred_at)) FROM raw_order_refunded GROUP BY order_id
          UNION ALL SELECT DISTINCT toDate(interval_start) FROM raw_media_usage
          UNION ALL SELECT DISTINCT toDate(occurred_at) FROM raw_gift_sent
          UNION ALL SELECT DISTINCT toDate(occurred_at) FROM raw_coins_purchased
          UNION ALL SELECT DISTINCT toDate(occurred_at) FROM raw_gift_failed
          UNION ALL SELECT DISTINCT toDate(occurred_at) FROM raw_checkout_failed)
        ORDER BY d"""
    ).result_rows
    return tuple(r[0] for r in rows)


# A session's span: from its first session_started to the last of its session_ended events and
# media usage intervals (from `since` on; a session ending before `since` is left out).
_SPANS = """
SELECT f.session_id AS session_id, toDate(f.first_at) AS first_day,
       toDate(greatest(f.first_at, l.last_at)) AS last_day
FROM (SELECT session_id, min(occurred_at) AS first_at FROM raw_session_started
      GROUP BY session_id) AS f
LEFT JOIN (
  SELECT session_id, max(t) AS last_at FROM (
    SELECT session_id, occurred_at AS t FROM raw_session_ended
    WHERE occurred_at >= {since:DateTime64(6, 'UTC')}
    UNION ALL SELECT session_id, interval_end FROM raw_media_usage
    WHERE interval_end >= {since:DateTime64(6, 'UTC')})
  GROUP BY session_id) AS l USING (session_id)
WHERE last_day >= toDate({since:DateTime64(6, 'UTC')})"""


def session_spans(client: Client, since: date) -> dict[str, SessionSpan]:
    """Spans of the sessions that can be live on `since` or later."""
    rows = client.query(_SPANS, parameters={"since": _midnight(since)}).result_rows
    return {r[0]: SessionSpan(r[1], r[2]) for r in rows}


def longest_session_days(client: Client) -> int:
    """The longest session's span in days (0 when every session starts and ends on one day):
    how far a recompute window reaches around the days it rewrites."""
    rows = client.query(
        f"SELECT max(dateDiff('day', first_day, last_day)) FROM ({_SPANS})",
        parameters={"since": _midnight(date(1970, 1, 1))},
    ).result_rows
    return int(rows[0][0] or 0) if rows else 0


_ON_DAYS = "has({days:Array(Date)}, toDate(occurred_at))"


def touched_sessions(client: Client, days: frozenset[date]) -> dict[str, date]:
    """Sessions whose figures events on `days` can change, with the day each started: sessions
    with a start, end, host change, usage or gift on those days, and the sessions of orders
    paid or refunded on them."""
    session_events = " UNION ALL ".join(
        f"SELECT session_id FROM raw_{t} WHERE {_ON_DAYS}"
        for t in ("session_started", "session_ended", "host_joined", "host_left", "gift_sent")
    )
    rows = client.query(
        f"""
        SELECT session_id, toDate(min(occurred_at)) FROM raw_session_started
        WHERE session_id IN (
          {session_events}
          UNION ALL SELECT session_id FROM raw_media_usage
          WHERE {_ON_DAYS} OR has({{days:Array(Date)}}, toDate(interval_start))
          UNION ALL SELECT assumeNotNull(session_id) FROM raw_order_paid
          WHERE session_id IS NOT NULL AND order_id IN (
            SELECT order_id FROM raw_order_paid WHERE {_ON_DAYS}
            UNION ALL SELECT order_id FROM raw_order_refunded WHERE {_ON_DAYS}))
        GROUP BY session_id""",
        parameters={"days": sorted(days)},
    ).result_rows
    return {r[0]: r[1] for r in rows}


def egress_by_day(client: Client, months: set[date]) -> dict[date, int]:
    """Egress bytes per day of interval_start, over the whole of each month in `months`."""
    rows = client.query(
        "SELECT toDate(interval_start) AS day, sum(egress_bytes) FROM raw_media_usage "
        "WHERE has({months:Array(Date)}, toStartOfMonth(interval_start)) GROUP BY day",
        parameters={"months": sorted(months)},
    ).result_rows
    return {r[0]: int(r[1]) for r in rows}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
