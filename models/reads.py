"""What the models read from the warehouse: compact aggregates of one time window, made by
ClickHouse from the raw rows. No raw event reaches Python or DuckDB in bulk.

Per window the warehouse returns one row per session (its start, end and usage), per session
and day (usage priced per interval, gifts), per creator, session and hour (earnings), and per
day (orders, refunds, purchases, failures); the metric logic over them is models/sql.py.

Usage is priced here, interval by interval, because every component is truncated to the
pico-unit per interval (docs/models.md, "Money"): a sum of intervals priced one by one is
not the price of their sum. Egress tiers follow the month-to-date egress of the platform, so
each interval's cumulative egress is the month's egress before its day (one number per day,
kept by ingest in `egress_by_day`) plus a running sum within the day, in order of
(`interval_start`, `event_id`).
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from models.cost_model import CostModel
from warehouse.aggregates import EGRESS_BY_DAY
from warehouse.raw_tables import raw_table

START = "{start:DateTime64(6, 'UTC')}"
END = "{end:DateTime64(6, 'UTC')}"
LAST_TIER = 2**62  # the last egress tier has no bound: past any month's egress
MONEY = "Decimal(38, 0)"  # exact integer sums, as Arrow can carry them


def _within(column: str) -> str:
    return f"{column} >= {START} AND {column} < {END}"


def _us(column: str) -> str:
    """Seconds as integer microseconds, rounded half away from zero (they are not negative)."""
    return f"toInt128(floor({column} * 1000000 + 0.5))"


def _per_minute(column: str, price: str) -> str:
    return f"sum(intDiv({_us(column)} * {{{price}:Int64}}, 60000000))"


_EGRESS_AFTER = "b.egress_before + i.day_egress_after"
_TIER_COST = (
    f"intDiv(greatest(0, least({_EGRESS_AFTER}, t.2) - greatest({_EGRESS_AFTER} - "
    "i.egress_bytes, t.1)) * t.3, 1000000000)"
)

# Sessions, presence and usage ---------------------------------------------------------------

STARTED = f"""
SELECT session_id, min(occurred_at) AS started_at, argMin(creator_ids, occurred_at) AS creator_ids
FROM {raw_table("session_started")} GROUP BY session_id HAVING {_within("started_at")}"""

ENDED = f"""
SELECT session_id, min(occurred_at) AS ended_at
FROM {raw_table("session_ended")} WHERE {_within("occurred_at")} GROUP BY session_id"""

HOST_CHANGES = f"""
SELECT session_id, creator_id, occurred_at AS ts, 'join' AS kind FROM {raw_table("host_joined")}
WHERE {_within("occurred_at")}
UNION ALL
SELECT session_id, creator_id, occurred_at AS ts, 'leave' AS kind FROM {raw_table("host_left")}
WHERE {_within("occurred_at")}"""

# One row per session and day of interval_start: its intervals priced one by one.
USAGE = f"""
WITH
  egress_days AS (
    SELECT day, sum(egress_bytes) AS egress FROM {EGRESS_BY_DAY}
    WHERE day >= toStartOfMonth(toDate({START})) AND day < toDate({END}) + 1 GROUP BY day),
  before AS (
    SELECT day, toInt128(sum(egress) OVER (PARTITION BY toStartOfMonth(day) ORDER BY day
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) - egress AS egress_before
    FROM egress_days),
  intervals AS (
    SELECT session_id, toDate(interval_start) AS day, interval_end,
      toInt128(egress_bytes) AS egress_bytes, recording_bytes,
      publisher_seconds, viewer_seconds, transcode_seconds, relay_seconds,
      sum(toInt128(egress_bytes)) OVER (PARTITION BY toDate(interval_start)
        ORDER BY interval_start, toString(event_id)
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS day_egress_after
    FROM {raw_table("media_usage")} WHERE {_within("interval_start")})
SELECT i.day AS day, i.session_id AS session_id, max(i.interval_end) AS last_usage_end,
  toDecimal128(sum({_us("i.viewer_seconds")}), 0) AS viewer_us,
  toDecimal128({_per_minute("i.publisher_seconds", "publisher_minute")}, 0) AS publish_cost,
  toDecimal128({_per_minute("i.viewer_seconds", "viewer_minute")}, 0) AS delivery_cost,
  toDecimal128({_per_minute("i.transcode_seconds", "transcode_minute")}, 0) AS transcode_cost,
  toDecimal128({_per_minute("i.relay_seconds", "relay_minute")}, 0) AS relay_cost,
  toDecimal128(sum(arraySum(t -> {_TIER_COST},
    arrayZip({{tier_from:Array(Int64)}}, {{tier_up_to:Array(Int64)}}, {{tier_pico:Array(Int64)}}))),
    0) AS egress_cost,
  toDecimal128(sum(intDiv(toInt128(i.recording_bytes) * {{recording_gb:Int64}}, 1000000000)), 0)
    AS recording_cost
FROM intervals AS i LEFT JOIN before AS b ON b.day = i.day
GROUP BY i.day, i.session_id
SETTINGS join_use_nulls = 0"""

# Money ---------------------------------------------------------------------------------------

GIFTS = f"""
SELECT toDate(occurred_at) AS day, session_id, currency, count() AS gifts,
  toDecimal128(sum(value_minor), 0) AS value_minor,
  toDecimal128(sum(platform_fee_minor), 0) AS platform_fee_minor
FROM {raw_table("gift_sent")} WHERE {_within("occurred_at")}
GROUP BY day, session_id, currency"""

# Orders paid in the window, and those refunded in it (a refund needs its order's amounts);
# refunds in the window, and those of orders paid in it however much later (a session's
# figures count its orders' refunds). An order or refund is its first event.
_ORDERS_AND_REFUNDS = f"""
  candidates AS (
    SELECT order_id FROM {raw_table("order_paid")} WHERE {_within("occurred_at")}
    UNION DISTINCT
    SELECT order_id FROM {raw_table("order_refunded")} WHERE {_within("occurred_at")}),
  orders AS (
    SELECT order_id, min(occurred_at) AS ts, argMin(session_id, occurred_at) AS session_id,
      argMin(creator_id, occurred_at) AS creator_id, argMin(gross_minor, occurred_at) AS gross,
      argMin(payment_fee_minor, occurred_at) AS payment_fee,
      argMin(commission_minor, occurred_at) AS commission,
      argMin(creator_net_minor, occurred_at) AS net, argMin(currency, occurred_at) AS currency
    FROM {raw_table("order_paid")} WHERE order_id IN (SELECT order_id FROM candidates)
    GROUP BY order_id
    HAVING {_within("ts")} OR order_id IN (
      SELECT order_id FROM {raw_table("order_refunded")} WHERE {_within("occurred_at")})),
  refunds AS (
    SELECT order_id, min(occurred_at) AS ts FROM {raw_table("order_refunded")}
    WHERE order_id IN (SELECT order_id FROM candidates) GROUP BY order_id
    HAVING {_within("ts")} OR order_id IN (
      SELECT order_id FROM {raw_table("order_paid")} WHERE {_within("occurred_at")})),
  refunded AS (
    SELECT r.ts AS ts, o.order_id AS order_id, o.session_id AS session_id,
      o.creator_id AS creator_id, o.payment_fee AS payment_fee, o.commission AS commission,
      o.net AS net, o.currency AS currency
    FROM refunds AS r INNER JOIN orders AS o ON o.order_id = r.order_id)"""

ORDERS = f"""
WITH {_ORDERS_AND_REFUNDS}
SELECT toDate(ts) AS day, session_id, currency, count() AS orders,
  toDecimal128(sum(gross), 0) AS gross_minor, toDecimal128(sum(commission), 0) AS commission_minor,
  toDecimal128(sum(net), 0) AS creator_net_minor
FROM orders GROUP BY day, session_id, currency"""

# Every refund in the set, its order's amounts when the order is known: an unknown order's
# refund only marks its day (it takes nothing back until the order arrives).
REFUNDS = f"""
WITH {_ORDERS_AND_REFUNDS}
SELECT toDate(r.ts) AS day, o.session_id AS session_id, o.currency AS currency,
  toDecimal128(sum(o.payment_fee), 0) AS payment_fee_minor,
  toDecimal128(sum(o.commission), 0) AS commission_minor,
  toDecimal128(sum(o.net), 0) AS creator_net_minor
FROM refunds AS r LEFT JOIN orders AS o ON o.order_id = r.order_id
GROUP BY day, session_id, currency
SETTINGS join_use_nulls = 1"""

# An earning event: a gift share > 0 for a creator, or an order where they are the seller.
# Refunds take the order's net back on the refund's day and are not earning events.
EARNINGS = f"""
WITH {_ORDERS_AND_REFUNDS},
  parts AS (
    SELECT split.creator_id AS creator_id, CAST(session_id AS Nullable(String)) AS session_id,
      occurred_at AS ts, currency, toInt128(split.share_minor) AS amount,
      split.share_minor > 0 AS is_earning
    FROM {raw_table("gift_sent")} ARRAY JOIN splits AS split WHERE {_within("occurred_at")}
    UNION ALL
    SELECT creator_id, session_id, ts, currency, toInt128(net), true FROM orders
    UNION ALL
    SELECT creator_id, session_id, ts, currency, -toInt128(net), false FROM refunded)
SELECT creator_id, session_id, toDateTime64(toStartOfHour(ts), 6, 'UTC') AS hour, currency,
  toDecimal128(sum(amount), 0) AS amount_minor, countIf(is_earning) AS earning_events,
  minIfOrNull(ts, is_earning) AS first_earning_at
FROM parts GROUP BY creator_id, session_id, hour, currency"""

# A refunded purchase's store fee comes back from the store on the refund's day; the card
# processor keeps its fee.
PURCHASES = f"""
SELECT day, currency, toUInt64(sum(n)) AS purchases,
  toDecimal128(sum(payment_fee), 0) AS payment_fee_minor,
  toDecimal128(sum(store_fee), 0) AS store_fee_minor
FROM (
  SELECT toDate(occurred_at) AS day, currency, 1 AS n, toInt128(payment_fee_minor) AS payment_fee,
    toInt128(store_fee_minor) AS store_fee
  FROM {raw_table("coins_purchased")} WHERE {_within("occurred_at")}
  UNION ALL
  SELECT toDate(occurred_at), currency, 0, toInt128(0), -toInt128(store_fee_returned_minor)
  FROM {raw_table("coins_refunded")} WHERE {_within("occurred_at")})
GROUP BY day, currency"""

FAILURES = f"""
SELECT day, count() AS failed FROM (
  SELECT toDate(occurred_at) AS day FROM {raw_table("gift_failed")} WHERE {_within("occurred_at")}
  UNION ALL SELECT toDate(occurred_at) AS day FROM {raw_table("checkout_failed")}
  WHERE {_within("occurred_at")})
GROUP BY day"""

QUERIES: dict[str, str] = {
    "started": STARTED,
    "ended": ENDED,
    "host_changes": HOST_CHANGES,
    "usage": USAGE,
    "gifts": GIFTS,
    "orders": ORDERS,
    "refunds": REFUNDS,
    "earnings_hourly": EARNINGS,
    "purchases": PURCHASES,
    "failures": FAILURES,
}


def price_parameters(model: CostModel) -> dict[str, object]:
    """The cost model's prices as the usage query binds them (integer pico-units)."""
    prices = model.pico_prices
    tiers = model.egress_tiers
    return {
        "publisher_minute": prices["publisher_minute"],
        "viewer_minute": prices["viewer_minute"],
        "transcode_minute": prices["transcode_minute"],
        "relay_minute": prices["relay_minute"],
        "recording_gb": model.recording_pico_per_gb,
        "tier_from": [0] + [t.up_to_bytes for t in tiers[:-1]],
        "tier_up_to": [t.up_to_bytes if t.up_to_bytes is not None else LAST_TIER for t in tiers],
        "tier_pico": [t.pico_per_gb for t in tiers],
    }


def read_window(
    client: Client, window: tuple[datetime, datetime], model: CostModel
) -> dict[str, pa.Table]:
    """The models' input aggregates for the events of `window` ([start, end), UTC)."""
    start, end = window
    params = {"start": start, "end": end, **price_parameters(model)}
    return {name: client.query_arrow(sql, parameters=params) for name, sql in QUERIES.items()}
