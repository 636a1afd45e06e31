"""What the models read from the warehouse, as Arrow tables.

Row-level data is pulled only where a model needs event order or time overlap; everything that is
a plain daily count or sum is grouped in ClickHouse, where it is cheapest.
"""

from __future__ import annotations

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.schema import ensure_schema

QUERIES: dict[str, str] = {
    "started": """
        SELECT session_id, min(occurred_at) AS started_at,
               argMin(creator_ids, occurred_at) AS creator_ids
        FROM raw_session_started GROUP BY session_id""",
    "ended": """
        SELECT session_id, min(occurred_at) AS ended_at
        FROM raw_session_ended GROUP BY session_id""",
    "host_changes": """
        SELECT session_id, creator_id, occurred_at AS ts, 'join' AS kind FROM raw_host_joined
        UNION ALL
        SELECT session_id, creator_id, occurred_at AS ts, 'leave' AS kind FROM raw_host_left""",
    "usage": """
        SELECT toString(event_id) AS event_id, session_id, interval_start, interval_end,
               publisher_seconds, viewer_seconds, transcode_seconds, relay_seconds,
               egress_bytes, recording_bytes
        FROM raw_media_usage""",
    "gift_shares": """
        SELECT occurred_at AS ts, session_id, split.creator_id AS creator_id,
               split.share_minor AS share_minor, currency
        FROM raw_gift_sent ARRAY JOIN splits AS split""",
    "gifts": """
        SELECT occurred_at AS ts, session_id, value_minor, platform_fee_minor, currency
        FROM raw_gift_sent""",
    "orders": """
        SELECT order_id, min(occurred_at) AS ts, argMin(session_id, occurred_at) AS session_id,
               argMin(creator_id, occurred_at) AS creator_id,
               argMin(gross_minor, occurred_at) AS gross_minor,
               argMin(payment_fee_minor, occurred_at) AS payment_fee_minor,
               argMin(commission_minor, occurred_at) AS commission_minor,
               argMin(creator_net_minor, occurred_at) AS creator_net_minor,
               argMin(currency, occurred_at) AS currency
        FROM raw_order_paid GROUP BY order_id""",
    "refunds": """
        SELECT order_id, min(occurred_at) AS ts FROM raw_order_refunded GROUP BY order_id""",
    "purchases_daily": """
        SELECT toDate(occurred_at) AS day, currency, count() AS purchases,
               sum(payment_fee_minor) AS payment_fee_minor, sum(store_fee_minor) AS store_fee_minor
        FROM raw_coins_purchased GROUP BY day, currency""",
    "failures_daily": """
        SELECT day, count() AS failed FROM (
          SELECT toDate(occurred_at) AS day FROM raw_gift_failed
          UNION ALL SELECT toDate(occurred_at) AS day FROM raw_checkout_failed)
        GROUP BY day""",
}


def extract(client: Client) -> dict[str, pa.Table]:
    ensure_schema(client)
    return {name: client.query_arrow(sql) for name, sql in QUERIES.items()}
