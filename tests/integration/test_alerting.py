"""Alerting on real parts: Tansu, a worker, chdb, and real HTTP receivers on 127.0.0.1.

The incident: support-bot runs prompt v6, then v7 starts answering rudely. The rule
(toxicity_rate > 25% over 10 s, for 2 s, at least 20 events; v6's synthetic
replies, shuffled keywords, score as brusque about one time in twenty) must page once, post to
Slack once, call the rollback service once with a valid signature and rollback_to=v6,
and resolve once when traffic is back on v6.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from alerting.signing import verify
from tests.integration.alerting_traffic import APP, traffic, with_rules
from tests.integration.conftest import Stack
from tests.integration.receivers import Receivers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "rollback-test-secret-7f3a"
PD_KEY = "pd-routing-key-42"

RULES = """
receivers:
  - name: sre-pager
    type: pagerduty
    url: {pd}
    routing_key_env: TEST_PD_KEY
  - name: llm-channel
    type: slack
    url_env: TEST_SLACK_URL
  - name: deployer
    type: rollback
    url: {rollback}
    secret_env: TEST_ROLLBACK_SECRET
rules:
  - name: toxic-output
    metric: toxicity_rate
    filters: {{app: support-bot}}
    window: 10s
    op: ">"
    threshold: 0.25
    for: 2s
    min_events: 20
    severity: critical
    receivers: [sre-pager, llm-channel]
    actions: [rollback]
