"""Relevance in rules files: answer_relevance and context_relevance load with thresholds,
min_events and baseline comparisons, and their mistakes are reported at their lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from alerting.config import COMPARABLE, METRICS
from alerting.metrics import metric_query
from alerting.rules import parse_rules
from alerting.significance import Effect
from llmpulse.cli import main

HEAD = """\
receivers:
  - name: pager
    type: pagerduty
    routing_key_env: PD_KEY
rules:
  - name: off-topic
    window: 15m
    receivers: [pager]
"""
# line 6: "- name: off-topic"; the keys below start at line 9


def rules(body: str) -> tuple[object, list[str]]:
    ruleset, found = parse_rules(HEAD + body, "r.yaml")
    return ruleset, [str(p) for p in found]


@pytest.mark.parametrize("metric", ["answer_relevance", "context_relevance"])
def test_a_drop_below_a_threshold_loads(metric: str) -> None:
    ruleset, found = rules(f"    metric: {metric}\n    op: '<'\n    threshold: 0.35\n"
                           "    min_events: 50\n")  # fmt: skip
    assert found == []
    (rule,) = ruleset.rules  # type: ignore[attr-defined]
    assert (rule.metric, rule.op, rule.threshold, rule.min_events) == (metric, "<", 0.35, 50)
    assert rule.breaches(0.3) and not rule.breaches(0.4)
    assert METRICS[metric].unit == "cosine"


def test_context_relevance_counts_only_the_events_with_context() -> None:
    assert METRICS["context_relevance"].counted == "scored events with context"
    assert METRICS["answer_relevance"].counted == "scored events"


def test_a_relevance_threshold_is_a_cosine_between_0_and_1() -> None:
    ruleset, found = rules("    metric: context_relevance\n    op: '<'\n    threshold: 35\n")
    assert ruleset is None
    assert found[0].startswith("r.yaml:11: rules[off-topic].threshold: context_relevance is a "
                               "cosine between 0 and 1")  # fmt: skip


def test_a_relevance_drop_can_be_compared_with_the_baseline() -> None:
    ruleset, found = rules("    metric: answer_relevance\n    op: '<'\n    compare_to: baseline\n"
                           "    min_effect: 0.05\n")  # fmt: skip
    assert found == []
    (rule,) = ruleset.rules  # type: ignore[attr-defined]
    assert COMPARABLE["answer_relevance"] == "distribution"
    assert (rule.compare_to, rule.min_effect) == ("baseline", Effect("absolute", 0.05, "0.05"))
    assert not rule.higher_is_worse
    # a drop of 0.05 is enough, 0.04 is not
    assert rule.min_effect.met(0.60, 0.55, higher_is_worse=False)
    assert not rule.min_effect.met(0.60, 0.56, higher_is_worse=False)


def test_percentage_points_are_for_rates_not_relevance() -> None:
    ruleset, found = rules("    metric: context_relevance\n    op: '<'\n    compare_to: baseline\n"
                           "    min_effect: +5pp\n")  # fmt: skip
    assert ruleset is None
    assert found[0].startswith("r.yaml:12: rules[off-topic].min_effect: pp (percentage points)")


def test_the_metric_is_the_weighted_median_over_the_events_that_carry_it() -> None:
    ruleset, _ = rules("    metric: context_relevance\n    op: '<'\n    threshold: 0.35\n")
    (rule,) = ruleset.rules  # type: ignore[attr-defined]
    sql = metric_query("db", rule, 1_000_000.0).sql
    assert "quantileExactWeighted(0.5)(context_relevance_max, toUInt64(round(1000 / " in sql
    assert "count(context_relevance_max) AS n" in sql
    assert "GROUP BY app, prompt_version" in sql


def test_llmpulse_rules_check_accepts_relevance_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        HEAD + "    metric: context_relevance\n    op: '<'\n    threshold: 0.35\n"
        "  - name: answers-drift-off\n    metric: answer_relevance\n    window: 1h\n"
        "    op: '<'\n    compare_to: baseline\n    min_effect: 0.05\n    receivers: [pager]\n"
    )
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 2 rules, 1 receiver\n")
    assert "context_relevance" in result.stdout and "< 0.35" in result.stdout
    assert "lower by 0.05 than baseline (alpha 0.05)" in result.stdout
