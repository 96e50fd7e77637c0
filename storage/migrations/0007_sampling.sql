-- Load shedding: when the worker falls behind, the model scores (toxicity, hallucination,
-- the injection score, embeddings) run on a uniform random sample of events; the cheap
-- detectors (cost, latency, PII, injection_signals) still run on every event.
-- sample_rate is the probability with which the row was model-scored (1 = always; rows
-- stored before this migration read 1). toxicity and injection are NULL on a row that was
-- not model-scored (toxicity_scores is then empty); hallucination is NULL there too, as
-- on an answer without context.
ALTER TABLE {db}.llm_events
    MODIFY COLUMN toxicity Nullable(Float32),
    MODIFY COLUMN injection Nullable(Float32);

ALTER TABLE {db}.llm_events
    ADD COLUMN IF NOT EXISTS sample_rate Float32 DEFAULT 1 AFTER injection_signals;

-- The views of 0006 with model-score rates over the rows that carry the score, so they
-- stay unbiased estimates whatever the sample rate: flagged / count(score), NULL where no
-- row in the bucket was scored. *_scored says how many rows each rate rests on.
CREATE OR REPLACE VIEW {db}.llm_metrics_1m AS
SELECT
    toStartOfMinute(e.ts)                                     AS minute,
    e.app                                                     AS app,
    e.model                                                   AS model,
    e.prompt_version                                          AS prompt_version,
    count()                                                   AS events,
    countIf(e.status = 'error')                               AS errors,
    countIf(e.status = 'error') / count()                     AS error_rate,
    quantileExact(0.5)(e.latency_ms)                          AS latency_p50,
    quantileExact(0.95)(e.latency_ms)                         AS latency_p95,
    quantileExact(0.99)(e.latency_ms)                         AS latency_p99,
    quantileExact(0.95)(e.ttft_ms)                            AS ttft_p95,
    sum(e.input_tokens)                                       AS input_tokens,
    sum(e.output_tokens)                                      AS output_tokens,
    sum(e.cost_usd)                                           AS cost_usd,
    if(count(e.toxicity) = 0, NULL,
       countIf(e.toxicity >= 0.5) / count(e.toxicity))       AS toxicity_rate,
    count(e.toxicity)                                         AS toxicity_scored,
    if(count(e.hallucination) = 0, NULL,
       countIf(e.hallucination >= 0.5) / count(e.hallucination)) AS hallucination_rate,
    count(e.hallucination)                                    AS hallucination_scored,
    countIf(notEmpty(e.pii_input) OR notEmpty(e.pii_output)) / count() AS pii_rate,
    if(count(e.injection) = 0, NULL,
       countIf(e.injection >= 0.5) / count(e.injection))     AS injection_rate,
    count(e.injection)                                        AS injection_scored,
    countIf(f.score IS NOT NULL)                              AS feedback,
    if(countIf(f.score IS NOT NULL) = 0, NULL,
       countIf(f.score < 0) / countIf(f.score IS NOT NULL))   AS negative_feedback_rate
FROM {db}.llm_events AS e FINAL
LEFT JOIN
(
    SELECT event_id, toNullable(argMax(score, ingested_at)) AS score
    FROM {db}.llm_feedback GROUP BY event_id
) AS f ON f.event_id = e.event_id
GROUP BY minute, app, model, prompt_version;

CREATE OR REPLACE VIEW {db}.llm_metrics_1h AS
SELECT
    toStartOfHour(e.ts)                                       AS hour,
    e.app                                                     AS app,
    e.model                                                   AS model,
    e.prompt_version                                          AS prompt_version,
    count()                                                   AS events,
    countIf(e.status = 'error')                               AS errors,
    countIf(e.status = 'error') / count()                     AS error_rate,
    quantileExact(0.5)(e.latency_ms)                          AS latency_p50,
    quantileExact(0.95)(e.latency_ms)                         AS latency_p95,
    quantileExact(0.99)(e.latency_ms)                         AS latency_p99,
    quantileExact(0.95)(e.ttft_ms)                            AS ttft_p95,
    sum(e.input_tokens)                                       AS input_tokens,
    sum(e.output_tokens)                                      AS output_tokens,
    sum(e.cost_usd)                                           AS cost_usd,
    if(count(e.toxicity) = 0, NULL,
       countIf(e.toxicity >= 0.5) / count(e.toxicity))       AS toxicity_rate,
    count(e.toxicity)                                         AS toxicity_scored,
    if(count(e.hallucination) = 0, NULL,
       countIf(e.hallucination >= 0.5) / count(e.hallucination)) AS hallucination_rate,
    count(e.hallucination)                                    AS hallucination_scored,
    countIf(notEmpty(e.pii_input) OR notEmpty(e.pii_output)) / count() AS pii_rate,
    if(count(e.injection) = 0, NULL,
       countIf(e.injection >= 0.5) / count(e.injection))     AS injection_rate,
    count(e.injection)                                        AS injection_scored,
    countIf(f.score IS NOT NULL)                              AS feedback,
    if(countIf(f.score IS NOT NULL) = 0, NULL,
       countIf(f.score < 0) / countIf(f.score IS NOT NULL))   AS negative_feedback_rate
FROM {db}.llm_events AS e FINAL
LEFT JOIN
(
    SELECT event_id, toNullable(argMax(score, ingested_at)) AS score
    FROM {db}.llm_feedback GROUP BY event_id
) AS f ON f.event_id = e.event_id
GROUP BY hour, app, model, prompt_version;

-- How much is model-scored, per minute and app: scored / events is the share that got
-- the model scores, sample_rate_avg what the worker aimed for (1 when it keeps up), and
-- sample_rate_min the deepest shedding in the minute.
CREATE OR REPLACE VIEW {db}.llm_sampling AS
SELECT
    toStartOfMinute(e.ts)                                     AS minute,
    e.app                                                     AS app,
    count()                                                   AS events,
    count(e.toxicity)                                         AS scored,
    avg(e.sample_rate)                                        AS sample_rate_avg,
    min(e.sample_rate)                                        AS sample_rate_min
FROM {db}.llm_events AS e FINAL
GROUP BY minute, app;
