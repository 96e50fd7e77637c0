-- Analyst views: the common questions per minute and per hour, by app, model and
-- prompt_version. Plain views over FINAL, not materialized: a batch replayed after
-- a crash must count once, and a materialized view would count it again.
-- negative_feedback_rate is over the events that got feedback (the latest score per
-- event); NULL where none did.
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
    countIf(e.toxicity >= 0.5) / count()                      AS toxicity_rate,
    if(count(e.hallucination) = 0, NULL,
       countIf(e.hallucination >= 0.5) / count(e.hallucination)) AS hallucination_rate,
    countIf(notEmpty(e.pii_input) OR notEmpty(e.pii_output)) / count() AS pii_rate,
    countIf(e.injection >= 0.5) / count()                     AS injection_rate,
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
    countIf(e.toxicity >= 0.5) / count()                      AS toxicity_rate,
    if(count(e.hallucination) = 0, NULL,
       countIf(e.hallucination >= 0.5) / count(e.hallucination)) AS hallucination_rate,
    countIf(notEmpty(e.pii_input) OR notEmpty(e.pii_output)) / count() AS pii_rate,
    countIf(e.injection >= 0.5) / count()                     AS injection_rate,
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

-- Spend per day and model, for budgets and the report.
CREATE OR REPLACE VIEW {db}.llm_cost_daily AS
SELECT toDate(e.ts) AS day, e.app AS app, e.model AS model, count() AS events,
       sum(e.cost_usd) AS cost_usd, countIf(e.cost_usd IS NULL) AS unpriced
FROM {db}.llm_events AS e FINAL
GROUP BY day, app, model;
