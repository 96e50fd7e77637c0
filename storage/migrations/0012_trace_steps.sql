-- Latency per step of a request path: one row per hour, app, environment, operation, span
-- kind and span name, from llm_spans FINAL (a re-sent or replayed span counts once). A
-- step is what a span does under one name: a retrieval, a tool call, the chat call, the
-- app's own handler span. Plain view, not materialized, like the metrics views.
--   hour            the start of the hour the spans started in (UTC)
--   app             the span's app (llmpulse.app, else the resource's service.name)
--   environment     deployment.environment.name ('' where the app does not say)
--   operation       chat, retrieval, embeddings, execute_tool, chain, ... ('' if unknown)
--   kind            the OpenTelemetry span kind: server, client, internal, ...
--   name            the span's name
--   spans           spans of this step
--   traces          distinct traces they belong to (spans / traces: calls per trace)
--   errors          spans with status 'error'
--   error_rate      errors / spans
--   duration_p50_ms, duration_p95_ms, duration_p99_ms, duration_max_ms
--                   exact percentiles (quantileExact: an element of the data) and the
--                   maximum of the spans' own durations, in milliseconds
--   duration_sum_ms the time spent in the step, summed over its spans
--   trace_share     in a trace that has this step, the part of the trace's wall time
--                   (first span's start to last span's end, over every stored span of
--                   the trace) spent in it, averaged over those traces: 0.4 means the
--                   step took 40 % of its traces' time. A step called several times in
--                   a trace sums its calls, so calls run in parallel can exceed 1; a
--                   root span covering the whole trace is 1. NULL where every trace
--                   of the row has zero wall time.
-- A trace's wall time is worked out over all of the table, not only the row's hour: a
-- query on a few hours still reads every span's trace id, start and end once.
CREATE OR REPLACE VIEW {db}.llm_trace_steps AS
SELECT
    toStartOfHour(s.ts)                                       AS hour,
    s.app                                                     AS app,
    s.environment                                             AS environment,
    s.operation                                               AS operation,
    s.kind                                                    AS kind,
    s.name                                                    AS name,
    count()                                                   AS spans,
    uniqExact(s.trace_id)                                     AS traces,
    countIf(s.status = 'error')                               AS errors,
    countIf(s.status = 'error') / count()                     AS error_rate,
    quantileExact(0.5)(s.duration_ms)                         AS duration_p50_ms,
    quantileExact(0.95)(s.duration_ms)                        AS duration_p95_ms,
    quantileExact(0.99)(s.duration_ms)                        AS duration_p99_ms,
    max(s.duration_ms)                                        AS duration_max_ms,
    sum(s.duration_ms)                                        AS duration_sum_ms,
    if(uniqExactIf(s.trace_id, t.wall_ms > 0) = 0, NULL,
       sumIf(s.duration_ms / t.wall_ms, t.wall_ms > 0)
       / uniqExactIf(s.trace_id, t.wall_ms > 0))              AS trace_share
FROM {db}.llm_spans AS s FINAL
INNER JOIN
(
    SELECT trace_id,
           (max(toUnixTimestamp64Micro(ts) + duration_ms * 1000)
            - min(toUnixTimestamp64Micro(ts))) / 1000         AS wall_ms
    FROM {db}.llm_spans FINAL GROUP BY trace_id
) AS t ON t.trace_id = s.trace_id
GROUP BY hour, app, environment, operation, kind, name;
