"""Relevance on the real engine: the views of migration 0011, the rule metrics and their
evidence, a baseline rule on a relevance drop, and the retrieval kinds of llm_drift,
against values worked out by hand.

Every relevance value is a multiple of 1/16, exact in Float32, so no expected value
depends on rounding. Runs in a child process: chdb allows one engine directory per process.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

# bot v7, one minute: four events scored at rate 1 with answer relevance 2/16 .. 5/16 and
# two scored at rate 0.25 (each standing for 4 events) with 12/16 and 14/16; one more not
# model-scored (NULL). Context on three of the scored ones only. Weighted, the six stand
# for 4 + 8 = 12 events: the weighted median answer relevance is 12/16 (the first value
# whose running weight reaches half, 8 of 12), where the plain lower median is 4/16.
# rag v6 (the baseline) and v8 (A/A): 200 events, context relevance k/16 for k = 4..13;
# v7 the same shifted down by 4/16, so fewer of its events lie above v6's median (8/16).
SCRIPT = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime, timedelta
from alerting.comparison import Baseline, Version, judge
from alerting.config import Rule
from alerting.metrics import evidence_query, metric_query
from analysis.compare import compare
from analysis.report import build_report
from pathlib import Path
from storage.engine import Engine
from storage.migrations import migrate

DB = "llmpulse_relevance"
now = time.time()
minute = datetime.fromtimestamp((int(now) // 60 - 2) * 60, UTC)
fresh = datetime.fromtimestamp(now - 5, UTC)
cols = ["event_id", "ts", "app", "prompt_version", "input", "output", "context",
        "answer_relevance", "context_relevance_max", "context_relevance_mean", "toxicity",
        "sample_rate", "ingested_at"]
rows = []
bot = [(2, 2, 1, 1.0), (3, 6, 2, 1.0), (4, None, None, 1.0), (5, 10, 4, 1.0),
       (12, 8, 8, 0.25), (14, None, None, 0.25)]
for i, (a, cmax, cmean, rate) in enumerate(bot):
    rows.append([f"b{i}", minute + timedelta(seconds=i), "bot", "v7", f"question {i}",
                 f"answer {i}", [f"chunk {i}"] if cmax is not None else [], a / 16,
                 None if cmax is None else cmax / 16, None if cmean is None else cmean / 16,
                 0.9 if i == 0 else 0.1, rate, fresh])
rows.append(["b-shed", minute + timedelta(seconds=9), "bot", "v7", "q", "a", [], None, None,
             None, None, 0.25, fresh])

def rag(version, shift, start_ago):
    for i in range(200):
        at = datetime.fromtimestamp(now - start_ago + i, UTC)
        k = 4 + i % 10 - shift
        rows.append([f"{version}-{i}", at, "rag", version, "q", "a", ["c"], 0.5, k / 16, k / 16,
                     0.1, 1.0, at])
rag("v6", 0, 3000)
rag("v7", 4, 600)
rag("v8", 0, 300)

async def judged(engine, metric, candidate, baseline):
    async def query(sql):
        return engine.call(lambda: engine.client.query(sql).result_rows)
    rule = Rule("drop", metric, "<", 0.0, window_s=7200.0, min_events=30,
                compare_to="baseline")
    first = lambda v: min(r[12] for r in rows if r[3] == v and r[2] == "rag").timestamp()
    last = lambda v: max(r[12] for r in rows if r[3] == v and r[2] == "rag").timestamp()
    cand = Version("rag", candidate, first(candidate), last(candidate))
    base = Version("rag", baseline, first(baseline), last(baseline))
    j = await judge(DB, rule, cand, Baseline(base, first(candidate) - 1), now, query)
    c = j.comparison
    return {"worse": j.worse, **{k: getattr(c, k) for k in (
        "statistic", "cutoff", "baseline_value", "candidate_value", "baseline_share",
        "candidate_share", "baseline_count", "candidate_count")}}

with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    engine.call(migrate, engine.client, DB, ttl_days=30)
    c = engine.client
    def go():
        c.insert(f"{DB}.llm_events", rows, column_names=cols)
        c.insert(f"{DB}.llm_drift", [["rag|v7", "rag", "v7", "chunk_length", fresh, fresh, 1,
                                      0.001, 1, fresh]],
                 column_names=["key", "app", "prompt_version", "kind", "window_start",
                               "window_end", "drifted", "p_value", "first_offset", "tested_at"])
        out = {}
        named = lambda sql: [dict(zip(r.column_names, x)) for r in [c.query(sql)]
                             for x in r.result_rows]
        out["1m"] = named(f"SELECT * FROM {DB}.llm_metrics_1m WHERE app = 'bot'")
        out["1h"] = named(f"SELECT * FROM {DB}.llm_metrics_1h WHERE app = 'bot'")
        out["metrics"] = {}
        for metric in ("answer_relevance", "context_relevance"):
            rule = Rule("r", metric, "<", 0.5, window_s=60.0, filters={"app": "bot"})
            out["metrics"][metric] = [list(r) for r in
                                      c.query(metric_query(DB, rule, now).sql).result_rows]
            ev = evidence_query(DB, rule, {"app": "bot", "prompt_version": "v7"}, now - 60, now)
            out.setdefault("evidence", {})[metric] = [[r[1], r[3]] for r in
                                                      c.query(ev).result_rows]
        out["drift_kinds"] = [r[0] for r in c.query(
            f"SELECT toString(kind) FROM {DB}.llm_drift FINAL").result_rows]
        return out
    out = engine.call(go)
    out["drop"] = asyncio.run(judged(engine, "context_relevance", "v7", "v6"))
    out["aa"] = asyncio.run(judged(engine, "context_relevance", "v8", "v6"))
    named = lambda sql: [dict(zip(r.column_names, x)) for r in [c.query(sql)]
                         for x in r.result_rows]
    until = datetime.fromtimestamp(now + 1, UTC)
    m = engine.call(compare, named, "rag", "v6", "v7", "2h", until=until).metric(
        "context_relevance")
    out["compare"] = {"verdict": m.verdict, "n": [m.baseline.n, m.candidate.n],
                      "medians": [m.baseline.value, m.candidate.value], "sql": named(m.sql)}
    seen = []
    class Result:
        def __init__(self, r):
            self.columns, self.rows = list(r.column_names), [list(x) for x in r.result_rows]
    def report_query(sql):
        seen.append((sql, Result(c.query(sql))))
        return seen[-1][1]
    engine.call(build_report, report_query, "bot", until - timedelta(hours=2),
                Path(sys.argv[1]).parent / "report", now=until)
    out["report_totals"] = [dict(zip(r.columns, x)) for sql, r in seen if "first_ts" in sql
                            for x in r.rows]
    out["report_buckets"] = [dict(zip(r.columns, x)) for sql, r in seen
                             if "toStartOfInterval" in sql for x in r.rows]
    print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_script(SCRIPT, tmp_path_factory.mktemp("chdb"))


def test_the_minute_view_gives_weighted_medians_and_what_they_rest_on(found: dict) -> None:
    (row,) = found["1m"]
    assert row["answer_relevance_p50"] == 12 / 16  # the plain lower median would be 4/16
    assert row["answer_relevance_scored"] == 6  # the unscored event does not count
    # best chunks 2, 6, 10 (rate 1) and 8 (rate 0.25, weight 4): 8/16 reaches half of 7
    assert row["context_relevance_p50"] == 8 / 16
    assert row["context_relevance_scored"] == 4
    # means 1, 2, 4 weighing 1 each and 8 weighing 4, over 7: (1 + 2 + 4 + 32) / 7 sixteenths
    assert row["context_relevance_mean_avg"] == pytest.approx(39 / 7 / 16)


def test_the_views_keep_every_column_of_0009(found: dict) -> None:
    (row,) = found["1m"]
    assert row["events"] == 7 and row["toxicity_scored"] == 6
    # one toxic of the four at rate 1; weighted over 1 + 1 + 1 + 1 + 4 + 4 = 12 events
    assert row["toxicity_rate"] == pytest.approx(1 / 12)
    assert {"latency_p95", "hallucination_weight", "negative_feedback_rate"} <= set(row)
    (hour,) = found["1h"]
    assert hour["answer_relevance_p50"] == 12 / 16 and hour["context_relevance_scored"] == 4


def test_relevance_rule_metrics_are_the_weighted_medians_and_their_counts(found: dict) -> None:
    assert found["metrics"]["answer_relevance"] == [["bot", "v7", 12 / 16, 6]]
    assert found["metrics"]["context_relevance"] == [["bot", "v7", 8 / 16, 4]]


def test_evidence_lists_the_least_relevant_events_first(found: dict) -> None:
    answers = found["evidence"]["answer_relevance"]
    assert [e for e, _ in answers] == ["b0", "b1", "b2", "b3", "b4", "b5"]
    assert answers[0][1] == "question 0 → answer 0"
    chunks = found["evidence"]["context_relevance"]
    assert [e for e, _ in chunks] == ["b0", "b1", "b4", "b3"]
    assert chunks[0][1] == "question 0 | retrieved: chunk 0"


def test_a_context_relevance_drop_is_worse_than_the_baseline(found: dict) -> None:
    drop = found["drop"]
    assert drop["statistic"] == "median" and drop["cutoff"] == 8 / 16
    assert (drop["baseline_value"], drop["candidate_value"]) == (8 / 16, 4 / 16)
    # above 8/16: k = 9..13 of v6 (half), only k = 13 of v7 once shifted (a tenth)
    assert (drop["baseline_share"], drop["candidate_share"]) == (0.5, 0.1)
    assert (drop["baseline_count"], drop["candidate_count"]) == (200, 200)
    assert drop["worse"] is True


def test_the_same_relevance_is_not_worse(found: dict) -> None:
    assert found["aa"]["worse"] is False
    assert found["aa"]["candidate_share"] == found["aa"]["baseline_share"] == 0.5


def test_llm_drift_stores_the_retrieval_kinds(found: dict) -> None:
    assert found["drift_kinds"] == ["chunk_length"]


def test_compare_finds_the_candidates_chunks_less_relevant(found: dict) -> None:
    cmp = found["compare"]
    assert cmp["verdict"] == "worse" and cmp["n"] == [200, 200]
    # the interpolated medians of k/16, k = 4..13 (8.5/16), and of the shifted values
    assert cmp["medians"] == [8.5 / 16, 4.5 / 16]
    medians = [r["median"] for r in sorted(cmp["sql"], key=lambda r: r["side"])]
    assert medians == [8.5 / 16, 4.5 / 16]  # its SQL, rerun, says the same


def test_the_report_reads_the_weighted_medians(found: dict) -> None:
    (totals,) = found["report_totals"]
    assert (totals["answer_relevance"], totals["context_relevance"]) == (12 / 16, 8 / 16)
    # nine seconds of events: 1-second buckets, one event each (the last not model-scored)
    by_second = [r["answer_relevance_p50"] for r in sorted(found["report_buckets"],
                                                           key=lambda r: r["t"])]  # fmt: skip
    assert by_second == [2 / 16, 3 / 16, 4 / 16, 5 / 16, 12 / 16, 14 / 16, None]
