"""The SQL behind each metric: one query per rule evaluates every app|prompt_version.

Windows count what llmpulse *stored* in the last ``window`` (``ingested_at``; for
drift, ``tested_at``), not the producers' ``ts``: scoring lag then never empties a
window, a producer's clock skew cannot hide events, and a backlog is judged when it
is processed. Queries read ``FINAL`` so an event replayed after a crash counts once.
Values are inlined as literals: numbers are formatted by us and strings go through :func:`quote`.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerting.config import Rule
from core.sampling import weighted_hits_sql, weighted_median_sql, weighted_rate_sql
from core.sql import quote

__all__ = [
    "RATE_EVENTS",
    "MetricQuery",
    "RateEvents",
    "evidence_query",
    "filters_sql",
    "metric_query",
    "versions_query",
]


def at(ts: float) -> str:
    return f"fromUnixTimestamp64Milli({int(ts * 1000)}, 'UTC')"


@dataclass(frozen=True)
class RateEvents:
    """A rate metric: ``flag`` flags an event; ``score`` names the model score the rate
    is over ("" for a rate over every event).

    A model score is NULL on an event the worker did not model-score (load shedding
    scores a uniform sample, with probability ``sample_rate``), so its rate is over the
    events that carry the score, each weighted by 1 / sample_rate (:mod:`core.sampling`):
    a window where the sample rate changed does not over-weight the fully scored part.
    ``n`` stays the plain count of those events, what the value rests on."""

    flag: str
    score: str = ""

    @property
    def n(self) -> str:
        """The events the value rests on (the scored ones for a model score)."""
        return f"count({self.score})"

    @property
    def value(self) -> str:
        """The rate, NULL where ``n`` is 0."""
        if self.score:
            return weighted_rate_sql(self.flag, self.score)
        return f"if({self.n} = 0, NULL, countIf({self.flag}) / {self.n})"

    @property
    def hits(self) -> str:
        """The flagged events a test on (hits, n) reads: the rate times ``n`` (for a
        model score, weighted flagged events scaled back to ``n``, not an integer)."""
        if self.score:
            return weighted_hits_sql(self.flag, self.score)
        return f"countIf({self.flag})"


# rate metric -> its events: threshold rules, their evidence and baseline rules all read
# these.
RATE_EVENTS = {
    "error_rate": RateEvents("status = 'error'"),
    "toxicity_rate": RateEvents("toxicity >= {st}", "toxicity"),
    "hallucination_rate": RateEvents("hallucination >= {st}", "hallucination"),
    "pii_rate": RateEvents("notEmpty(pii_input) OR notEmpty(pii_output)"),
    "injection_rate": RateEvents("injection >= {st}", "injection"),
}

# metric -> (value expression, count expression); rates are NULL on no data, and the
# count is the events the value rests on (for a model score: the scored ones).
_EVENT_EXPR = {
    "event_count": ("toFloat64(count())", "count()"),
    "toxicity_max": ("toFloat64(max(toxicity))", "count(toxicity)"),
    **{m: (r.value, r.n) for m, r in RATE_EVENTS.items()},
    "latency_p95": ("quantileExact(0.95)(latency_ms)", "count(latency_ms)"),
    "latency_p99": ("quantileExact(0.99)(latency_ms)", "count(latency_ms)"),
    "ttft_p95": ("quantileExact(0.95)(ttft_ms)", "count(ttft_ms)"),
    "cost_usd": ("sum(ifNull(cost_usd, 0))", "count()"),
    "cost_burn_rate": ("sum(ifNull(cost_usd, 0)) / {window} / ({budget} / {period})", "count()"),
    # medians of model scores, weighted like their rates (core.sampling)
    "answer_relevance": (weighted_median_sql("answer_relevance"), "count(answer_relevance)"),
    "context_relevance": (
        weighted_median_sql("context_relevance_max"),
        "count(context_relevance_max)",
    ),
}

# metric -> (order by, example text column, extra condition) for the evidence query
_EVIDENCE = {
    "event_count": ("ts DESC", "input", ""),
    "error_rate": ("ts DESC", "concat(error_type, ': ', output)", RATE_EVENTS["error_rate"].flag),
    "toxicity_rate": ("toxicity DESC", "output", RATE_EVENTS["toxicity_rate"].flag),
    "toxicity_max": ("toxicity DESC", "output", "toxicity IS NOT NULL"),
    "hallucination_rate": ("hallucination DESC", "output", RATE_EVENTS["hallucination_rate"].flag),
    "pii_rate": ("ts DESC", "input", RATE_EVENTS["pii_rate"].flag),
    "injection_rate": ("injection DESC", "input", RATE_EVENTS["injection_rate"].flag),
    "latency_p95": ("latency_ms DESC", "input", ""),
    "latency_p99": ("latency_ms DESC", "input", ""),
    "ttft_p95": ("ttft_ms DESC", "input", ""),
    "cost_usd": ("cost_usd DESC", "input", ""),
    "cost_burn_rate": ("cost_usd DESC", "input", ""),
    "negative_feedback_rate": ("ts DESC", "output", ""),
    # least relevant first: the question and the answer, or the question and the top chunk
    "answer_relevance": (
        "answer_relevance ASC",
        "concat(input, ' → ', output)",
        "answer_relevance IS NOT NULL",
    ),
    "context_relevance": (
        "context_relevance_max ASC",
        "concat(input, ' | retrieved: ', context[1])",
        "context_relevance_max IS NOT NULL",
    ),
}


@dataclass(frozen=True)
class MetricQuery:
    sql: str
    scope: str  # "version": rows are (app, prompt_version, value, n); "app": (app, value, n)


def filters_sql(rule: Rule, skip: tuple[str, ...] = ()) -> str:
    """The rule's filters as `` AND label = 'value'`` terms, except the labels in ``skip``
    (a baseline rule names app and version itself)."""
    return "".join(
        f" AND {k} = {quote(v)}" for k, v in sorted(rule.filters.items()) if k not in skip
    )


def _expr(template: str, rule: Rule) -> str:
    return template.format(
        st=repr(float(rule.score_threshold)),
        window=repr(float(rule.window_s)),
        budget=repr(float(rule.budget_usd or 0.0)),
        period=repr(float(rule.budget_period_s)),
    )


def metric_query(db: str, rule: Rule, now: float) -> MetricQuery:
    """Every key's value of ``rule.metric`` over (now - window, now]."""
    start, end = at(now - rule.window_s), at(now)
    m = rule.metric
    if m in ("drift", "drift_p_value"):
        value = "toFloat64(max(drifted))" if m == "drift" else "min(p_value)"
        return MetricQuery(
            f"SELECT app, prompt_version, {value} AS value, count() AS n "
            f"FROM {db}.llm_drift FINAL WHERE tested_at > {start} AND tested_at <= {end}"
            f"{filters_sql(rule)} GROUP BY app, prompt_version",
            "version",
        )
    if m == "negative_feedback_rate":
        return MetricQuery(
            "SELECT e.app, e.prompt_version, countIf(f.score < 0) / count() AS value, "
            "count() AS n FROM (SELECT event_id, argMax(score, ingested_at) AS score "
            f"FROM {db}.llm_feedback WHERE ingested_at > {start} AND ingested_at <= {end} "
            "GROUP BY event_id) AS f "
            f"INNER JOIN (SELECT event_id, app, prompt_version FROM {db}.llm_events FINAL "
            f"WHERE event_id IN (SELECT event_id FROM {db}.llm_feedback "
            f"WHERE ingested_at > {start})"
            f"{filters_sql(rule)}) AS e ON e.event_id = f.event_id "
            "GROUP BY e.app, e.prompt_version",
            "version",
        )
    value, n = (_expr(t, rule) for t in _EVENT_EXPR[m])
    keys = "app" if rule.spec.scope == "app" else "app, prompt_version"
    return MetricQuery(
        f"SELECT {keys}, {value} AS value, {n} AS n FROM {db}.llm_events FINAL "
        f"WHERE ingested_at > {start} AND ingested_at <= {end}{filters_sql(rule)} GROUP BY {keys}",
        rule.spec.scope,
    )


