"""Baseline rules: which version a candidate is compared with, the SQL of both samples,
and the decision (see :mod:`alerting.significance` for why repeated looks are safe).

The candidate's sample is its events since it was first seen, within the rule's
window. The baseline's is its events over the same time when it still has traffic (a
canary, an A/B split: ``concurrent``), else the last window of traffic it had before
it stopped (a full rollout: ``stored``). With a window longer than a deploy takes to
judge, the candidate's sample only grows, which is the setting of the sequential
guarantee; once the window slides, each window is judged afresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alerting.alert import Comparison
from alerting.config import COMPARABLE, Rule
from alerting.metrics import at
from alerting.significance import Z95, TestResult, proportion_test, rank_test, wilson_interval
from core.sql import quote

__all__ = ["Judged", "Version", "choose_baseline", "judge", "versions_seen_query"]

Query = Callable[[str], Awaitable[list[tuple]]]
LOOKBACK_S = 30 * 86_400  # versions seen this long ago can still be a baseline

# rate metric -> (events counted, events flagged)
_RATES = {
    "error_rate": ("count()", "countIf(status = 'error')"),
    "toxicity_rate": ("count()", "countIf(toxicity >= {st})"),
    "hallucination_rate": ("count(hallucination)", "countIf(hallucination >= {st})"),
    "pii_rate": ("count()", "countIf(notEmpty(pii_input) OR notEmpty(pii_output))"),
    "injection_rate": ("count()", "countIf(injection >= {st})"),
}
# distribution metric -> (column, quantile; None: the mean per call)
_DISTRIBUTIONS = {
    "latency_p95": ("latency_ms", 0.95),
    "latency_p99": ("latency_ms", 0.99),
    "ttft_p95": ("ttft_ms", 0.95),
    "cost_usd": ("cost_usd", None),
}


@dataclass(frozen=True)
class Version:
    app: str
    prompt_version: str
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Judged:
    """One candidate's decision: worse (significant, and by at least min_effect)?"""

    worse: bool
    comparison: Comparison


def versions_seen_query(db: str, rule: Rule, now: float) -> str:
    """When each version of each app was first and last seen (the rule's filters apply,
    except on the version itself)."""
    filters = "".join(
        f" AND {k} = {quote(v)}" for k, v in sorted(rule.filters.items()) if k != "prompt_version"
    )
    return (
        "SELECT app, prompt_version, toUnixTimestamp64Milli(min(ingested_at)) / 1000, "
        f"toUnixTimestamp64Milli(max(ingested_at)) / 1000 FROM {db}.llm_events "
        f"WHERE ingested_at > {at(now - LOOKBACK_S)} AND ingested_at <= {at(now)}{filters} "
        "GROUP BY app, prompt_version"
    )


def choose_baseline(
    rule: Rule, candidate: Version, versions: list[Version], unhealthy: set[str]
) -> Version | None:
    """The pinned version, or the app's last healthy version from before the candidate
    (most recently seen, with no alert firing): the rollback target."""
    others = [
        v for v in versions
        if v.app == candidate.app and v.prompt_version != candidate.prompt_version
    ]  # fmt: skip
    if rule.compare_to != "baseline":
        return next((v for v in others if v.prompt_version == rule.compare_to), None)
    older = [
        v for v in others
        if v.first_seen < candidate.first_seen and v.prompt_version not in unhealthy
    ]  # fmt: skip
    return max(older, key=lambda v: v.last_seen, default=None)


async def judge(
    db: str, rule: Rule, candidate: Version, baseline: Version, now: float, query: Query
) -> Judged | None:
    """Test the candidate against the baseline; ``None`` while either sample is smaller
    than ``min_events``."""
    start = max(candidate.first_seen - 0.001, now - rule.window_s)
    ranges = {"candidate": (start, now), "baseline": (start, now)}
    period = "concurrent"
    if await _count(db, rule, baseline.app, baseline.prompt_version, start, now, query) < max(
        rule.min_events, 2
    ):
        period = "stored"  # no traffic now: its last window before it stopped
        ranges["baseline"] = (baseline.last_seen - rule.window_s, baseline.last_seen + 0.001)
    if COMPARABLE[rule.metric] == "rate":
        return await _judge_rate(db, rule, candidate, baseline, ranges, period, query)
    return await _judge_distribution(db, rule, candidate, baseline, ranges, period, query)


def _where(db: str, rule: Rule, app: str, version: str, span: tuple[float, float]) -> str:
    filters = "".join(
        f" AND {k} = {quote(v)}" for k, v in sorted(rule.filters.items())
        if k not in ("app", "prompt_version")
    )  # fmt: skip
    return (
        f"FROM {db}.llm_events FINAL WHERE app = {quote(app)} "
        f"AND prompt_version = {quote(version)} AND ingested_at > {at(span[0])} "
        f"AND ingested_at <= {at(span[1])}{filters}"
    )


