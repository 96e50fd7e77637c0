"""Baseline rules: which version a candidate is compared with, the SQL of both samples,
and the decision (see :mod:`alerting.significance` for why repeated looks are safe).

A candidate is judged for ``window`` from its first stored event (the rule's
horizon), on all its events so far: the sample only grows, which is what the
sequential bound needs, so it holds over the whole horizon. Its baseline is the
version deployed just before it (or a pinned one). The baseline's sample is its
last ``window`` of traffic before the candidate appeared, and whatever it served since
beside the candidate (a canary, an A/B split: ``concurrent``); a baseline that had
stopped before (a full rollout: ``stored``) contributes its last ``window``. One
definition for both, so a sample never jumps when a rollout ends, and events stored
out of order around the switch do not matter. Rates compare flagged shares; latency, TTFT and cost
compare the shares of events above the baseline's own quantile (its p95 for
``latency_p95``, its median cost per call for ``cost_usd``), and relevance the shares above
the baseline's median relevance (a rule with op ``<``: fewer events above it is worse).

A model-score rate (toxicity, hallucination, injection) under load shedding is the
weighted share of the scored events, each weighing 1 / sample_rate (:mod:`core.sampling`);
so are the relevance shares, and the median they are cut at is the weighted median.
The test reads each sample as n = the scored events and hits = that weighted share x n
(a real number, not a count), so the shares it compares are the weighted ones and its
sample sizes are what was actually scored. That is an approximation: the test's
variance p(1-p)/n holds for equally weighted events, and unequal weights inflate the
weighted share's variance by Kish's design effect, n * sum(w^2) / sum(w)^2 (1 with one
sample rate in the sample; 1.44 for half the scored events at rate 1 and half at 0.2).
So while the rate changed inside a sample the p-value is somewhat too small; with one
rate the test is the unweighted one, and at rate 1 (the worker keeping up) exactly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alerting.alert import Comparison
from alerting.config import COMPARABLE, Rule
from alerting.metrics import RATE_EVENTS, at, filters_sql
from alerting.significance import proportion_test, wilson_interval
from core.sampling import weighted_hits_sql, weighted_median_sql
from core.sql import quote

__all__ = [
    "MIN_SAMPLE",
    "Baseline",
    "Judged",
    "Version",
    "choose_baseline",
    "judge",
    "served_before_query",
    "versions_seen_query",
]

Query = Callable[[str], Awaitable[list[tuple]]]
LOOKBACK_S = 30 * 86_400  # versions seen this long ago can still be a baseline
MIN_SAMPLE = 30  # events each sample needs before it is judged, whatever min_events says
OVERLAP_S = 60.0  # a baseline serving this long after the candidate came is "concurrent"

# distribution metric -> (column, the quantile the metric names (cost: the median call),
# whether it is a model score, its events weighing 1 / sample_rate)
_DISTRIBUTIONS = {
    "latency_p95": ("latency_ms", 0.95, False),
    "latency_p99": ("latency_ms", 0.99, False),
    "ttft_p95": ("ttft_ms", 0.95, False),
    "cost_usd": ("cost_usd", 0.5, False),
    "answer_relevance": ("answer_relevance", 0.5, True),
    "context_relevance": ("context_relevance_max", 0.5, True),
}


@dataclass(frozen=True)
class Version:
    app: str
    prompt_version: str
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Baseline:
    """The version a candidate is compared with, and its last event before the
    candidate appeared: the end of its reference period, fixed once chosen."""

    version: Version
    until: float


@dataclass(frozen=True)
class Judged:
    """One candidate's decision: worse (significant, and by at least min_effect)?"""

    worse: bool
    comparison: Comparison


