CREATE TABLE _stage_lines (pos UInt64 COMMENT '(file index in the batch << 40) | line number',
  line String COMMENT 'the line as read, without its newline',
  type_hint LowCardinality(String) DEFAULT JSONExtractString(line, 'event_type') COMMENT 'event_type read cheaply, routes the line to its parse query') ENGINE = Memory
