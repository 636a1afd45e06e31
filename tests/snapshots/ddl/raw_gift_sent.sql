CREATE TABLE IF NOT EXISTS raw_gift_sent (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  gift_id String COMMENT 'gift_sent.gift_id: as sent',
  session_id String COMMENT 'gift_sent.session_id: as sent',
  sender_id String COMMENT 'gift_sent.sender_id: as sent',
  coins Int64 COMMENT 'gift_sent.coins: integer',
  value_minor Int64 COMMENT 'gift_sent.value_minor: money in minor units of the event currency',
  currency LowCardinality(String) COMMENT 'gift_sent.currency: as sent',
  splits Array(Tuple(creator_id String, share_minor Int64)) COMMENT 'gift_sent.splits: value of the gift per creator, minor units',
  platform_fee_minor Int64 COMMENT 'gift_sent.platform_fee_minor: money in minor units of the event currency',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry gift_sent events, one row per distinct event_id'
