-- Detector scores on every event, and the embeddings drift is computed from.
-- NULL means "does not apply" (no context to ground against), never "not computed".
ALTER TABLE {db}.llm_events
    ADD COLUMN IF NOT EXISTS toxicity Float32 AFTER price_version,
    ADD COLUMN IF NOT EXISTS toxicity_scores Map(LowCardinality(String), Float32) AFTER toxicity,
    ADD COLUMN IF NOT EXISTS toxicity_model LowCardinality(String) AFTER toxicity_scores,
    ADD COLUMN IF NOT EXISTS hallucination Nullable(Float32) AFTER toxicity_model,
    ADD COLUMN IF NOT EXISTS unsupported Array(String) AFTER hallucination,
    ADD COLUMN IF NOT EXISTS hallucination_method LowCardinality(String) AFTER unsupported,
    ADD COLUMN IF NOT EXISTS pii_input Array(LowCardinality(String)) AFTER hallucination_method,
    ADD COLUMN IF NOT EXISTS pii_output Array(LowCardinality(String)) AFTER pii_input,
    ADD COLUMN IF NOT EXISTS injection Float32 AFTER pii_output,
    ADD COLUMN IF NOT EXISTS injection_signals Array(LowCardinality(String)) AFTER injection,
    ADD COLUMN IF NOT EXISTS redaction LowCardinality(String) AFTER injection_signals,
    ADD COLUMN IF NOT EXISTS embedding_model LowCardinality(String) AFTER redaction;

-- One row per event and kind; vectors are L2-normalised, so cosine = dot product.
CREATE TABLE IF NOT EXISTS {db}.llm_embeddings
(
    event_id       String,
    ts             DateTime64(3, 'UTC'),
    app            LowCardinality(String),
    prompt_version LowCardinality(String),
    kind           Enum8('input' = 1, 'output' = 2),
    model          LowCardinality(String),
    vector         Array(Float32),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (app, prompt_version, kind, event_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;
