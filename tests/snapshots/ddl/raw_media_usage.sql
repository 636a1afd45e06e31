CREATE TABLE IF NOT EXISTS raw_media_usage (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  session_id String COMMENT 'media_usage.session_id: as sent',
  interval_start DateTime64(6, 'UTC') COMMENT 'media_usage.interval_start: UTC time',
  interval_end DateTime64(6, 'UTC') COMMENT 'media_usage.interval_end: UTC time',
  publisher_seconds Float64 COMMENT 'media_usage.publisher_seconds: non-negative number',
  viewer_seconds Float64 COMMENT 'media_usage.viewer_seconds: non-negative number',
  transcode_seconds Float64 COMMENT 'media_usage.transcode_seconds: non-negative number',
  relay_seconds Float64 COMMENT 'media_usage.relay_seconds: non-negative number',
  egress_bytes Int64 COMMENT 'media_usage.egress_bytes: integer',
  recording_bytes Int64 COMMENT 'media_usage.recording_bytes: integer',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1',
  INDEX interval_start_minmax interval_start TYPE minmax GRANULARITY 1,
  INDEX interval_end_minmax interval_end TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry media_usage events, one row per distinct event_id'
