"""What the models read from the warehouse, as Arrow tables (planning a recompute: planning.py).

Row-level data is pulled only where a model needs event order or time overlap; everything that is
a plain daily count or sum is grouped in ClickHouse, where it is cheapest. Every query reads one
time window, so a recompute of a few days reads those days and what they depend on (see
`models.recompute.recompute_window`); the full window reads everything.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from models.recompute import FULL_WINDOW
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
