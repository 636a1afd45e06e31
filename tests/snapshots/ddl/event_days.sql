CREATE TABLE IF NOT EXISTS event_days (
  event_type LowCardinality(String) COMMENT 'one of the event types in DAY_TABLES',
  day Date COMMENT 'a UTC day holding at least one loaded event of that type',
  _file String COMMENT 'sealed telemetry file those events were loaded from'
)
ENGINE = MergeTree
ORDER BY (event_type, day, _file)
COMMENT 'days with events per type: the models calendar without scanning the raw tables'
