"""Two prompt versions (or A/B variants) side by side: tests, Holm, a verdict, the SQL.

Why these tests: rates are Bernoulli counts, so a pooled two-proportion z-test is
the textbook large-sample test (model-score rates are weighted by 1 / sample_rate, see
:func:`two_proportion_z`); latency and cost are skewed with long tails, and relevance
(cosines of the question with the answer and with the best chunk) is bounded and
lumpy, so the rank-based Mann-Whitney U compares them without assuming a shape (for
relevance, lower is worse; over the model-scored events, unweighted); embeddings are
compared as whole distributions with the MMD permutation test the drift monitor
uses. All tests share the same events, so they are dependent: Holm controls the
family-wise error under any dependence, and a family of ~10 loses little power.

Everything is computed here from per-event rows; storage only supplies rows through
``query(sql) -> list[dict]``, so the module is testable with a fake source and every
number can be reproduced by rerunning the SQL kept in the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from core.errors import LlmpulseError
from core.sampling import weighted_hits_sql, weighted_rate, weighted_rate_sql
from core.sql import datetime_literal, quote
from core.thresholds import FLAG_AT, flagged
from core.time import parse_since
from detectors.base import DetectorError

__all__ = ["LOWER_IS_WORSE", "MIN_EVENTS", "ROWS_PER_SIDE", "Comparison", "MetricResult",
           "NoEventsError", "Sample", "compare", "holm", "two_proportion_z",
           "verdict_text"]  # fmt: skip

MIN_EVENTS = 20  # per side; below this a test says "not enough data" instead of a verdict
# The worker's SQL endpoint refuses results over 100k rows; two sides must fit in one.
ROWS_PER_SIDE = 45_000
SIDES = ("baseline", "candidate")
WORSE, BETTER, SAME = "worse", "better", "no significant difference"
NO_DATA, DRIFTED, NOT_COMPARABLE = "not enough data", "drifted", "not comparable"


Row = dict[str, Any]
QueryFn = Callable[[str], list[Row]]


@dataclass(frozen=True)
class _Rate:
    """Hits in Python and in SQL (``sql_flag``); ``over``: the column that must be
    non-NULL to count; ``weighted``: a model score, each scored event weighing
    1 / sample_rate (:mod:`core.sampling`)."""

    hit: Callable[[Row], bool]
    sql_flag: str
    over: str | None = None
    weighted: bool = False

    def applies(self, row: Row) -> bool:
        return self.over is None or row.get(self.over) is not None

    def sample(self, rows: list[Row]) -> Sample:
        """n: the events the rate rests on; hits: the weighted rate times n for a model
        score (the flagged events when every weight is 1), else the flagged events."""
        eligible = [r for r in rows if self.applies(r)]
        if self.weighted:
            n, rate, hits = weighted_rate((self.hit(r), r.get("sample_rate")) for r in eligible)
            return Sample(n, rate, hits)
        x = sum(1 for r in eligible if self.hit(r))
        return Sample(len(eligible), x / len(eligible) if eligible else None, x)

    @property
    def sql(self) -> str:
        """hits, n and rate, as :meth:`sample` computes them (NULL, not NaN, for the rate
        of a side with no eligible event)."""
        n = f"count({self.over or ''})"
        if self.weighted and self.over:
            flag, over = self.sql_flag, self.over
            return (
                f"{weighted_hits_sql(flag, over)} AS hits, {n} AS n, "
                f"{weighted_rate_sql(flag, over)} AS rate"
            )
        return f"countIf({self.sql_flag}) AS hits, {n} AS n, if(n = 0, NULL, hits / n) AS rate"


def _ge(column: str) -> Callable[[Row], bool]:
    return lambda r: flagged(r.get(column))


def _flag(column: str) -> Callable[[Row], bool]:
    return lambda r: bool(r.get(column))


def _score(column: str) -> _Rate:
    return _Rate(_ge(column), f"{column} >= {FLAG_AT}", column, weighted=True)


# A model score (toxicity, hallucination, the injection score) is NULL on an event that
# was not model-scored (the worker samples them under load), so its rate is over the
# events that carry it, each weighing 1 / sample_rate: unbiased even when the sample
# rate changed within the window.
RATES = {
    "toxicity_rate": _score("toxicity"),
    "hallucination_rate": _score("hallucination"),
    "error_rate": _Rate(_flag("error"), "error"),
    "pii_rate": _Rate(_flag("pii"), "pii"),
    "injection_rate": _score("injection"),
    "negative_feedback_rate": _Rate(lambda r: r["feedback"] < 0, "feedback < 0", "feedback"),
}
DISTRIBUTIONS = ("latency_ms", "cost_usd", "answer_relevance", "context_relevance")
LOWER_IS_WORSE = ("answer_relevance", "context_relevance")  # a drop in relevance is worse
KINDS = {"output_drift": "output", "input_drift": "input"}


class NoEventsError(LlmpulseError, ValueError):
    """A side has no events in the window; the message lists the values that do."""


@dataclass(frozen=True)
class Sample:
    """One side of one metric: ``value`` is the rate, the median, or the MMD^2 statistic."""

    n: int
    value: float | None = None
    # rates: events over the threshold; for a model score, the rate weighted by
    # 1 / sample_rate times n (not a whole number when the sample rate varied)
    hits: float | None = None
    p95: float | None = None  # distributions


@dataclass(frozen=True)
class MetricResult:
    name: str
    test: str
    baseline: Sample
    candidate: Sample
    p_value: float | None  # None: not tested (not enough data)
    statistic: float | None = None  # z, U, or MMD^2
    effect: float | None = None  # rate difference, P(candidate > baseline), centroid distance
    p_adjusted: float | None = None
    verdict: str = NO_DATA
    sql: str = ""
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    app: str
    by: str
    baseline: str
    candidate: str
    since: datetime
    until: datetime
    alpha: float
    metrics: list[MetricResult]
    counts: dict[str, dict[str, int]]
    limits: list[str] = field(default_factory=list)
    events_sql: str = ""
    verdict: str = ""

    def metric(self, name: str) -> MetricResult:
        return next(m for m in self.metrics if m.name == name)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"], out["until"] = self.since.isoformat(), self.until.isoformat()
        return out


def two_proportion_z(x1: float, n1: int, x2: float, n2: int) -> tuple[float, float]:
    """Pooled two-sided z-test of x2/n2 against x1/n1: (z, p); (0, 1) when nothing varies.

    For a model-score rate, x is the share weighted by 1 / sample_rate times n, the
    scored events: the test compares the weighted shares with the variance of equally
    weighted events, an approximation that understates it (Kish's design effect) while
    the sample rate varied within a side, and is exact with one rate."""
    from scipy.stats import norm

    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:  # 0/0: both sides all hits or no hits, no evidence of a difference
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, float(2.0 * norm.sf(abs(z)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order (reject where adjusted < alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare(
    query: QueryFn,
    app: str,
    baseline: str,
    candidate: str,
    since: str | timedelta | datetime = "24h",
    by: str = "prompt_version",
    alpha: float = 0.01,
    max_vectors: int = 1000,
    seed: int = 0,
    *,
    until: datetime | None = None,
    device: str = "cpu",
    rows_per_side: int = ROWS_PER_SIDE,
) -> Comparison:
    """Test every metric of ``candidate`` against ``baseline`` over [since, until)."""
    if by not in ("prompt_version", "variant"):
        raise ValueError(f"by must be prompt_version or variant, not {by!r}")
    if baseline == candidate:
        raise ValueError(f"baseline and candidate are both {baseline!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    run = query
    end = (until or datetime.now(UTC)).astimezone(UTC)
    start = parse_since(since, end)
    window = (
        f"app = {quote(app)} AND ts >= {datetime_literal(start)} AND ts < {datetime_literal(end)}"
    )
    where = f"{window} AND {by} IN ({quote(baseline)}, {quote(candidate)})"
    side = f"if({by} = {quote(baseline)}, 'baseline', 'candidate')"
    events_sql = _events_sql(where, side, seed, rows_per_side)
    rows = run(events_sql)
    split = {s: [r for r in rows if r["side"] == s] for s in SIDES}
    for s, name in zip(SIDES, (baseline, candidate), strict=True):
        if not split[s]:
            raise NoEventsError(_no_events(run, window, app, by, name, start))
    metrics = [_rate(name, split, events_sql) for name in RATES]
    metrics += [_distribution(name, split, events_sql) for name in DISTRIBUTIONS]
    vectors: dict[str, tuple[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name, kind in KINDS.items():
        sql = _vectors_sql(window, where, side, kind, seed, max_vectors)
        vectors[name] = (sql, _vectors(run(sql), max_vectors, seed))
    # the family is known before the MMD runs: it sets how many permutations they need
    family = sum(m.p_value is not None for m in metrics)
    family += sum(min(len(x) for x in v) >= MIN_EVENTS for _, v in vectors.values())
    for name, (sql, pair) in vectors.items():
        metrics.append(_drift(name, sql, pair, alpha, family, seed, device))
    counts = {}
    for i, s in enumerate(SIDES):
        counts[s] = _counts(split[s]) | {
            f"{KINDS[n]}_vectors": len(v[i]) for n, (_, v) in vectors.items()
        }
    limits = [
        f"{s}: {c['events']} events in the window, {c['sampled']} used (a seeded hash "
        f"sample, at most {rows_per_side} per side)"
        for s, c in counts.items() if c["sampled"] < c["events"]
    ]  # fmt: skip
    out = Comparison(app, by, baseline, candidate, start, end, alpha, _decide(metrics, alpha),
                     counts, limits, events_sql)  # fmt: skip
    return replace(out, verdict=verdict_text(out))


def verdict_text(c: Comparison) -> str:
    """One plain sentence: worse, better, unchanged, drift, and what could not be tested."""
    by_verdict: dict[str, list[MetricResult]] = {}
    for m in c.metrics:
        by_verdict.setdefault(m.verdict, []).append(m)
    parts = []
    for word in (WORSE, BETTER):
        if found := by_verdict.get(word, []):
            head = f"{c.candidate} is {word} than {c.baseline} on " if not parts else f"{word} on "
            parts.append(head + _and([_describe(m) for m in found]))
    if same := [m.name for m in by_verdict.get(SAME, [])]:
        parts.append(f"no significant difference on {', '.join(same)}")
    for m in by_verdict.get(DRIFTED, []):
        kind = KINDS[m.name]
        why = " (traffic differed, so the other differences may not be the prompt's)"
        parts.append(f"{kind}s drifted (MMD adj. p={_p(m.p_adjusted)})"
                     + (why if kind == "input" else ""))  # fmt: skip
    if missing := [m.name for m in by_verdict.get(NO_DATA, [])]:
        parts.append(f"not enough data for {', '.join(missing)} (< {MIN_EVENTS} per side)")
    parts += [f"{m.name} not comparable: {m.note}" for m in by_verdict.get(NOT_COMPARABLE, [])]
    return "; ".join(parts)


def _events_sql(where: str, side: str, seed: int, limit: int) -> str:
    return f"""SELECT e.side AS side, e.event_id AS event_id, e.error AS error,
    e.latency_ms AS latency_ms, e.cost_usd AS cost_usd, e.toxicity AS toxicity,
    e.hallucination AS hallucination, e.pii AS pii, e.injection AS injection,
    e.sample_rate AS sample_rate, e.answer_relevance AS answer_relevance,
    e.context_relevance AS context_relevance, f.score AS feedback,
    count() OVER (PARTITION BY e.side) AS side_events
FROM (
    SELECT {side} AS side, event_id, status = 'error' AS error, latency_ms, cost_usd,
        toxicity, hallucination, notEmpty(pii_input) OR notEmpty(pii_output) AS pii, injection,
        sample_rate, answer_relevance, context_relevance_max AS context_relevance
    FROM llm_events FINAL WHERE {where}
) AS e
LEFT JOIN (
    SELECT event_id, toNullable(argMax(score, ingested_at)) AS score FROM llm_feedback
    WHERE event_id IN (SELECT event_id FROM llm_events WHERE {where}) GROUP BY event_id
) AS f ON f.event_id = e.event_id
ORDER BY e.side, sipHash64(e.event_id, {int(seed)})
LIMIT {int(limit)} BY e.side"""


def _vectors_sql(window: str, where: str, side: str, kind: str, seed: int, limit: int) -> str:
    return f"""SELECT e.side AS side, v.vector AS vector
FROM (
    SELECT event_id, vector FROM llm_embeddings FINAL
    WHERE kind = {quote(kind)} AND {window}
        AND event_id IN (SELECT event_id FROM llm_events WHERE {where})
) AS v
INNER JOIN (SELECT event_id, {side} AS side FROM llm_events FINAL WHERE {where}) AS e
    ON e.event_id = v.event_id
ORDER BY e.side, sipHash64(v.event_id, {int(seed)})
LIMIT {int(limit)} BY e.side"""


def _aggregate_sql(events_sql: str, columns: str) -> str:
    return f"SELECT side, {columns}\nFROM (\n{events_sql}\n)\nGROUP BY side ORDER BY side"


def _no_events(run: QueryFn, window: str, app: str, by: str, name: str, start: datetime) -> str:
    sql = (f"SELECT {by} AS version, count() AS events FROM llm_events FINAL WHERE {window} "
           "GROUP BY version ORDER BY events DESC LIMIT 20")  # fmt: skip
    seen = ", ".join(str(r["version"]) or "(empty)" for r in run(sql)) or "none"
    return (f"no events for app={app} {by}={name} since {start.isoformat(timespec='seconds')}; "
            f"{by}s seen: {seen}")  # fmt: skip


def _rate(name: str, split: dict[str, list[Row]], events_sql: str) -> MetricResult:
    spec = RATES[name]
    b, c = (spec.sample(split[s]) for s in SIDES)
    sql = _aggregate_sql(events_sql, spec.sql)
    if min(b.n, c.n) < MIN_EVENTS:
        return MetricResult(name, "two-proportion z", b, c, None, sql=sql)
    z, p = two_proportion_z(b.hits or 0, b.n, c.hits or 0, c.n)
    diff = (c.value or 0.0) - (b.value or 0.0)
    return MetricResult(name, "two-proportion z", b, c, p, z, diff, sql=sql)


def _distribution(name: str, split: dict[str, list[Row]], events_sql: str) -> MetricResult:
    from scipy.stats import mannwhitneyu

    values = [
        np.array([r[name] for r in split[s] if r.get(name) is not None], float) for s in SIDES
    ]
    b, c = (_summary(v) for v in values)
    sql = _aggregate_sql(
        events_sql,
        f"count({name}) AS n, quantileExactInclusive(0.5)({name}) AS median, "
        f"quantileExactInclusive(0.95)({name}) AS p95",
    )
    if min(b.n, c.n) < MIN_EVENTS:
        return MetricResult(name, "Mann-Whitney U", b, c, None, sql=sql)
    u, p = mannwhitneyu(values[1], values[0], alternative="two-sided")
    # U / (n_b n_c) = P(candidate > baseline) + P(tie) / 2: above 0.5 means higher
    effect = float(u) / (b.n * c.n)
    return MetricResult(name, "Mann-Whitney U", b, c, float(p), float(u), effect, sql=sql)


def _summary(v: np.ndarray) -> Sample:
    return (
        Sample(len(v), float(np.median(v)), p95=float(np.percentile(v, 95)))
        if len(v)
        else Sample(0)
    )


def _vectors(rows: list[Row], cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in SIDES:
        v = [r["vector"] for r in rows if r["side"] == s]
        if len(v) > cap:  # the SQL already caps; a source that does not is sampled here
            v = [v[i] for i in sorted(rng.choice(len(v), cap, replace=False))]
        out.append(np.asarray(v, dtype=np.float32) if v else np.zeros((0, 0), np.float32))
    return out[0], out[1]


def _drift(name: str, sql: str, vectors: tuple[np.ndarray, np.ndarray], alpha: float,
           family: int, seed: int, device: str) -> MetricResult:  # fmt: skip
    from detectors.drift import MMDDriftTest, refine_permutations

    ref, cur = vectors
    b, c = Sample(len(ref)), Sample(len(cur))
    test = "MMD permutation"
    if min(b.n, c.n) < MIN_EVENTS:
        return MetricResult(name, test, b, c, None, sql=sql)
    # enough permutations that the smallest p-value can pass Holm's strictest step
    permutations = refine_permutations(max(family, 1), alpha)
    try:
        r = MMDDriftTest(alpha, permutations, seed, device).test(ref, cur)
    except DetectorError as exc:
        return MetricResult(name, test, b, c, None, sql=sql, verdict=NOT_COMPARABLE,
                            note=str(exc))  # fmt: skip
    return MetricResult(name, test, b, c, r.p_value, r.statistic, r.distance, sql=sql,
                        note=f"{r.permutations} permutations")  # fmt: skip


def _decide(metrics: list[MetricResult], alpha: float) -> list[MetricResult]:
    tested = [i for i, m in enumerate(metrics) if m.p_value is not None]
    adjusted = dict(zip(tested, holm([metrics[i].p_value or 0.0 for i in tested]), strict=True))
    out = []
    for i, m in enumerate(metrics):
        p_adj = adjusted.get(i)
        if p_adj is None:  # not tested: keeps its "not enough data" / "not comparable"
            out.append(m)
            continue
        # rates: effect is the difference; Mann-Whitney: P(candidate > baseline)
        higher = (m.effect or 0.0) > (0.5 if m.name in DISTRIBUTIONS else 0.0)
        worse = higher != (m.name in LOWER_IS_WORSE)
        verdict = DRIFTED if m.name in KINDS else WORSE if worse else BETTER
        out.append(replace(m, p_adjusted=p_adj, verdict=verdict if p_adj < alpha else SAME))
    return out


def _counts(rows: list[Row]) -> dict[str, int]:
    return {
        "events": int(rows[0].get("side_events") or len(rows)) if rows else 0,
        "sampled": len(rows),
        "with_toxicity": sum(r.get("toxicity") is not None for r in rows),
        "with_injection": sum(r.get("injection") is not None for r in rows),
        "with_hallucination": sum(r.get("hallucination") is not None for r in rows),
        "with_context_relevance": sum(r.get("context_relevance") is not None for r in rows),
        "with_feedback": sum(r.get("feedback") is not None for r in rows),
    }


def _p(p: float | None) -> str:
    return "n/a" if p is None else "<1e-300" if p < 1e-300 else f"{p:.2g}"


def _describe(m: MetricResult) -> str:
    """``toxicity_rate (2.1% → 38.0%, adj. p=1e-40)``; medians for latency and cost."""
    b, c = (x.value or 0.0 for x in (m.baseline, m.candidate))
    change = f"{100 * b:.1f}% → {100 * c:.1f}%" if m.name in RATES else f"median {b:.4g} → {c:.4g}"
    return f"{m.name} ({change}, adj. p={_p(m.p_adjusted)})"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
