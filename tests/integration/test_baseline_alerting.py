"""A baseline rule on real parts: Tansu, a worker, chdb, real HTTP receivers on 127.0.0.1.

support-bot runs v6 (1 answer in 10 rude), then v7 (1 in 2 rude), then v8, which is
as rude as v6 by design but answers other seeded events (33 rude in 300 against v6's
20 in 200: an A/A deploy; its lowest p-value over every prefix of those events is
0.44, far from the rule's alpha of 0.01). The rule has no threshold: it fires when a
version is significantly ruder than its baseline. v7 must page once and be rolled
back to v6 once, with a valid signature and the comparison in the evidence; v8,
judged against v6 while v7's alert still fires, must page no one.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alerting.signing import verify
from tests.integration.alerting_traffic import APP, traffic, with_rules
from tests.integration.conftest import Stack
from tests.integration.receivers import Receivers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "rollback-test-secret-baseline"
RULES = """
receivers:
  - name: sre-pager
    type: pagerduty
    url: {pd}
    routing_key_env: TEST_PD_KEY
  - name: deployer
    type: rollback
    url: {rollback}
    secret_env: TEST_ROLLBACK_SECRET
rules:
  - name: ruder-than-baseline
    metric: toxicity_rate
    filters: {{app: support-bot}}
    compare_to: baseline
    op: ">"
    alpha: 0.01
    window: 5m
    min_events: 30
    receivers: [sre-pager]
    actions: [rollback]
"""


@pytest.fixture
def alerting(stack: Stack, receivers: Receivers, tmp_path: Path) -> Stack:
    text = RULES.format(pd=receivers.url("/pd"), rollback=receivers.url("/rollback"))
    env = {"TEST_PD_KEY": "pd-key", "TEST_ROLLBACK_SECRET": SECRET}
    return with_rules(stack, tmp_path / "rules.yaml", text, env)


def test_a_ruder_version_is_rolled_back_to_its_baseline_and_an_equal_one_is_left_alone(
    alerting: Stack, receivers: Receivers
) -> None:
    alerting.start_worker()
    traffic(alerting, "v6", 0.1, lambda: False, 10.0, "base")
    traffic(alerting, "v7", 0.5, lambda: bool(receivers.at("/rollback")), 120.0, "bad")
    sent = traffic(alerting, "v8", 0.1, lambda: False, 15.0, "same", first_seed=1000)
    stored = "SELECT count() AS n FROM llmpulse.llm_events FINAL WHERE prompt_version = 'v8'"
    assert alerting.wait_for(stored, sent, timeout=120) == sent
    log = alerting.home / "logs" / "worker.log"
    assert "judging support-bot v8 against v6" in log.read_text()
    assert "embedding model all-MiniLM-L6-v2 on cpu at fp32" in log.read_text()  # pinned
    time.sleep(3.0)  # six more evaluations of v8, every event of it stored

    (page,) = [r.json for r in receivers.at("/pd")]
    assert page["event_action"] == "trigger" and page["payload"]["group"] == "v7"
    details = page["payload"]["custom_details"]
    assert details["baseline"]["baseline"] == "v6" and details["baseline"]["p_value"] <= 0.01
    assert details["baseline"]["candidate_count"] >= 30
    assert details["baseline"]["candidate_share"] > details["baseline"]["baseline_share"]
    assert "on baseline v6" in details["comparison"]

    (call,) = receivers.at("/rollback")
    verify(SECRET, call.headers, call.body, now=time.time())  # raises if invalid
    body = call.json
    assert (body["app"], body["prompt_version"], body["rollback_to"]) == (APP, "v7", "v6")
    assert body["evidence"]["comparison"]["baseline"] == "v6"

    states = alerting.sql("SELECT labels['prompt_version'] AS v, state FROM llmpulse.alerts FINAL")
    assert [(s["v"], s["state"]) for s in states] == [("v7", "firing")]  # none for v8
