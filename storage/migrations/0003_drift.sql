-- One row per drift test: a window of one app|prompt_version and one kind of text
-- against its reference. threshold is the p-value cut applied (Benjamini-Hochberg
-- across the segments tested in the same round), so drifted = p_value <= threshold.
-- (kafka_partition, first_offset, last_offset) locate the window in llm.scored; a
-- replay after a crash skips what a stored row already covers. window_start is in the
-- key because offsets restart at 0 when the embedded broker restarts.
CREATE TABLE IF NOT EXISTS {db}.llm_drift
(
    key             String,
    app             LowCardinality(String),
    prompt_version  LowCardinality(String),
    kind            Enum8('input' = 1, 'output' = 2),
    window_start    DateTime64(3, 'UTC'),
    window_end      DateTime64(3, 'UTC'),
    n_ref           UInt32,
    n_cur           UInt32,
    statistic       Float64,
    p_value         Float64,
    threshold       Float64,
    drifted         UInt8,
    distance        Float64,
    explanation     String,
    method          LowCardinality(String),
    version         UInt16,
    alpha           Float64,
    family_size     UInt32,
    permutations    UInt32,
    bandwidth       Float64,
    reference_id    String,
    embedding_model LowCardinality(String),
    kafka_partition Int32,
    first_offset    Int64,
    last_offset     Int64,
    tested_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(tested_at)
PARTITION BY toYYYYMM(window_end)
ORDER BY (app, prompt_version, kind, window_start, kafka_partition, first_offset)
SETTINGS non_replicated_deduplication_window = 1000;

-- The reference of each app|prompt_version: the latest row wins (FINAL). vectors_id
-- names the reference whose vectors are used: itself, or the one it inherited.
CREATE TABLE IF NOT EXISTS {db}.llm_drift_references
(
    app             LowCardinality(String),
    prompt_version  LowCardinality(String),
    reference_id    String,
    vectors_id      String,
    source          LowCardinality(String),
    detail          String,
    target          UInt32,
    size            UInt32,
    complete        UInt8,
    active          UInt8,
    embedding_model LowCardinality(String),
    updated_at      DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (app, prompt_version);

-- Reference vectors and texts, kept apart from llm_embeddings so retention there
-- never removes a reference. kafka_* locate a row built from llm.scored (else -1).
CREATE TABLE IF NOT EXISTS {db}.llm_drift_reference_vectors
(
    reference_id    String,
    kind            Enum8('input' = 1, 'output' = 2),
    event_id        String,
    ts              DateTime64(3, 'UTC'),
    text            String,
    vector          Array(Float32),
    kafka_partition Int32,
    kafka_offset    Int64,
    added_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(added_at)
ORDER BY (reference_id, kind, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
