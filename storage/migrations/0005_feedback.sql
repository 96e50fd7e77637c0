-- Users' verdicts on earlier events (topic llm.feedback), one row per event and
-- source: a source that changes its mind replaces its verdict, the latest ingested
-- wins (query with FINAL or argMax(score, ingested_at)). No PARTITION BY: a verdict
-- and its replacement may fall in different months, and rows only collapse within a
-- partition. comment is PII-redacted like llm_events texts.
CREATE TABLE IF NOT EXISTS {db}.llm_feedback
(
    event_id        String,
    ts              DateTime64(3, 'UTC'),
    score           Float32,
    comment         String,
    source          LowCardinality(String),
    kafka_partition Int32,
    kafka_offset    Int64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (event_id, source)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
