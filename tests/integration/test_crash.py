"""A worker killed mid-run loses nothing: offsets are committed only after storage."""

from __future__ import annotations

import json
import signal
import time

import pytest

from ingest.synthetic import synthetic_events
from tests.integration.conftest import Stack, publish

pytestmark = pytest.mark.integration

N = 20_000


def test_sigkill_mid_run_then_restart_stores_every_event_once(stack: Stack) -> None:
    payloads = [(e["event_id"].encode(), json.dumps(e).encode()) for e in synthetic_events(N)]
    first = stack.start_worker()
    publish(stack.bootstrap, payloads)

    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline:
        stored = stack.scalar("SELECT count() FROM llm_events")
        if stored >= 2_000:
            break
        time.sleep(0.2)
    assert 0 < stored < N, f"kill must land mid-run, {stored} rows were stored"
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL

    second = stack.start_worker()
    assert stack.wait_for("SELECT count() FROM llm_events FINAL", N, timeout=240) == N
    assert stack.scalar("SELECT uniqExact(event_id) FROM llm_events") == N
    assert stack.scalar("SELECT count() FROM dead_letters") == 0
    assert stack.stop_worker(second) == 0
