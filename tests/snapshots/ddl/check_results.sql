CREATE TABLE IF NOT EXISTS check_results (
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
COMMENT 'every data-quality check outcome, newest per check and target is the current one'
