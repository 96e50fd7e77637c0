-- Alert windows select llm_events by ingested_at; parts are written in ingestion
-- order, so a minmax index skips everything older than the window.
ALTER TABLE {db}.llm_events ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1;

-- The current state of every alert (one row per alert identity; the latest wins,
-- read with FINAL). The evaluator reloads it after a restart or a rebalance, so a
-- pending `for` keeps counting and a firing alert is resolved, not forgotten.
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id         String,
    rule             LowCardinality(String),
    labels           Map(String, String),
    app              LowCardinality(String),
    prompt_version   LowCardinality(String),
    state            Enum8('inactive' = 0, 'pending' = 1, 'firing' = 2, 'resolved' = 3),
    active_at        Nullable(Float64),
    fired_at         Nullable(Float64),
    resolved_at      Nullable(Float64),
    value            Nullable(Float64),
    count            UInt64,
    notified_at      Nullable(Float64),
    notified_status  LowCardinality(String),
    notified_episode Nullable(Float64),
    refreshed_at     Nullable(Float64),
    updated_at       DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY alert_id;

-- Every delivery attempt of every notification, and how it ended. outcome is
-- failed (one attempt failed; result says why), then one final row: delivered,
-- gave_up (permanent failure or deadline: someone must look) or skipped (nothing to
-- send, e.g. no healthy version to roll back to).
CREATE TABLE IF NOT EXISTS {db}.alert_log
(
    at              DateTime64(3, 'UTC') DEFAULT now64(3),
    notification_id String,
    alert_id        String,
    rule            LowCardinality(String),
    app             LowCardinality(String),
    prompt_version  LowCardinality(String),
    reason          LowCardinality(String),
    status          LowCardinality(String),
    receiver        LowCardinality(String),
    channel         LowCardinality(String),
    attempt         UInt16,
    outcome         LowCardinality(String),
    result          LowCardinality(String),
    http_status     Nullable(UInt16),
    detail          String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (alert_id, at);
