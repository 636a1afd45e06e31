CREATE TABLE IF NOT EXISTS raw_order_refunded (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  order_id String COMMENT 'order_refunded.order_id: as sent',
  refund_minor Int64 COMMENT 'order_refunded.refund_minor: money in minor units of the event currency',
  reason LowCardinality(String) COMMENT 'order_refunded.reason: as sent',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1',
  INDEX order_id_bloom order_id TYPE bloom_filter GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry order_refunded events, one row per distinct event_id'
