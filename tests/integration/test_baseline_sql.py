"""Baseline rules' SQL on the real engine: both samples, the rank statistic, the choice
of baseline and the evaluator's decision, against values worked out in Python.

Runs in a child process: chdb allows one engine directory per process.
"""

from __future__ import annotations

import pytest

from alerting.significance import proportion_test
from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

# v6 (the baseline) ran from an hour ago and still runs; v7 came 10 minutes ago with
# three times the toxic share and slower answers; v8 (A/A) matches v6; v5 stopped
# two hours ago. Latencies spread over 100 ms, v7's 40 ms higher, no two values tie.
SCRIPT = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime
from alerting.comparison import (Baseline, Version, choose_baseline, judge,
                                 served_before_query, versions_seen_query)
from alerting.config import Rule, RuleSet
from alerting.evaluator import Evaluator
from alerting.significance import parse_effect
from storage.engine import Engine
from storage.migrations import migrate

DB = "llmpulse_baseline"
now = time.time()
cols = ["event_id", "ts", "app", "prompt_version", "toxicity", "latency_ms", "ingested_at"]
rows = []
def add(version, n, toxic_every, latency, start_ago, end_ago):
    for i in range(n):
        at = datetime.fromtimestamp(now - start_ago + (start_ago - end_ago) * i / n, UTC)
        rows.append([f"{version}-{i}", at, "bot", version, 0.9 if i % toxic_every == 0 else 0.1,
                     latency(i), at])
add("v5", 120, 10, lambda i: 400.0 + (i * 37) % 100 + i * 1e-4, 10800, 7200)
add("v6", 1200, 10, lambda i: 500.0 + (i * 37) % 100 + i * 1e-4, 3600, 1)
add("v7", 300, 3, lambda i: 540.0 + (i * 41) % 100 + i * 1e-4, 600, 1)
add("v8", 300, 10, lambda i: 500.0 + (i * 43) % 100 + i * 1e-4 + 5e-5, 300, 1)

async def run(engine):
    async def query(sql):
        return engine.call(lambda: engine.client.query(sql).result_rows)
    out = {}
    rate = Rule("tox", "toxicity_rate", ">", 0.0, window_s=7200.0, min_events=30,
                receivers=("pager",), compare_to="baseline", alpha=0.05)
    versions = [Version(*map(str, r[:2]), float(r[2]), float(r[3]))
                for r in await query(versions_seen_query(DB, rate, now))]
    by = {v.prompt_version: v for v in versions}
    out["first_seen_order"] = [v.prompt_version
                               for v in sorted(versions, key=lambda v: v.first_seen)]
    async def chosen(v, firing):
        rows = await query(served_before_query(DB, rate, "bot", by[v].first_seen))
        served = {str(n): (float(t), int(c)) for n, t, c in rows}
        return choose_baseline(rate, by[v], versions, firing, served)
    async def baseline(v, firing):
        b = await chosen(v, firing)
        return b.version.prompt_version if b else None
    out["baseline_of"] = {v: await baseline(v, set()) for v in by}
    out["baseline_of_v7_with_v6_firing"] = await baseline("v7", {"v6"})
    v6_for_v7 = await chosen("v7", set())
    j = await judge(DB, rate, by["v7"], v6_for_v7, now, query)
    out["rate"] = {"worse": j.worse, **{k: getattr(j.comparison, k) for k in (
        "period", "baseline_count", "baseline_share", "candidate_count", "candidate_share",
        "p_value", "baseline_interval")}}
    j = await judge(DB, rate, by["v8"], v6_for_v7, now, query)
    out["aa"] = {"worse": j.worse, "p_value": j.comparison.p_value,
                 "baseline_count": j.comparison.baseline_count}
    big = Rule("tox", "toxicity_rate", ">", 0.0, window_s=7200.0, min_events=30,
               compare_to="baseline", min_effect=parse_effect("+30pp", True))
    out["below_min_effect"] = (await judge(DB, big, by["v7"], v6_for_v7, now, query)).worse
    stored = Rule("tox", "toxicity_rate", ">", 0.0, window_s=7200.0, min_events=30,
                  compare_to="v5")
    j = await judge(DB, stored, by["v7"], Baseline(by["v5"], by["v5"].last_seen), now, query)
    out["stored"] = {"period": j.comparison.period, "baseline_count": j.comparison.baseline_count}
    lat = Rule("slow", "latency_p95", ">", 0.0, window_s=7200.0, min_events=30,
               compare_to="baseline")
    j = await judge(DB, lat, by["v7"], v6_for_v7, now, query)
    c = j.comparison
    out["latency"] = {"worse": j.worse, **{k: getattr(c, k) for k in (
        "p_value", "baseline_value", "candidate_value", "cutoff", "statistic", "baseline_count",
        "baseline_share", "candidate_count", "candidate_share")}}
    sent = []
    async def save(states): pass
    async def send(note): sent.append(note)
    ev = Evaluator(RuleSet(rules=(rate,), receivers={}), DB, query, save, send,
                   lambda app, version: True, clock=lambda: now)
    await ev.tick()
    out["notes"] = [{"version": n.prompt_version, "summary": n.summary,
                     "baseline": n.evidence.comparison.baseline} for n in sent]
    return out

