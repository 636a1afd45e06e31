CREATE TABLE IF NOT EXISTS raw_payout_issued (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  payout_id String COMMENT 'payout_issued.payout_id: as sent',
  creator_id String COMMENT 'payout_issued.creator_id: as sent',
  amount_minor Int64 COMMENT 'payout_issued.amount_minor: money in minor units of the event currency',
  currency LowCardinality(String) COMMENT 'payout_issued.currency: as sent',
  period_start Date32 COMMENT 'payout_issued.period_start: UTC date',
  period_end Date32 COMMENT 'payout_issued.period_end: UTC date',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry payout_issued events, one row per distinct event_id'
