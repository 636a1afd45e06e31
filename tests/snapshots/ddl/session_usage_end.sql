CREATE TABLE IF NOT EXISTS session_usage_end (
  session_id String COMMENT 'a session with media usage',
  _file String COMMENT 'sealed telemetry file the intervals were loaded from',
  last_interval_end DateTime64(6, 'UTC') COMMENT 'the latest interval_end of those intervals'
)
ENGINE = MergeTree
ORDER BY (session_id, _file)
COMMENT 'how far each session has reported usage: its span without reading its usage'
