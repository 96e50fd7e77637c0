"""The embedded broker restarts under a running worker, which carries on by itself.

Tansu keeps everything in memory: the new broker has no topics and no committed
offsets, its logs begin again at offset 0, and the events the old one held but the
worker had not consumed are gone (Apache Kafka keeps all of that on disk). The worker
sees the broker's new cluster id, creates the topics again and reads its partitions
from the start, so every event published after the restart is stored once, and the
group's offsets are committed again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack, publish
from tests.reliability.conftest import payloads, wait_lag_zero

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, AFTER = 40, 80


def test_worker_stores_every_event_published_after_a_broker_restart(
    stack: Stack, broker: EmbeddedBroker
) -> None:
    """Events published the moment the broker is back race the worker's reconnect: new
    logs that reach past its old positions, and offsets still to commit from before."""
    worker = stack.start_worker()
    publish(stack.bootstrap, payloads(BEFORE, seed=1))
    assert stack.wait_for("SELECT count() FROM llm_events FINAL", BEFORE, timeout=120) == BEFORE
    wait_lag_zero(stack.bootstrap)
    old_cluster = broker.cluster_id

    broker.stop()
    broker.start()  # same port, empty memory
    publish(stack.bootstrap, payloads(AFTER, seed=2))

    total = BEFORE + AFTER
    assert stack.wait_for("SELECT count() FROM llm_events FINAL", total, timeout=180) == total
    assert stack.scalar("SELECT uniqExact(event_id) FROM llm_events") == total
    wait_lag_zero(stack.bootstrap, timeout=60)  # commits work again on the new broker
    assert worker.poll() is None
    log = (stack.home / "logs" / "worker.log").read_text()
    assert f"came back as a new cluster (id {broker.cluster_id}, was {old_cluster})" in log
    assert stack.stop_worker(worker) == 0


def answers(bootstrap: str, cluster_id: str) -> bool:
    """Whether a broker with this cluster id answers at ``bootstrap``."""

    async def ask() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            return bool((await admin.describe_cluster())["cluster_id"] == cluster_id)
        except KafkaError:
            return False
        finally:
            await admin.close()

    return asyncio.run(ask())


def test_a_supervised_broker_that_dies_is_started_again(tmp_path: Path) -> None:
    """``llmpulse up`` supervises its broker: killed, it is back on the same port, empty,
    under a new cluster id (which is how the worker tells it lost its state)."""
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "logs").start()
    broker.supervise()
    try:
        first, first_id = broker.process, broker.cluster_id
        assert first is not None and answers(broker.bootstrap, first_id)
        first.kill()
        deadline = time.monotonic() + 30
        while broker.cluster_id == first_id or not answers(broker.bootstrap, broker.cluster_id):
            assert time.monotonic() < deadline, "the broker was not started again"
            time.sleep(0.2)
        assert broker.process not in (None, first)
    finally:
        broker.stop()
    assert broker.process is None
