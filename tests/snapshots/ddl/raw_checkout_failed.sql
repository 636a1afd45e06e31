CREATE TABLE IF NOT EXISTS raw_checkout_failed (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  order_id String COMMENT 'checkout_failed.order_id: as sent',
  session_id String COMMENT 'checkout_failed.session_id: as sent',
  creator_id String COMMENT 'checkout_failed.creator_id: as sent',
  reason LowCardinality(String) COMMENT 'checkout_failed.reason: as sent',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry checkout_failed events, one row per distinct event_id'
