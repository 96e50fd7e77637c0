-- Model-score rates weighted by 1 / sample_rate (the ratio, or Hajek, estimator).
-- 0007 divided the flagged rows by the scored rows: unbiased while the sample rate is
-- constant, but in a bucket whose first minutes were scored in full and the next at
-- 20 % the fully scored rows weighed five times too much. Each scored row now counts as
-- the 1 / sample_rate events it stands for (1 at rate 1, so nothing changes while the
-- worker keeps up; the floor 1e-06 only keeps the division defined):
--   rate = sumIf(1 / sample_rate, flagged) / sumIf(1 / sample_rate, score IS NOT NULL)
-- *_scored still counts the scored rows a rate rests on; *_weight is the events they
-- stand for, so buckets combine as sum(rate * weight) / sum(weight) (weighting by
-- *_scored would bring the bias back across buckets). NULL where nothing was scored.
CREATE OR REPLACE VIEW {db}.llm_metrics_1m AS
WITH 1 / greatest(e.sample_rate, 1e-06) AS row_weight
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
    if(count(e.toxicity) = 0, NULL, sumIf(row_weight, e.toxicity >= 0.5)
       / sumIf(row_weight, e.toxicity IS NOT NULL))           AS toxicity_rate,
    count(e.toxicity)                                         AS toxicity_scored,
    sumIf(row_weight, e.toxicity IS NOT NULL)                 AS toxicity_weight,
    if(count(e.hallucination) = 0, NULL, sumIf(row_weight, e.hallucination >= 0.5)
       / sumIf(row_weight, e.hallucination IS NOT NULL))      AS hallucination_rate,
    count(e.hallucination)                                    AS hallucination_scored,
    sumIf(row_weight, e.hallucination IS NOT NULL)            AS hallucination_weight,
    countIf(notEmpty(e.pii_input) OR notEmpty(e.pii_output)) / count() AS pii_rate,
    if(count(e.injection) = 0, NULL, sumIf(row_weight, e.injection >= 0.5)
       / sumIf(row_weight, e.injection IS NOT NULL))          AS injection_rate,
    count(e.injection)                                        AS injection_scored,
    sumIf(row_weight, e.injection IS NOT NULL)                AS injection_weight,
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
WITH 1 / greatest(e.sample_rate, 1e-06) AS row_weight
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
    if(count(e.toxicity) = 0, NULL, sumIf(row_weight, e.toxicity >= 0.5)
       / sumIf(row_weight, e.toxicity IS NOT NULL))           AS toxicity_rate,
    count(e.toxicity)                                         AS toxicity_scored,
    sumIf(row_weight, e.toxicity IS NOT NULL)                 AS toxicity_weight,
    if(count(e.hallucination) = 0, NULL, sumIf(row_weight, e.hallucination >= 0.5)
       / sumIf(row_weight, e.hallucination IS NOT NULL))      AS hallucination_rate,
    count(e.hallucination)                                    AS hallucination_scored,
    sumIf(row_weight, e.hallucination IS NOT NULL)            AS hallucination_weight,
    countIf(notEmpty(e.pii_input) OR notEmpty(e.pii_output)) / count() AS pii_rate,
    if(count(e.injection) = 0, NULL, sumIf(row_weight, e.injection >= 0.5)
       / sumIf(row_weight, e.injection IS NOT NULL))          AS injection_rate,
    count(e.injection)                                        AS injection_scored,
    sumIf(row_weight, e.injection IS NOT NULL)                AS injection_weight,
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
