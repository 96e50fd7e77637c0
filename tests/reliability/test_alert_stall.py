"""A firing alert survives a worker stall longer than its window without a second page.

Under load a worker can go ten seconds and more without storing a batch; the rule's
window (by ingestion time) then empties while the bad version's events wait on the
broker. Judging that empty window as "no data" resolved the alert and paged again
when the backlog was stored (seen under load in ``test_alerting.py``). Here the stall
is made on purpose, and for longer than the window, so the outcome does not depend
on the machine: storage writes fail for 20 s while toxic traffic keeps coming.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.alerting_traffic import traffic
from tests.integration.conftest import Stack
from tests.integration.receivers import Receivers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = """
receivers:
  - name: pager
    type: pagerduty
    url: {pd}
    routing_key_env: TEST_PD_KEY
rules:
  - name: toxic-output
    metric: toxicity_rate
    filters: {{app: support-bot}}
    window: 10s
    op: ">"
    threshold: 0.1
    for: 2s
    min_events: 20
    receivers: [pager]
"""


def test_a_stall_longer_than_the_window_neither_resolves_nor_pages_again(
    stack: Stack, receivers: Receivers, tmp_path: Path
) -> None:
    rules, flag = tmp_path / "rules.yaml", tmp_path / "storage-down"
    rules.write_text(RULES.format(pd=receivers.url("/pd")))
    stack.worker_module = "tests.reliability.faults"
    stack.extra_env.update({
        "LLMPULSE_RULES": str(rules),
        "LLMPULSE_ALERT_EVAL_S": "0.5",
        "LLMPULSE_FAULT_STORAGE_FILE": str(flag),
        "TEST_PD_KEY": "test-routing-key",
    })  # fmt: skip
    stack.start_worker()
    traffic(stack, "v7", 0.5, lambda: bool(receivers.at("/pd")), 120.0, "before")
    assert [r.json["event_action"] for r in receivers.at("/pd")] == ["trigger"]
    flag.touch()  # storage writes fail: nothing is stored, the window empties
    traffic(stack, "v7", 0.5, lambda: False, 20.0, "stalled")
    stalled = stack.scalar("SELECT count() FROM llm_events FINAL WHERE event_id LIKE 'stalled-%'")
    assert stalled == 0, "storage was not stalled: the test proves nothing"
    # A resolve would have been sent during the stall (the window was empty for ~10 s).
    assert [r.json["event_action"] for r in receivers.at("/pd")] == ["trigger"]
    flag.unlink()
    traffic(stack, "v7", 0.5, lambda: False, 5.0, "after")
    # The stalled events are stored once storage is back (within one retry delay).
    assert stack.wait_for(
        "SELECT count() > 0 FROM llm_events FINAL WHERE event_id LIKE 'after-%'", 1, timeout=60
    )
    time.sleep(3.0)  # a resolve or a second trigger would have arrived by now

    assert [r.json["event_action"] for r in receivers.at("/pd")] == ["trigger"]
    state = stack.sql("SELECT state FROM llmpulse.alerts FINAL")
    assert [s["state"] for s in state] == ["firing"]
