"""Every alert metric's SQL on the real engine, against values worked out by hand.

Runs in a child process: chdb allows one engine directory per process.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

SCRIPT = r"""
import json, sys, time
from datetime import UTC, datetime
from alerting.config import Rule
from alerting.metrics import evidence_query, metric_query, versions_query
from storage.engine import Engine
from storage.migrations import migrate

DB = "llmpulse_metrics"
now = time.time()
fresh, old = datetime.fromtimestamp(now - 5, UTC), datetime.fromtimestamp(now - 3600, UTC)
cols = ["event_id", "ts", "app", "environment", "prompt_version", "status", "toxicity",
        "hallucination", "pii_input", "injection", "latency_ms", "ttft_ms", "cost_usd",
        "output", "ingested_at"]
rows = []
for i in range(10):  # v7, prod, stored 5 s ago
    rows.append([f"e{i}", fresh, "bot", "prod", "v7", "error" if i == 0 else "ok",
                 [0.9, 0.8][i] if i < 2 else 0.1, [0.9, 0.2, 0.8, 0.1][i] if i < 4 else None,
                 ["email"] if i == 5 else [], 0.95 if i in (6, 7, 8) else 0.0,
                 100.0 * (i + 1), 10.0 * (i + 1), 0.01, f"answer {i}", fresh])
rows.append(["old", old, "bot", "prod", "v7", "ok", 1.0, None, [], 0.0, 1.0, 1.0, 5.0, "o", old])
rows.append(["stg", fresh, "bot", "staging", "v7", "ok", 1.0, None, [], 0.0, 1.0, 1.0, 5.0, "s",
             fresh])
for i in range(5):
    rows.append([f"v6-{i}", fresh, "bot", "prod", "v6", "ok", 0.0, None, [], 0.0, 50.0, 5.0,
                 0.01, "fine", fresh])
feedback = [[f"e{i}", fresh, s, "", "thumbs", fresh] for i, s in enumerate([-1, -0.5, 1, 0])]
drift = [["bot|v7", "bot", "v7", "output", fresh, fresh, 1, 0.001, 1, fresh],
         ["bot|v7", "bot", "v7", "input", fresh, fresh, 0, 0.3, 2, fresh]]

with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    engine.call(migrate, engine.client, DB, ttl_days=30)
    c = engine.client
    def go():
        c.insert(f"{DB}.llm_events", rows, column_names=cols)
        c.insert(f"{DB}.llm_feedback", feedback,
                 column_names=["event_id", "ts", "score", "comment", "source", "ingested_at"])
        c.insert(f"{DB}.llm_drift", drift, column_names=[
            "key", "app", "prompt_version", "kind", "window_start", "window_end", "drifted",
            "p_value", "first_offset", "tested_at"])
        out = {}
        for metric in ["event_count", "error_rate", "toxicity_rate", "toxicity_max",
                       "hallucination_rate", "pii_rate", "injection_rate", "latency_p95",
                       "latency_p99", "ttft_p95", "cost_usd", "cost_burn_rate",
                       "negative_feedback_rate", "drift", "drift_p_value"]:
            filters = {"app": "bot"} if metric.startswith("drift") else {"environment": "prod"}
            rule = Rule("r", metric, ">", 0.5, window_s=60.0, filters=filters,
                        budget_usd=1.0 if metric == "cost_burn_rate" else None)
            q = metric_query(DB, rule, now)
            out[metric] = [list(r) for r in c.query(q.sql).result_rows]
        rule = Rule("r", "toxicity_rate", ">", 0.5, window_s=60.0, filters={"environment": "prod"})
        ev = evidence_query(DB, rule, {"app": "bot", "prompt_version": "v7"}, now - 60, now)
        out["evidence"] = [r[1] for r in c.query(ev).result_rows]
        out["versions"] = [r[0] for r in c.query(versions_query(DB, "bot", "v7", now)).result_rows]
        return out
    print(json.dumps(engine.call(go)))
"""


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_script(SCRIPT, tmp_path_factory.mktemp("chdb"))


def by_version(rows: list[list]) -> dict[str, tuple[float, int]]:
    return {r[1]: (pytest.approx(r[2]), r[3]) for r in rows}


@pytest.mark.parametrize(
    ("metric", "v7"),
    [
        # 10 v7 events stored 5 s ago in prod; one stored an hour ago and one in staging
        # (both toxic and expensive) must not count
        ("event_count", (10, 10)),
        ("error_rate", (0.1, 10)),  # one error
        ("toxicity_rate", (0.2, 10)),  # 0.9 and 0.8 reach 0.5
        ("toxicity_max", (0.9, 10)),
        ("hallucination_rate", (0.5, 4)),  # only the 4 answers with a score count
        ("pii_rate", (0.1, 10)),
        ("injection_rate", (0.3, 10)),
        ("latency_p95", (1000.0, 10)),  # exact quantile of 100..1000
        ("latency_p99", (1000.0, 10)),
        ("ttft_p95", (100.0, 10)),
        ("cost_usd", (0.1, 10)),
        ("negative_feedback_rate", (0.5, 4)),  # -1 and -0.5 of 4 verdicts
        ("drift", (1.0, 2)),  # one of two tests drifted
        ("drift_p_value", (0.001, 2)),
    ],
)
def test_each_metric_computes_what_the_docs_say(values: dict, metric: str, v7: tuple) -> None:
    got = by_version(values[metric])
    assert got["v7"] == (pytest.approx(v7[0]), v7[1])


def test_v6_is_clean_where_v7_is_toxic(values: dict) -> None:
    assert by_version(values["toxicity_rate"])["v6"] == (pytest.approx(0.0), 5)


def test_burn_rate_is_spend_rate_over_budget_rate(values: dict) -> None:
    # per app: 0.15 USD in 60 s, against 1 USD per day
    ((app, rate, n),) = values["cost_burn_rate"]
    assert (app, n) == ("bot", 15)
    assert rate == pytest.approx((0.15 / 60) / (1.0 / 86_400))


def test_evidence_lists_the_worst_events_of_the_key_first(values: dict) -> None:
    assert values["evidence"] == ["e0", "e1"]


def test_other_versions_of_the_app_are_rollback_candidates(values: dict) -> None:
    assert values["versions"] == ["v6"]
