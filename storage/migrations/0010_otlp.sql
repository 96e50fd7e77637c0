-- OpenTelemetry traces (OTLP): every span the receiver or a Collector delivered, one row
-- per (trace_id, span_id); a replayed or re-sent export collapses to one row. Text in
-- attributes is redacted like event text. operation says what the span did, from the
-- GenAI (gen_ai.operation.name) or OpenInference (openinference.span.kind) conventions:
-- chat, text_completion, embeddings, retrieval, execute_tool, invoke_agent, chain, ...;
-- empty where neither says. event_id is the llm_events row the span became ('' if none).
CREATE TABLE IF NOT EXISTS {db}.llm_spans
(
    trace_id        String,
    span_id         String,
    parent_span_id  String,
    ts              DateTime64(6, 'UTC'),
    duration_ms     Float64,
    name            String,
    kind            LowCardinality(String),
    app             LowCardinality(String),
    environment     LowCardinality(String),
    scope           LowCardinality(String),
    operation       LowCardinality(String),
    model           LowCardinality(String),
    status          LowCardinality(String),
    status_message  String,
    error_type      String,
    input_tokens    Nullable(UInt32),
    output_tokens   Nullable(UInt32),
    event_id        String,
    attributes      String,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(ts)
ORDER BY (trace_id, span_id)
TTL toDateTime(ts) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Token counts the GenAI conventions report beside input/output/cached, where the
-- context of an LLM span came from, and the relevance of the answer and the context to
-- the question (cosine of the vectors the embedding model already computed; NULL where
-- not model-scored, or for context_relevance_* where there is no context).
-- context_source: '' an SDK event (its context as sent); 'trace' the documents of the
-- retriever spans before it in its trace; 'span' the LLM span carried it; 'none' an
-- OTLP LLM span whose trace had no retriever span within LLMPULSE_OTLP_TRACE_WAIT_S.
ALTER TABLE {db}.llm_events
    ADD COLUMN IF NOT EXISTS cache_write_tokens Nullable(UInt32) AFTER cached_tokens,
    ADD COLUMN IF NOT EXISTS reasoning_tokens Nullable(UInt32) AFTER cache_write_tokens,
    ADD COLUMN IF NOT EXISTS context_source LowCardinality(String) AFTER context,
    ADD COLUMN IF NOT EXISTS answer_relevance Nullable(Float32) AFTER injection_signals,
    ADD COLUMN IF NOT EXISTS context_relevance_max Nullable(Float32) AFTER answer_relevance,
    ADD COLUMN IF NOT EXISTS context_relevance_mean Nullable(Float32) AFTER context_relevance_max;