with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    engine.call(migrate, engine.client, DB, ttl_days=30)
    engine.call(lambda: engine.client.insert(f"{DB}.llm_events", rows, column_names=cols))
    print(json.dumps(asyncio.run(run(engine))))
"""


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_script(SCRIPT, tmp_path_factory.mktemp("chdb"))


def test_the_baseline_is_the_last_version_seen_before_the_candidate(found: dict) -> None:
    assert found["first_seen_order"] == ["v5", "v6", "v7", "v8"]
    assert found["baseline_of"] == {"v5": None, "v6": "v5", "v7": "v6", "v8": "v7"}


def test_a_version_with_an_alert_firing_is_passed_over(found: dict) -> None:
    assert found["baseline_of_v7_with_v6_firing"] == "v5"


def test_a_serving_baseline_counts_its_window_before_the_candidate_and_since(
    found: dict,
) -> None:
    r = found["rate"]
    # v6 served for the hour before v7 came 10 minutes ago, and beside it since; the
    # window (2 h) reaches back past v6's first event, so all 1,200 count, 1 in 10 toxic
    assert (r["period"], r["baseline_count"]) == ("concurrent", 1200)
    assert r["baseline_share"] == pytest.approx(120 / 1200)
    assert (r["candidate_count"], r["candidate_share"]) == (300, pytest.approx(100 / 300))


def test_the_p_value_is_the_sequential_tests_on_the_stored_counts(found: dict) -> None:
    r = found["rate"]
    nb, nc = r["baseline_count"], r["candidate_count"]
    expected = proportion_test(nb, round(r["baseline_share"] * nb), nc, 100)
    assert r["p_value"] == pytest.approx(expected.p_value)
    assert r["worse"] and r["p_value"] < 0.05
    lo, hi = r["baseline_interval"]
    assert lo < r["baseline_share"] < hi


def test_an_aa_version_is_not_worse(found: dict) -> None:
    assert not found["aa"]["worse"] and found["aa"]["p_value"] > 0.05


def test_a_significant_change_below_min_effect_does_not_count(found: dict) -> None:
    assert found["below_min_effect"] is False  # +23pp observed, +30pp asked


def test_a_baseline_without_recent_traffic_is_read_from_its_stored_period(found: dict) -> None:
    assert found["stored"] == {"period": "stored", "baseline_count": 120}


def test_latency_counts_the_candidates_calls_beyond_the_baselines_p95(found: dict) -> None:
    """v6's latencies sit in 500-600 ms, v7's in 540-640 ms."""
    lat = found["latency"]
    v6 = sorted(500.0 + (i * 37) % 100 + i * 1e-4 for i in range(1200))
    v7 = [540.0 + (i * 41) % 100 + i * 1e-4 for i in range(300)]
    assert lat["statistic"] == "p95" and lat["cutoff"] == lat["baseline_value"]
    assert v6[int(0.94 * len(v6))] <= lat["cutoff"] <= v6[-1]
    beyond = sum(v > lat["cutoff"] for v in v7)
    assert lat["candidate_share"] == pytest.approx(beyond / 300)
    assert lat["baseline_share"] == pytest.approx(
        sum(v > lat["cutoff"] for v in v6) / len(v6)
    )  # about 5 %, by construction
    nb = lat["baseline_count"]
    expected = proportion_test(nb, round(lat["baseline_share"] * nb), 300, beyond)
    assert lat["p_value"] == pytest.approx(expected.p_value)
    assert lat["worse"] and lat["candidate_value"] > lat["baseline_value"]


def test_the_evaluator_alerts_on_the_worse_version_only_and_names_its_baseline(
    found: dict,
) -> None:
    assert [(n["version"], n["baseline"]) for n in found["notes"]] == [("v7", "v6")]
    assert "worse than baseline v6" in found["notes"][0]["summary"]
