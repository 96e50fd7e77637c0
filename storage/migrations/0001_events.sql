-- Events as received, with the scores of the detectors that ran on them.
-- ReplacingMergeTree on (app, event_id): a replayed event collapses to one row
-- (query with FINAL, or the llm_events_latest view, for exact counts before merges).
CREATE TABLE IF NOT EXISTS {db}.llm_events
(
    event_id        String,
    ts              DateTime64(3, 'UTC'),
    app             LowCardinality(String),
    environment     LowCardinality(String),
    provider        LowCardinality(String),
    model           LowCardinality(String),
    prompt_id       String,
    prompt_version  LowCardinality(String),
    variant         LowCardinality(String),
    status          LowCardinality(String),
    error_type      String,
    system          String,
    input           String,
    output          String,
    context         Array(String),
    input_tokens    Nullable(UInt32),
    output_tokens   Nullable(UInt32),
    cached_tokens   Nullable(UInt32),
    latency_ms      Nullable(Float64),
    ttft_ms         Nullable(Float64),
    generation_ms   Nullable(Float64),
    output_tokens_per_s Nullable(Float64),
    cost_usd        Nullable(Float64),
    cost_source     LowCardinality(String),
    price_version   LowCardinality(String),
    user_id         String,
    session_id      String,
    trace_id        String,
    span_id         String,
    parent_span_id  String,
    tags            Map(String, String),
    extra           String,
    kafka_partition Int32,
    kafka_offset    Int64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (app, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Payloads that failed validation, one row per Kafka record, with the reason.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    topic        LowCardinality(String),
    partition    Int32,
    offset       Int64,
    received_at  DateTime64(3, 'UTC') DEFAULT now64(3),
    field        String,
    reason       String,
    payload      String,
    payload_size UInt32
)
ENGINE = ReplacingMergeTree(received_at)
ORDER BY (topic, partition, offset)
SETTINGS non_replicated_deduplication_window = 1000;
