CREATE TABLE IF NOT EXISTS ingest_attempts (
  _file String COMMENT 'sealed telemetry file a load started on',
  started_at DateTime64(6, 'UTC') COMMENT 'when the load started'
)
ENGINE = MergeTree
ORDER BY _file
COMMENT 'loads started; one without an ingest_log row was interrupted and is rolled back'