def versions_seen_query(db: str, rule: Rule, now: float) -> str:
    """When each version of each app was first and last seen (the rule's filters apply,
    except on the version itself)."""
    filters = filters_sql(rule, skip=("prompt_version",))
    return (
        "SELECT app, prompt_version, toUnixTimestamp64Milli(min(ingested_at)) / 1000, "
        f"toUnixTimestamp64Milli(max(ingested_at)) / 1000 FROM {db}.llm_events "
        f"WHERE ingested_at > {at(now - LOOKBACK_S)} AND ingested_at <= {at(now)}{filters} "
        "GROUP BY app, prompt_version"
    )


def served_before_query(db: str, rule: Rule, app: str, before: float) -> str:
    """Each version's last event before ``before`` (the candidate's first), and how many
    it served in the ``OVERLAP_S`` before it."""
    filters = filters_sql(rule, skip=("app", "prompt_version"))
    return (
        "SELECT prompt_version, toUnixTimestamp64Milli(max(ingested_at)) / 1000, "
        f"countIf(ingested_at > {at(before - OVERLAP_S)}) "
        f"FROM {db}.llm_events WHERE app = {quote(app)} "
        f"AND ingested_at > {at(before - LOOKBACK_S)} AND ingested_at < {at(before)}{filters} "
        "GROUP BY prompt_version"
    )


def choose_baseline(
    rule: Rule, candidate: Version, versions: list[Version], unhealthy: set[str],
    served_before: dict[str, tuple[float, int]],
) -> Baseline | None:  # fmt: skip
    """The pinned version, or the version that was serving when the candidate came,
    with no alert firing on it: the one it replaced, and the rollback target. Serving
    means the most events in the minute before the candidate's first (the main version
    beside a canary), else the latest event. ``served_before`` is version -> (last
    event before the candidate, events in that minute). A version rolled back earlier
    served earlier, so it is not chosen; the choice is made once and kept."""
    others = {
        v.prompt_version: v for v in versions
        if v.app == candidate.app and v.prompt_version != candidate.prompt_version
    }  # fmt: skip
    if rule.compare_to != "baseline":
        pinned = others.get(str(rule.compare_to))
        if pinned is None:
            return None
        until = served_before.get(pinned.prompt_version, (pinned.last_seen, 0))[0]
        return Baseline(pinned, until)
    serving = [
        (recent, until, name) for name, (until, recent) in served_before.items()
        if name in others and name not in unhealthy
    ]  # fmt: skip
    if not serving:
        return None
    _, until, name = max(serving)
    return Baseline(others[name], until)


async def judge(
    db: str, rule: Rule, candidate: Version, chosen: Baseline, now: float, query: Query
) -> Judged | None:
    """Test the candidate against the baseline; ``None`` while either sample is smaller
    than ``min_events`` (at least ``MIN_SAMPLE``)."""
    baseline = chosen.version
    since = min(candidate.first_seen, chosen.until) - rule.window_s
    ranges = {"candidate": (candidate.first_seen - 0.001, now), "baseline": (since, now)}
    serving = baseline.last_seen > candidate.first_seen + OVERLAP_S
    period = "concurrent" if serving else "stored"
    if COMPARABLE[rule.metric] == "rate":
        return await _judge_rate(db, rule, candidate, baseline, ranges, period, query)
    return await _judge_distribution(db, rule, candidate, baseline, ranges, period, query)


def _where(db: str, rule: Rule, app: str, version: str, span: tuple[float, float]) -> str:
    filters = filters_sql(rule, skip=("app", "prompt_version"))
    return (
        f"FROM {db}.llm_events FINAL WHERE app = {quote(app)} "
        f"AND prompt_version = {quote(version)} AND ingested_at > {at(span[0])} "
        f"AND ingested_at <= {at(span[1])}{filters}"
    )


def _rate_sql(db: str, rule: Rule, app: str, version: str, span: tuple[float, float]) -> str:
    """One sample of a rate: (n, k), the events it rests on and the flagged among them;
    for a model score, k is the weighted share times n (see the module's docstring)."""
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
    rate = RATE_EVENTS[rule.metric]
    return (
        f"SELECT {rate.n} AS n, {rate.hits.format(st=st)} AS k "
        f"{_where(db, rule, app, version, span)}"
    )


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
        counts[side] = (int(rows[0][0]), float(rows[0][1])) if rows else (0, 0.0)
    (nb, kb), (nc, kc) = counts["baseline"], counts["candidate"]
    if min(nb, nc) < max(rule.min_events, MIN_SAMPLE):
        return None
    both = f"{sqls['candidate']}\nUNION ALL\n{sqls['baseline']}"
    return _decide(rule, base, period, (nb, kb), (nc, kc), both)


