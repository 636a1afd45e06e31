"""Small tables kept up to date by ingest, so a run reads one number where it would read months.

Each is written in the same ingest batch as the raw rows it sums, keyed by the sealed file the
rows came from (`_file`), so an interrupted load is rolled back from them exactly as from the
raw tables. A reader adds up the rows of a key (`GROUP BY`): there is one row per key and file.
"""

from __future__ import annotations

EGRESS_BY_DAY = "egress_by_day"
SESSION_USAGE_END = "session_usage_end"
EVENT_DAYS = "event_days"

# Event types whose days draw the models' calendar as they are (one day per event); sessions,
# orders and refunds count on the day of their first event, read from their own small tables.
DAY_TABLES = {
    "media_usage": "interval_start",
    "gift_sent": "occurred_at",
    "coins_purchased": "occurred_at",
    "coins_refunded": "occurred_at",
    "gift_failed": "occurred_at",
    "checkout_failed": "occurred_at",
}


def egress_by_day_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {EGRESS_BY_DAY} (
  day Date COMMENT 'UTC day of the usage intervals interval_start',
  _file String COMMENT 'sealed telemetry file the intervals were loaded from',
  egress_bytes UInt64 COMMENT 'egress bytes of those intervals'
)
ENGINE = MergeTree
ORDER BY (day, _file)
COMMENT 'egress per day and file: a month-to-date egress total without reading the month'"""


def session_usage_end_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {SESSION_USAGE_END} (
  session_id String COMMENT 'a session with media usage',
  _file String COMMENT 'sealed telemetry file the intervals were loaded from',
  last_interval_end DateTime64(6, 'UTC') COMMENT 'the latest interval_end of those intervals'
)
ENGINE = MergeTree
ORDER BY (session_id, _file)
COMMENT 'how far each session has reported usage: its span without reading its usage'"""


def event_days_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {EVENT_DAYS} (
  event_type LowCardinality(String) COMMENT 'one of the event types in DAY_TABLES',
  day Date COMMENT 'a UTC day holding at least one loaded event of that type',
  _file String COMMENT 'sealed telemetry file those events were loaded from'
)
ENGINE = MergeTree
ORDER BY (event_type, day, _file)
COMMENT 'days with events per type: the models calendar without scanning the raw tables'"""
