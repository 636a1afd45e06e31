CREATE TABLE IF NOT EXISTS marts_dirty_days (
  day Date COMMENT 'a UTC day whose metrics new events can change (ingest/batch_sql.py)',
  noted_at DateTime64(6, 'UTC') COMMENT 'when the load that touched it was written'
)
ENGINE = MergeTree
ORDER BY day
COMMENT 'days whose mart partitions are stale; deleted once marts covering them are published'
