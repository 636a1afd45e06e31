CREATE TABLE IF NOT EXISTS raw_order_paid (
  event_id UUID COMMENT 'deduplication key',
  occurred_at DateTime64(6, 'UTC') COMMENT 'when it happened, UTC',
  source LowCardinality(String) COMMENT 'emitting runtime instance',
  order_id String COMMENT 'order_paid.order_id: as sent',
  session_id Nullable(String) COMMENT 'order_paid.session_id: null when not applicable',
  creator_id String COMMENT 'order_paid.creator_id: as sent',
  product_id String COMMENT 'order_paid.product_id: as sent',
  quantity Int64 COMMENT 'order_paid.quantity: integer',
  gross_minor Int64 COMMENT 'order_paid.gross_minor: money in minor units of the event currency',
  currency LowCardinality(String) COMMENT 'order_paid.currency: as sent',
  payment_fee_minor Int64 COMMENT 'order_paid.payment_fee_minor: money in minor units of the event currency',
  commission_minor Int64 COMMENT 'order_paid.commission_minor: money in minor units of the event currency',
  creator_net_minor Int64 COMMENT 'order_paid.creator_net_minor: money in minor units of the event currency',
  _file String COMMENT 'sealed telemetry file the event was loaded from',
  _line UInt64 COMMENT 'line number in that file, from 1',
  INDEX order_id_bloom order_id TYPE bloom_filter GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id)
COMMENT 'telemetry order_paid events, one row per distinct event_id'