def versions_query(db: str, app: str, exclude_version: str, now: float) -> str:
    """The other versions of ``app`` seen in the last 30 days, most recent first."""
    return (
        f"SELECT prompt_version, toUnixTimestamp64Milli(max(ingested_at)) / 1000 AS last_seen "
        f"FROM {db}.llm_events WHERE app = {quote(app)} "
        f"AND prompt_version != {quote(exclude_version)} "
        f"AND ingested_at > {at(now - 30 * 86_400)} AND ingested_at <= {at(now)} "
        "GROUP BY prompt_version ORDER BY last_seen DESC LIMIT 10"
    )


def evidence_query(db: str, rule: Rule, labels: dict[str, str], start: float, end: float) -> str:
    """The SQL an analyst runs to see the events behind an alert, worst first."""
    keys = {k: v for k, v in labels.items() if k in ("app", "prompt_version")}
    where = "".join(f" AND {k} = {quote(v)}" for k, v in sorted(keys.items()))
    if rule.metric in ("drift", "drift_p_value"):
        return (
            "SELECT window_start, window_end, kind, p_value, threshold, drifted, explanation "
            f"FROM {db}.llm_drift FINAL WHERE tested_at > {at(start)} AND tested_at <= {at(end)}"
            f"{where} ORDER BY p_value LIMIT 20"
        )
    order, text, cond = _EVIDENCE[rule.metric]
    cond = _expr(cond, rule)
    extra = f" AND ({cond})" if cond else ""
    if rule.metric == "negative_feedback_rate":
        extra = (
            f" AND event_id IN (SELECT event_id FROM {db}.llm_feedback WHERE score < 0 "
            f"AND ingested_at > {at(start)})"
        )
        start = start - 30 * 86_400  # the events may be much older than their feedback
    return (
        f"SELECT ts, event_id, model, {text} AS text FROM {db}.llm_events FINAL "
        f"WHERE ingested_at > {at(start)} AND ingested_at <= {at(end)}"
        f"{where}{filters_sql(rule)}{extra} "
        f"ORDER BY {order} LIMIT 20"
    )
