"""A baseline alert's evidence reaches every channel: both rates with intervals, both
counts, the effect, the always-valid p-value and the SQL of both samples."""

from __future__ import annotations

import dataclasses
import json

from alerting.alert import Comparison, Evidence, Notification, Rollback
from alerting.notifiers.alertmanager import alertmanager_alert
from alerting.notifiers.pagerduty import pagerduty_body
from alerting.notifiers.slack import slack_body
from alerting.notifiers.webhook import rollback_body

# 230 of 2,000 flagged on v6, 192 of 1,200 on v7 (the intervals and p-value are theirs)
COMPARISON = Comparison(
    baseline="v6", period="concurrent", statistic="share", baseline_value=0.115,
    candidate_value=0.16, cutoff=None,
    baseline_share=0.115, baseline_interval=(0.1018, 0.1297), baseline_count=2000,
    candidate_share=0.16, candidate_interval=(0.1403, 0.1818), candidate_count=1200,
    difference=0.045, ratio=0.16 / 0.115, p_value=0.0040, judged=True, alpha=0.05,
    min_effect="+2pp", method="two-proportion mSPRT, one-sided",
    query="SELECT 1 UNION ALL SELECT 2",
)  # fmt: skip
ALERT = Notification(
    notification_id="n-1", alert_id="a1", reason="first", status="firing", rule="worse_tox",
    labels={"alertname": "worse_tox", "app": "chat", "prompt_version": "v7"},
    severity="critical", metric="toxicity_rate", op=">", threshold=0.0, value=0.16,
    count=1200, window_s=21600, for_s=0, starts_at=1_700_000_000.0, ends_at=None,
    evaluated_at=1_700_000_000.0, summary="worse_tox: toxicity_rate on chat v7 is worse",
    receivers=("pager",), evidence=Evidence(query="SELECT ...", comparison=COMPARISON),
    rollback=Rollback("deployer", "chat", "v7", "v6"), compare_to="baseline",
)  # fmt: skip
LINE = (
    "share 16.0% [14.0%, 18.2%] (n=1200) vs 11.5% [10.2%, 13.0%] (n=2000) on baseline v6 "
    "(concurrent); +4.5pp, x1.39; p=0.004 (always valid, alpha 0.05)"
)


def test_the_comparison_reads_as_one_line() -> None:
    assert ALERT.comparison_text() == LINE


def test_a_latency_comparison_names_the_quantile_and_the_share_beyond_the_baselines() -> None:
    slow = dataclasses.replace(
        COMPARISON, statistic="p95", baseline_value=800.0, candidate_value=960.0, cutoff=800.0,
        baseline_share=0.05, candidate_share=0.12, difference=160.0, ratio=1.2,
    )  # fmt: skip
    assert slow.describe("ms") == (
        "p95 960 vs 800 (+160, x1.20); beyond the baseline's p95 800: "
        "12.0% [14.0%, 18.2%] (n=1200) vs 5.0% [10.2%, 13.0%] (n=2000) on baseline v6 "
        "(concurrent); p=0.004 (always valid, alpha 0.05)"
    )


def test_a_comparison_not_judged_yet_says_so_instead_of_a_p_value() -> None:
    early = dataclasses.replace(COMPARISON, judged=False, p_value=1.0)
    assert early.describe("ratio").endswith("not judged yet (too few flagged events expected)")


def test_the_comparison_survives_the_alerts_topic() -> None:
    assert Notification.from_json(ALERT.to_json()) == ALERT


def test_pagerduty_details_carry_both_samples_instead_of_a_threshold() -> None:
    details = pagerduty_body(ALERT, "key")["payload"]["custom_details"]
    assert details["comparison"] == LINE
    assert details["baseline"]["baseline_count"] == 2000
    assert details["baseline"]["query"] == "SELECT 1 UNION ALL SELECT 2"
    assert "threshold" not in details


def test_slack_shows_the_comparison_while_firing() -> None:
    text = json.dumps(slack_body(ALERT))
    assert "Compared with the baseline" in text and "p=0.004" in text
    assert "toxicity_rate vs baseline v6" in text
    resolved = dataclasses.replace(ALERT, status="resolved", reason="resolved", ends_at=1.7e9)
    assert "Compared with the baseline" not in json.dumps(slack_body(resolved))


def test_a_resolved_baseline_alert_says_what_it_was_compared_with() -> None:
    resolved = dataclasses.replace(
        ALERT, status="resolved", reason="resolved", value=None, count=0, ends_at=1.7e9,
        evidence=Evidence(query="SELECT ..."),
    )  # fmt: skip
    notes = alertmanager_alert(resolved)["annotations"]
    assert notes["description"] == "toxicity_rate: no longer worse than baseline over 6h"
    assert "threshold" not in notes


def test_alertmanager_annotations_name_the_baseline_and_p_value() -> None:
    notes = alertmanager_alert(ALERT)["annotations"]
    assert (notes["baseline"], notes["p_value"], notes["description"]) == ("v6", "0.004", LINE)
    assert notes["comparison_query"] == COMPARISON.query and "threshold" not in notes


def test_the_rollback_names_the_baseline_and_carries_the_comparison() -> None:
    body = rollback_body(ALERT)
    assert body["rollback_to"] == "v6"
    assert body["evidence"]["comparison"]["candidate_interval"] == (0.1403, 0.1818)
    assert json.loads(json.dumps(body))["evidence"]["comparison"]["p_value"] == 0.0040
