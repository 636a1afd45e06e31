CREATE TABLE _stage_loaded (pos UInt64 COMMENT 'a line that loads') ENGINE = Set
