CREATE TABLE IF NOT EXISTS raw_host_left (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  session_id String COMMENT 'host_left.session_id: as sent',
  creator_id String COMMENT 'host_left.creator_id: as sent',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry host_left events, one row per distinct event_id'
