CREATE TABLE IF NOT EXISTS ingest_log (
  _file String COMMENT 'sealed telemetry file name',
  lines_read UInt64 COMMENT 'lines in the file',
  loaded UInt64 COMMENT 'lines loaded as new events',
  duplicates UInt64 COMMENT 'lines dropped as exact duplicates of loaded events',
  quarantined UInt64 COMMENT 'lines quarantined, conflicting duplicates included',
  conflicting UInt64 COMMENT 'of the quarantined, same event_id with a different payload',
  bytes UInt64 COMMENT 'file size',
  ingested_at DateTime64(6, 'UTC') COMMENT 'when the file was committed'
)
ENGINE = MergeTree
ORDER BY _file
COMMENT 'one row per ingested file; lines_read = loaded + duplicates + quarantined'
