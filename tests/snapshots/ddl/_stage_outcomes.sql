CREATE TABLE _stage_outcomes (pos UInt64 COMMENT '(file index in the batch << 40) | line number',
  outcome LowCardinality(String) COMMENT 'loaded, duplicate, or the quarantine reason') ENGINE = Memory
