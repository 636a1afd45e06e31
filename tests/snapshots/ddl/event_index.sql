CREATE TABLE IF NOT EXISTS event_index (
  event_id UUID COMMENT 'every loaded event id, across all types',
  payload_hash UInt64 COMMENT 'hash of the line as read: same for a redelivery, else a conflict',
  event_type LowCardinality(String) COMMENT 'table the event was loaded into',
  _file String COMMENT 'sealed telemetry file it was loaded from'
)
ENGINE = MergeTree
ORDER BY event_id
COMMENT 'the deduplication index: one row per loaded event_id'
