CREATE TABLE _stage_verdicts (pos UInt64 COMMENT '(file index in the batch << 40) | line number',
  event_type Nullable(String) COMMENT 'event_type as sent, null when absent',
  event_id Nullable(String) COMMENT 'event_id as sent, null when absent',
  event_id_uuid Nullable(UUID) COMMENT 'event_id as a UUID, null when it is not one',
  payload_hash UInt64 COMMENT 'hash of the line as read',
  quarantine_reason String COMMENT 'first failed check, empty for a valid line') ENGINE = Memory