async def _judge_distribution(
    db: str, rule: Rule, cand: Version, base: Version,
    ranges: dict[str, tuple[float, float]], period: str, query: Query,
) -> Judged | None:  # fmt: skip
    column, q, weighted = _DISTRIBUTIONS[rule.metric]
    where = {
        side: f"{_where(db, rule, v.app, v.prompt_version, ranges[side])} AND {column} IS NOT NULL"
        for side, v in (("candidate", cand), ("baseline", base))
    }
    stat = weighted_median_sql(column) if weighted else f"quantileExact({q!r})({column})"
    rows = await query(f"SELECT count(), {stat} {where['baseline']}")
    nb, cutoff = (int(rows[0][0]), float(rows[0][1])) if rows and rows[0][0] else (0, 0.0)
    if nb < max(rule.min_events, MIN_SAMPLE):
        return None
    beyond = f"{column} > {cutoff!r}"  # a larger share above it is worse for op >, better for <
    hits = weighted_hits_sql(beyond, column) if weighted else f"countIf({beyond})"
    sqls = {
        side: f"SELECT count(), {hits}, {stat} {where[side]}" for side in ("candidate", "baseline")
    }
    found = {}
    for side, sql in sqls.items():
        r = (await query(sql))[0]
        found[side] = (int(r[0]), float(r[1]), float(r[2]) if r[0] else 0.0)
    (nb, kb, stat_b), (nc, kc, stat_c) = found["baseline"], found["candidate"]
    if min(nb, nc) < max(rule.min_events, MIN_SAMPLE):
        return None
    both = f"{sqls['candidate']}\nUNION ALL\n{sqls['baseline']}"
    name = "median" if q == 0.5 else f"p{round(q * 100)}"
    return _decide(rule, base, period, (nb, kb), (nc, kc), both, (name, stat_b, stat_c, cutoff))


def _decide(
    rule: Rule, base: Version, period: str, baseline: tuple[int, float],
    candidate: tuple[int, float], sql: str,
    distribution: tuple[str, float, float, float] | None = None,
) -> Judged:  # fmt: skip
    """``baseline``, ``candidate``: (n, hits), hits weighted for a model-score rate;
    ``distribution``: (statistic, its baseline and candidate values, the cutoff)."""
    (nb, kb), (nc, kc) = baseline, candidate
    # Flagged shares, or shares above the baseline's quantile: worse in the rule's direction.
    test = proportion_test(nb, kb, nc, kc, rule.higher_is_worse)
    worse = test.judged and test.estimate > 0 and test.p_value <= rule.alpha
    b, c = kb / nb, kc / nc
    stat, stat_b, stat_c, cutoff = distribution or ("share", b, c, None)
    if worse and rule.min_effect is not None:
        worse = rule.min_effect.met(stat_b, stat_c, rule.higher_is_worse)
    comparison = Comparison(
        baseline=base.prompt_version, period=period, statistic=stat,
        baseline_value=stat_b, candidate_value=stat_c, cutoff=cutoff,
        baseline_share=b, baseline_interval=wilson_interval(nb, kb), baseline_count=nb,
        candidate_share=c, candidate_interval=wilson_interval(nc, kc), candidate_count=nc,
        difference=stat_c - stat_b, ratio=(stat_c / stat_b) if stat_b else None,
        p_value=test.p_value, judged=test.judged, alpha=rule.alpha,
        min_effect=rule.min_effect.text if rule.min_effect else "", method=test.method,
        query=sql,
    )  # fmt: skip
    return Judged(worse, comparison)
