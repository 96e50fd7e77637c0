"""Baseline rules in a rules file: compare_to, min_effect and alpha, checked at their lines."""

from __future__ import annotations

import pytest

from alerting.rules import parse_rules
from alerting.significance import Effect

HEAD = """\
receivers:
  - name: pager
    type: pagerduty
    routing_key_env: PD_KEY
  - name: deployer
    type: rollback
    url: http://127.0.0.1:9000/rollback
    secret_env: ROLLBACK_SECRET
rules:
  - name: worse
    window: 6h
    receivers: [pager]
    actions: [rollback]
"""
# line 10: "- name: worse"; the keys below start at line 14


def rules(body: str) -> tuple[object, list[str]]:
    ruleset, found = parse_rules(HEAD + body, "r.yaml")
    return ruleset, [str(p) for p in found]


def test_a_baseline_rule_needs_no_threshold_and_reads_its_keys() -> None:
    ruleset, found = rules(
        "    metric: toxicity_rate\n    op: '>'\n    compare_to: baseline\n"
        "    min_effect: +5pp\n    alpha: 0.01\n"
    )
    assert found == []
    (rule,) = ruleset.rules  # type: ignore[attr-defined]
    assert (rule.compare_to, rule.min_effect, rule.alpha) == (
        "baseline", Effect("absolute", 0.05, "+5pp"), 0.01,
    )  # fmt: skip
    assert rule.higher_is_worse and rule.actions[0].receiver == "deployer"


def test_a_pinned_version_and_a_lower_is_worse_op_are_kept() -> None:
    ruleset, found = rules("    metric: latency_p95\n    op: '<'\n    compare_to: 7\n")
    assert found == []
    (rule,) = ruleset.rules  # type: ignore[attr-defined]
    assert (rule.compare_to, rule.higher_is_worse, rule.alpha) == ("7", False, 0.05)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    metric: toxicity_max\n    op: '>'\n    compare_to: baseline\n",
         "r.yaml:16: rules[worse].compare_to: toxicity_max cannot be compared with a baseline"),
        ("    metric: toxicity_rate\n    op: '>'\n    compare_to: baseline\n    threshold: 0.1\n",
         "r.yaml:17: rules[worse].threshold: a baseline rule has no threshold"),
        ("    metric: toxicity_rate\n    op: '>'\n    threshold: 0.1\n    min_effect: +5pp\n",
         "r.yaml:17: rules[worse].min_effect: only applies to baseline rules"),
        ("    metric: latency_p95\n    op: '>'\n    compare_to: baseline\n    min_effect: +5pp\n",
         "r.yaml:17: rules[worse].min_effect: pp (percentage points) applies to rate metrics"),
        ("    metric: toxicity_rate\n    op: '>'\n    compare_to: baseline\n    alpha: 0.7\n",
         "r.yaml:17: rules[worse].alpha: must be between 0 and 0.5"),
        ("    metric: toxicity_rate\n    op: '>'\n    compare_to: [v6]\n",
         "r.yaml:16: rules[worse].compare_to: expected a single value"),
        ("    metric: toxicity_rate\n    op: '>'\n",
         "r.yaml:10: rules[worse]: missing required key 'threshold'"),
    ],
)  # fmt: skip
def test_each_baseline_mistake_is_reported_at_its_line(body: str, expected: str) -> None:
    ruleset, found = rules(body)
    assert ruleset is None
    assert any(p.startswith(expected) for p in found), found


def test_the_baseline_is_the_version_serving_when_the_candidate_came_not_one_rolled_back() -> None:
    """v7 was rolled back to v6 an hour before v8 came: v8 is compared with v6."""
    from alerting.comparison import Version, choose_baseline
    from alerting.config import Rule

    rule = Rule("r", "toxicity_rate", ">", 0.0, window_s=3600.0, compare_to="baseline")
    now = 1_800_000_000.0
    v6 = Version("bot", "v6", now - 90_000, now)
    v7 = Version("bot", "v7", now - 10_000, now - 7200)  # rolled back 2 h ago
    v8 = Version("bot", "v8", now - 3600, now)
    served = {"v6": (now - 3601, 60), "v7": (now - 7200, 0)}
    chosen = choose_baseline(rule, v8, [v6, v7, v8], set(), served)
    assert chosen is not None and (chosen.version.prompt_version, chosen.until) == (
        "v6",
        now - 3601,
    )
    canary = {"v6": (now - 3601, 54), "v7": (now - 3600.5, 6)}  # v7 a canary beside v6
    chosen = choose_baseline(rule, v8, [v6, v7, v8], set(), canary)
    assert chosen is not None and chosen.version.prompt_version == "v6"
    assert choose_baseline(rule, v8, [v6, v7, v8], {"v6"}, canary).version.prompt_version == "v7"
