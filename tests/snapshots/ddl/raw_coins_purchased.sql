CREATE TABLE IF NOT EXISTS raw_coins_purchased (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  purchase_id String COMMENT 'coins_purchased.purchase_id: as sent',
  user_id String COMMENT 'coins_purchased.user_id: as sent',
  coins Int64 COMMENT 'coins_purchased.coins: integer',
  amount_minor Int64 COMMENT 'coins_purchased.amount_minor: money in minor units of the event currency',
  currency LowCardinality(String) COMMENT 'coins_purchased.currency: as sent',
  channel LowCardinality(String) COMMENT 'coins_purchased.channel: as sent',
  payment_fee_minor Int64 COMMENT 'coins_purchased.payment_fee_minor: money in minor units of the event currency',
  store_fee_minor Int64 COMMENT 'coins_purchased.store_fee_minor: money in minor units of the event currency',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry coins_purchased events, one row per distinct event_id'
