CREATE TABLE IF NOT EXISTS raw_gift_failed (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  gift_id String COMMENT 'gift_failed.gift_id: as sent',
  session_id String COMMENT 'gift_failed.session_id: as sent',
  sender_id String COMMENT 'gift_failed.sender_id: as sent',
  reason LowCardinality(String) COMMENT 'gift_failed.reason: as sent',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry gift_failed events, one row per distinct event_id'