def _rate_sql(db: str, rule: Rule, app: str, version: str, span: tuple[float, float]) -> str:
    st = repr(float(rule.score_threshold))
    if rule.metric == "negative_feedback_rate":
        return (
            "SELECT count() AS n, countIf(f.score < 0) AS k FROM (SELECT event_id, "
            f"argMax(score, ingested_at) AS score FROM {db}.llm_feedback "
            f"WHERE ingested_at > {at(span[0])} AND ingested_at <= {at(span[1])} "
            f"GROUP BY event_id) AS f INNER JOIN (SELECT event_id "
            f"{_where(db, rule, app, version, (span[0] - LOOKBACK_S, span[1]))}) AS e "
            "ON e.event_id = f.event_id"
        )
    n, k = _RATES[rule.metric]
    return f"SELECT {n} AS n, {k.format(st=st)} AS k {_where(db, rule, app, version, span)}"


async def _count(
    db: str, rule: Rule, app: str, version: str, start: float, end: float, query: Query
) -> int:
    if COMPARABLE[rule.metric] == "rate":
        rows = await query(_rate_sql(db, rule, app, version, (start, end)))
    else:
        column, _ = _DISTRIBUTIONS[rule.metric]
        rows = await query(f"SELECT count({column}) {_where(db, rule, app, version, (start, end))}")
    return int(rows[0][0]) if rows else 0


async def _judge_rate(
    db: str, rule: Rule, cand: Version, base: Version,
    ranges: dict[str, tuple[float, float]], period: str, query: Query,
) -> Judged | None:  # fmt: skip
    sqls = {
        "candidate": _rate_sql(db, rule, cand.app, cand.prompt_version, ranges["candidate"]),
        "baseline": _rate_sql(db, rule, base.app, base.prompt_version, ranges["baseline"]),
    }
    counts = {}
    for side, sql in sqls.items():
        rows = await query(sql)
        counts[side] = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    (nb, kb), (nc, kc) = counts["baseline"], counts["candidate"]
    if min(nb, nc) < rule.min_events:
        return None
    test = proportion_test(nb, kb, nc, kc, rule.higher_is_worse)
    both = f"{sqls['candidate']}\nUNION ALL\n{sqls['baseline']}"
    return _decide(
        rule, base, period, "share", (kb / nb, wilson_interval(nb, kb), nb),
        (kc / nc, wilson_interval(nc, kc), nc), test, both,
    )  # fmt: skip


async def _judge_distribution(
    db: str, rule: Rule, cand: Version, base: Version,
    ranges: dict[str, tuple[float, float]], period: str, query: Query,
) -> Judged | None:  # fmt: skip
    column, q = _DISTRIBUTIONS[rule.metric]
    parts = [
        f"SELECT toFloat64({column}) AS v, {g} AS g "
        f"{_where(db, rule, v.app, v.prompt_version, ranges[side])} AND {column} IS NOT NULL"
        for g, side, v in ((0, "candidate", cand), (1, "baseline", base))
    ]
    sample = " UNION ALL ".join(parts)
    rows = await query(f"SELECT countIf(g = 0), countIf(g = 1) FROM ({sample})")
    nc, nb = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    if min(nb, nc) < rule.min_events:
        return None
    if q is None:
        stat, name = "avgIf(v, g = {g}), stddevSampIf(v, g = {g}), 0", "mean"
    else:
        half = {g: Z95 * (q * (1 - q) / n) ** 0.5 for g, n in ((0, nc), (1, nb))}
        stat = (
            "quantileExactIf(" + repr(q) + ")(v, g = {g}), "
            "quantileExactIf({lo})(v, g = {g}), quantileExactIf({hi})(v, g = {g})"
        )
        name = f"p{round(q * 100)}"
    cols = [
        stat.format(g=g, lo=repr(max(0.0, q - half[g])), hi=repr(min(1.0, q + half[g])))
        if q is not None else stat.format(g=g)
        for g in (0, 1)
    ]  # fmt: skip
    sql = f"SELECT (mannWhitneyUTest('two-sided')(v, g)).1, {cols[0]}, {cols[1]} FROM ({sample})"
    row = (await query(sql))[0]
    u, c, b = float(row[0]), [float(x) for x in row[1:4]], [float(x) for x in row[4:7]]
    test = rank_test(nb, nc, u, rule.higher_is_worse)

    def side(values: list[float], n: int) -> tuple[float, tuple[float, float], int]:
        if q is None:  # mean: normal interval from the standard deviation
            half = Z95 * values[1] / n**0.5
            return values[0], (values[0] - half, values[0] + half), n
        return values[0], (values[1], values[2]), n

    return _decide(rule, base, period, name, side(b, nb), side(c, nc), test, sql)


def _decide(
    rule: Rule, base: Version, period: str, statistic: str,
    baseline: tuple[float, tuple[float, float], int],
    candidate: tuple[float, tuple[float, float], int],
    test: TestResult, sql: str,
) -> Judged:  # fmt: skip
    b, c = baseline[0], candidate[0]
    worse = test.estimate > 0 and test.p_value <= rule.alpha
    if worse and rule.min_effect is not None:
        worse = rule.min_effect.met(b, c, rule.higher_is_worse)
    comparison = Comparison(
        baseline=base.prompt_version, period=period, statistic=statistic,
        baseline_value=b, baseline_interval=baseline[1], baseline_count=baseline[2],
        candidate_value=c, candidate_interval=candidate[1], candidate_count=candidate[2],
        difference=c - b, ratio=(c / b) if b else None, p_value=test.p_value,
        alpha=rule.alpha, min_effect=rule.min_effect.text if rule.min_effect else "",
        method=test.method, query=sql,
    )  # fmt: skip
    return Judged(worse, comparison)
