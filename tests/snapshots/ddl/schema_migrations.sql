CREATE TABLE IF NOT EXISTS schema_migrations (
  name String COMMENT 'the migration that ran',
  applied_at DateTime64(6, 'UTC') COMMENT 'when it finished'
)
ENGINE = MergeTree
ORDER BY name
COMMENT 'migrations applied to this warehouse (warehouse/migrations.py)'
