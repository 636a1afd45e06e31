"""The pipeline's own records in the warehouse: the deduplication index, the quarantine, the
per-file ingest log, started loads, dirty mart days and data-quality outcomes."""

from __future__ import annotations

INGEST_LOG = "ingest_log"
QUARANTINE = "quarantine"
EVENT_INDEX = "event_index"
INGEST_ATTEMPTS = "ingest_attempts"
MARTS_DIRTY_DAYS = "marts_dirty_days"
CHECK_RESULTS = "check_results"


def event_index_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {EVENT_INDEX} (
  event_id UUID COMMENT 'every loaded event id, across all types',
  payload_hash UInt64 COMMENT 'hash of the line as read: same for a redelivery, else a conflict',
  event_type LowCardinality(String) COMMENT 'table the event was loaded into',
  _file String COMMENT 'sealed telemetry file it was loaded from'
)
ENGINE = MergeTree
ORDER BY event_id
COMMENT 'the deduplication index: one row per loaded event_id'"""


def quarantine_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {QUARANTINE} (
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
COMMENT 'every rejected telemetry line with its reason'"""


def ingest_log_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {INGEST_LOG} (
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
COMMENT 'one row per ingested file; lines_read = loaded + duplicates + quarantined'"""


def ingest_attempts_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {INGEST_ATTEMPTS} (
  _file String COMMENT 'sealed telemetry file a load started on',
  started_at DateTime64(6, 'UTC') COMMENT 'when the load started'
)
ENGINE = MergeTree
ORDER BY _file
COMMENT 'loads started; one without an ingest_log row was interrupted and is rolled back'"""


def marts_dirty_days_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {MARTS_DIRTY_DAYS} (
  day Date COMMENT 'a UTC day whose metrics new events can change (ingest/batch_sql.py)',
  noted_at DateTime64(6, 'UTC') COMMENT 'when the load that touched it was written'
)
ENGINE = MergeTree
ORDER BY day
COMMENT 'days whose mart partitions are stale; deleted once marts covering them are published'"""


def check_results_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {CHECK_RESULTS} (
  checked_at DateTime64(6, 'UTC') COMMENT 'when the check ran',
  run_id String COMMENT 'pipeline run that ran it, empty outside a run',
  suite LowCardinality(String) COMMENT 'raw, marts, freshness or ledger',
  check_name String COMMENT 'check name',
  target String COMMENT 'table the outcome is about',
  passed Bool COMMENT 'whether the data met the expectation',
  severity LowCardinality(String) COMMENT 'error blocks publishing the marts, warn does not',
  observed String COMMENT 'what the check saw',
  description String COMMENT 'what the check expects'
)
ENGINE = MergeTree
ORDER BY (suite, check_name, target, checked_at)
COMMENT 'every data-quality check outcome, newest per check and target is the current one'"""
