CREATE TABLE IF NOT EXISTS quarantine (
  _file String COMMENT 'sealed telemetry file',
  _line UInt64 COMMENT 'line number in that file, from 1; 0 for a file that could not be read',
  reason LowCardinality(String) COMMENT 'why the line was not loaded',
  event_id String COMMENT 'the event_id as sent, empty when absent',
  event_type String COMMENT 'the event_type as sent, empty when absent',
  raw_line String COMMENT 'the line exactly as read',
  quarantined_at DateTime64(6, 'UTC') COMMENT 'when ingest rejected it'
)
ENGINE = MergeTree
ORDER BY (_file, _line)
COMMENT 'every rejected telemetry line with its reason'
