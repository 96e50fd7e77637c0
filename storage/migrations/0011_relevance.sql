-- Relevance in the metric views, and retrieval drift kinds in the drift tables.
--
-- The views are 0009's, every column unchanged, plus the relevance of the events in the
-- bucket (columns answer_relevance and context_relevance_* of 0010, cosines of MiniLM
-- vectors: topical relatedness, not correctness; see docs/detectors.md):
--   answer_relevance_p50       median cosine of question and answer
--   context_relevance_p50      median of each event's best chunk (context_relevance_max)
--   context_relevance_mean_avg mean of each event's mean over its chunks
--   *_scored                   the events each rests on: model-scored, and for context
--                              the ones with context
-- Like the model-score rates (0009) each scored row stands for 1 / sample_rate events, so
-- the medians are weighted medians (quantileExactWeighted takes whole weights: the weight
-- in thousandths) and the mean a weighted mean; at one sample rate they are the plain
-- (lower) median and mean. A median does not combine across buckets: take longer ranges
-- from llm_events, or from llm_metrics_1h.

-- Retrieval drift (docs/drift.md): beside the input and output vectors, the drift monitor
-- tests per app|prompt_version the distribution of the best chunk's relevance, of the
-- number of chunks and of their mean length, so a chunking change is caught. Their rows
-- in llm_drift and their reference values in llm_drift_reference_vectors (one value per
-- event, as a one-element vector) say so in kind. Adding Enum values changes no data.
ALTER TABLE {db}.llm_drift
    MODIFY COLUMN kind Enum8('input' = 1, 'output' = 2, 'context_relevance' = 3,
                             'chunk_count' = 4, 'chunk_length' = 5);
ALTER TABLE {db}.llm_drift_reference_vectors
    MODIFY COLUMN kind Enum8('input' = 1, 'output' = 2, 'context_relevance' = 3,
                             'chunk_count' = 4, 'chunk_length' = 5);

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
       countIf(f.score < 0) / countIf(f.score IS NOT NULL))   AS negative_feedback_rate,
    if(count(e.answer_relevance) = 0, NULL, quantileExactWeighted(0.5)(e.answer_relevance,
       toUInt64(round(1000 / greatest(e.sample_rate, 1e-06))))) AS answer_relevance_p50,
    count(e.answer_relevance)                                 AS answer_relevance_scored,
    if(count(e.context_relevance_max) = 0, NULL, quantileExactWeighted(0.5)(
       e.context_relevance_max, toUInt64(round(1000 / greatest(e.sample_rate, 1e-06)))))
                                                              AS context_relevance_p50,
    if(count(e.context_relevance_mean) = 0, NULL, sum(row_weight * e.context_relevance_mean)
       / sumIf(row_weight, e.context_relevance_mean IS NOT NULL))
                                                              AS context_relevance_mean_avg,
    count(e.context_relevance_max)                            AS context_relevance_scored
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
       countIf(f.score < 0) / countIf(f.score IS NOT NULL))   AS negative_feedback_rate,
    if(count(e.answer_relevance) = 0, NULL, quantileExactWeighted(0.5)(e.answer_relevance,
       toUInt64(round(1000 / greatest(e.sample_rate, 1e-06))))) AS answer_relevance_p50,
    count(e.answer_relevance)                                 AS answer_relevance_scored,
    if(count(e.context_relevance_max) = 0, NULL, quantileExactWeighted(0.5)(
       e.context_relevance_max, toUInt64(round(1000 / greatest(e.sample_rate, 1e-06)))))
                                                              AS context_relevance_p50,
    if(count(e.context_relevance_mean) = 0, NULL, sum(row_weight * e.context_relevance_mean)
       / sumIf(row_weight, e.context_relevance_mean IS NOT NULL))
                                                              AS context_relevance_mean_avg,
    count(e.context_relevance_max)                            AS context_relevance_scored
FROM {db}.llm_events AS e FINAL
LEFT JOIN
(
    SELECT event_id, toNullable(argMax(score, ingested_at)) AS score
    FROM {db}.llm_feedback GROUP BY event_id
) AS f ON f.event_id = e.event_id
GROUP BY hour, app, model, prompt_version;