"""


@pytest.fixture
def alerting(stack: Stack, receivers: Receivers, tmp_path: Path) -> Stack:
    text = RULES.format(pd=receivers.url("/pd"), rollback=receivers.url("/rollback"))
    env = {"TEST_PD_KEY": PD_KEY, "TEST_SLACK_URL": receivers.url("/slack"),
           "TEST_ROLLBACK_SECRET": SECRET}  # fmt: skip
    return with_rules(stack, tmp_path / "rules.yaml", text, env)


def test_a_toxic_prompt_version_pages_once_rolls_back_once_and_resolves_once(
    alerting: Stack, receivers: Receivers
) -> None:
    alerting.start_worker()
    traffic(alerting, "v6", 0.0, lambda: False, 4.0, "calm")
    traffic(alerting, "v7", 0.5, lambda: bool(receivers.at("/rollback")), 120.0, "bad")
    traffic(alerting, "v6", 0.0, lambda: len(receivers.at("/pd")) >= 2, 120.0, "back")
    time.sleep(3.0)  # anything extra (a second trigger, a repeat) would arrive by now

    pd = [r.json for r in receivers.at("/pd")]
    assert [m["event_action"] for m in pd] == ["trigger", "resolve"]
    assert pd[0]["dedup_key"] == pd[1]["dedup_key"]
    assert pd[0]["routing_key"] == PD_KEY
    assert pd[0]["payload"]["severity"] == "critical"
    assert pd[0]["payload"]["component"] == APP and pd[0]["payload"]["group"] == "v7"
    details = pd[0]["payload"]["custom_details"]
    assert details["value"] > 0.25 and details["count"] >= 20
    assert "toxicity" in details["evidence_query"]

    slack = [r.json for r in receivers.at("/slack")]
    assert len(slack) == 2
    assert "FIRING" in slack[0]["blocks"][0]["text"]["text"]
    assert "RESOLVED" in slack[1]["blocks"][0]["text"]["text"]

    (call,) = receivers.at("/rollback")
    verify(SECRET, call.headers, call.body, now=time.time())  # raises if invalid
    body = call.json
    assert (body["app"], body["prompt_version"], body["rollback_to"]) == (APP, "v7", "v6")
    assert call.headers["Idempotency-Key"] == body["idempotency_key"]

    log = alerting.sql(
        "SELECT receiver, reason, outcome, count() AS n FROM llmpulse.alert_log "
        "GROUP BY receiver, reason, outcome ORDER BY receiver, reason, outcome"
    )
    assert [(r["receiver"], r["reason"], r["outcome"], int(r["n"])) for r in log] == [
        ("deployer", "first", "delivered", 1),
        ("llm-channel", "first", "delivered", 1),
        ("llm-channel", "resolved", "delivered", 1),
        ("sre-pager", "first", "delivered", 1),
        ("sre-pager", "resolved", "delivered", 1),
    ]
    # v6 never alerted: the only alert is v7's, and it is resolved
    states = alerting.sql("SELECT labels['prompt_version'] AS v, state FROM llmpulse.alerts FINAL")
    assert [(s["v"], s["state"]) for s in states] == [("v7", "resolved")]


def test_a_flaky_receiver_is_retried_and_a_broken_one_is_given_up_visibly(
    alerting: Stack, receivers: Receivers
) -> None:
    receivers.statuses["/pd"] = [500, 500, 500, 202]
    receivers.statuses["/slack"] = [400]
    alerting.start_worker()
    traffic(alerting, "v6", 0.0, lambda: False, 3.0, "calm")
    traffic(alerting, "v7", 0.5, lambda: len(receivers.at("/pd")) >= 4, 120.0, "bad")
    time.sleep(3.0)

    pd = [r.json for r in receivers.at("/pd")]
    assert [m["event_action"] for m in pd] == ["trigger"] * 4  # 3 failures, then delivered
    assert len({m["dedup_key"] for m in pd}) == 1
    assert len(receivers.at("/slack")) == 1  # a 400 is not retried

    log = alerting.sql(
        "SELECT receiver, outcome, result, count() AS n FROM llmpulse.alert_log "
        "WHERE receiver != 'deployer' GROUP BY receiver, outcome, result "
        "ORDER BY receiver, outcome, result"
    )
    assert [(r["receiver"], r["outcome"], r["result"], int(r["n"])) for r in log] == [
        ("llm-channel", "failed", "client_error", 1),
        ("llm-channel", "gave_up", "client_error", 1),
        ("sre-pager", "delivered", "ok", 1),
        ("sre-pager", "failed", "server_error", 3),
    ]
    worker_log = (alerting.home / "logs" / "worker.log").read_text()
    assert "gave up on receiver llm-channel" in worker_log
    assert SECRET not in worker_log and PD_KEY not in worker_log


def test_a_worker_killed_between_decision_and_delivery_delivers_after_restart(
    alerting: Stack, receivers: Receivers
) -> None:
    receivers.hold.set()  # every request waits for an answer: the worker is mid-delivery
    worker = alerting.start_worker()
    traffic(alerting, "v6", 0.0, lambda: False, 3.0, "calm")
    traffic(alerting, "v7", 0.5, lambda: len(receivers.received) >= 3, 120.0, "bad")
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    receivers.hold.clear()
    first = {r.path: r for r in receivers.received}

    alerting.start_worker()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = alerting.sql(
            "SELECT count() AS n FROM llmpulse.alert_log "
            "WHERE outcome = 'delivered' AND reason = 'first'"
        )
        if int(done[0]["n"]) >= 3:
            break
        time.sleep(1.0)
    time.sleep(2.0)

    pd = [r.json for r in receivers.at("/pd")]
    actions = [m["event_action"] for m in pd]
    assert actions.count("trigger") >= 2, "the trigger cut off by the kill is sent again"
    assert {m["dedup_key"] for m in pd} == {first["/pd"].json["dedup_key"]}
    # v7's traffic stopped with the kill, so the alert may resolve after the restart,
    # but never before its trigger was delivered
    assert actions == sorted(actions, key=lambda a: a == "resolve")
    rollbacks = receivers.at("/rollback")
    assert len(rollbacks) >= 2
    assert len({r.headers["Idempotency-Key"] for r in rollbacks}) == 1  # one rollback, deduped
    log = alerting.sql(
        "SELECT receiver, count() AS n FROM llmpulse.alert_log WHERE outcome = 'delivered' "
        "AND reason = 'first' GROUP BY receiver ORDER BY receiver"
    )
    assert [(r["receiver"], int(r["n"])) for r in log] == [
        ("deployer", 1), ("llm-channel", 1), ("sre-pager", 1),
    ]  # fmt: skip
