CREATE TABLE IF NOT EXISTS raw_coins_refunded (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  purchase_id String COMMENT 'coins_refunded.purchase_id: as sent',
  user_id String COMMENT 'coins_refunded.user_id: as sent',
  refund_minor Int64 COMMENT 'coins_refunded.refund_minor: money in minor units of the event currency',
  currency LowCardinality(String) COMMENT 'coins_refunded.currency: as sent',
  channel LowCardinality(String) COMMENT 'coins_refunded.channel: as sent',
  store_fee_returned_minor Int64 COMMENT 'coins_refunded.store_fee_returned_minor: money in minor units of the event currency',
  coins_taken_back Int64 COMMENT 'coins_refunded.coins_taken_back: integer',
  reason LowCardinality(String) COMMENT 'coins_refunded.reason: as sent',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry coins_refunded events, one row per distinct event_id'
