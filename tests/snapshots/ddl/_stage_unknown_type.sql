CREATE TABLE _stage_unknown_type (pos UInt64 COMMENT '(file index in the batch << 40) | line number',
  event_id Nullable(String) COMMENT 'parsed event_id, null where it does not parse',
  event_type Nullable(String) COMMENT 'parsed event_type, null where it does not parse',
  schema_version Nullable(Int64) COMMENT 'parsed schema_version, null where it does not parse',
  occurred_at Nullable(DateTime64(6, 'UTC')) COMMENT 'parsed occurred_at, null where it does not parse',
  source Nullable(String) COMMENT 'parsed source, null where it does not parse',
  event_id_uuid Nullable(UUID) COMMENT 'event_id as a UUID, null when it is not one',
  payload_hash UInt64 COMMENT 'hash of the line as read',
  quarantine_reason String COMMENT 'first failed check, empty for a valid line') ENGINE = Memory
