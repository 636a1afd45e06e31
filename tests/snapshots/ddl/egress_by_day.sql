CREATE TABLE IF NOT EXISTS egress_by_day (
  day Date COMMENT 'UTC day of the usage intervals interval_start',
  _file String COMMENT 'sealed telemetry file the intervals were loaded from',
  egress_bytes UInt64 COMMENT 'egress bytes of those intervals'
)
ENGINE = MergeTree
ORDER BY (day, _file)
COMMENT 'egress per day and file: a month-to-date egress total without reading the month'
