"""Receivers down while events flow: scoring goes on, alerts arrive when they return.

For ~20 s the webhook holds every request past the client's timeout and PagerDuty
answers 503, while a rule that fires for every app|prompt_version keeps re-notifying.
Delivery runs in the notify agent, off the scoring path, so rows keep being stored;
once the receivers answer again, every notification decided up to then is delivered
exactly once per receiver (``alert_log``) and reaches the receiver. The throughput
figures (outage ÷ healthy) are ``bench/receiver_outage.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from alerting.alert import Notification
from ingest.producer import EventProducer
from ingest.synthetic import synthetic_events
from tests.integration.conftest import Stack
from tests.integration.receivers import Receivers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 20.0
HOOK_TIMEOUT_S = 2.0  # the webhook client gives up on a held request after this
RULES = """
receivers:
  - name: pager
    type: pagerduty
    url: {pd}
    routing_key_env: TEST_PD_KEY
  - name: hook
    type: webhook
    url: {hook}
    timeout_s: {timeout}
rules:
  - name: traffic-seen
    metric: event_count
    window: {window}
    op: ">"
    threshold: 0
    repeat_interval: {repeat}
    severity: warning
    receivers: [pager, hook]
"""


def decided_notifications(bootstrap: str, topic: str = "llm.alerts") -> list[Notification]:
    """Every message on ``llm.alerts``, read from the start without joining a group.

    Read up to the high watermark that fetches report: Tansu's ListOffsets answers the
    last batch's base offset + 1, not the end (see ``committed_and_end`` in conftest).
    """

    async def read() -> list[Notification]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[Notification] = []
            deadline = time.monotonic() + 30
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                out += [Notification.from_json(m.value) for ms in batch.values() for m in ms]
                ends = [consumer.highwater(tp) for tp in tps]
                at = [await consumer.position(tp) for tp in tps]
                if all(end is not None and pos >= end for pos, end in zip(at, ends, strict=True)):
                    return out
                assert time.monotonic() < deadline, f"{topic} not read to its end in 30 s"
        finally:
            await consumer.stop()

    return asyncio.run(read())


def endpoint_sql(stack: Stack, query: str) -> list[list]:
    """Rows from the worker's SQL endpoint: polling through ``llmpulse sql`` would start
    a Python process per poll on a CPU the worker needs."""
    body = json.dumps({"query": query}).encode()
    url = f"http://127.0.0.1:{stack.sql_port}/sql/"
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as resp:
        return json.loads(resp.read())["rows"]


def delivery_counts(stack: Stack) -> dict[tuple[str, str, str], int]:
    """(notification, receiver, outcome) → rows in ``alert_log``."""
    rows = endpoint_sql(
        stack,
        "SELECT notification_id, receiver, outcome, count() FROM llmpulse.alert_log "
        "GROUP BY notification_id, receiver, outcome",
    )
    return {(n, r, o): int(c) for n, r, o, c in rows}


def stored(stack: Stack) -> int:
    return int(endpoint_sql(stack, "SELECT count() FROM llm_events")[0][0])


class Traffic:
    """10 events every 0.5 s from one producer on a background thread, until stopped."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with EventProducer(self.bootstrap) as producer:
            i = 0
            while not self.stop.is_set():
                for e in synthetic_events(10, seed=i, prefix=f"outage-{i}"):
                    await producer.send_raw(e["event_id"].encode(), json.dumps(e).encode())
                await producer.flush()
                i += 1
                await asyncio.sleep(0.5)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def pd() -> Iterator[Receivers]:
    with Receivers() as r:
        yield r


@pytest.fixture
def hook() -> Iterator[Receivers]:
    with Receivers() as r:
        yield r


def test_receivers_down_for_a_while_delay_alerts_but_not_scoring_and_lose_none(
    stack: Stack, pd: Receivers, hook: Receivers, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(
        pd=pd.url("/pd"), hook=hook.url("/hook"), timeout=HOOK_TIMEOUT_S, window="10s",
        repeat="4s",
    ))  # fmt: skip
    stack.extra_env.update({
        "LLMPULSE_RULES": str(rules), "LLMPULSE_ALERT_EVAL_S": "0.5", "TEST_PD_KEY": "pd-key",
    })  # fmt: skip
    stack.start_worker()
    with Traffic(stack.bootstrap):
        assert pd.wait("/pd", 1, 120) and hook.wait("/hook", 1, 30), "healthy delivery first"

        pd.statuses["/pd"] = [503]
        hook.hold.set()
        down_at, stored_at_down = time.time(), stored(stack)
        time.sleep(OUTAGE_S)
        stored_at_up = stored(stack)
        up_at = time.time()
        pd.statuses["/pd"] = [202]
        hook.hold.clear()

        deadline = time.monotonic() + 120
        while True:
            decided = [n for n in decided_notifications(stack.bootstrap) if n.evaluated_at < up_at]
            pairs = {(n.notification_id, r) for n in decided for r in n.receivers}
            log = delivery_counts(stack)
            done = all((i, r, "delivered") in log for i, r in pairs)
            if done or any(o == "gave_up" for _, _, o in log) or time.monotonic() > deadline:
                break
            time.sleep(1.0)

    assert stored_at_up > stored_at_down, "scoring went on while the receivers were down"
    during = [n for n in decided if down_at <= n.evaluated_at < up_at]
    assert len(during) >= len({n.alert_id for n in decided}), "every alert re-notified meanwhile"
    failed = {(r, o) for (_, r, o) in log if o != "delivered"}
    assert failed == {("pager", "failed"), ("hook", "failed")}, "failures logged, none gave up"
    reasons = endpoint_sql(
        stack, "SELECT DISTINCT receiver, result FROM llmpulse.alert_log WHERE outcome = 'failed'"
    )
    assert {(r, result) for r, result in reasons} == {
        ("pager", "server_error"), ("hook", "timeout"),
    }  # fmt: skip

    delivered = {(i, r): c for (i, r, o), c in log.items() if o == "delivered"}
    assert {p: delivered.get(p, 0) for p in pairs} == dict.fromkeys(pairs, 1)
    assert set(delivered.values()) == {1}, "nothing delivered twice"

    # Reached the receivers: webhook bodies carry the notification id (which request was
    # answered in time is alert_log's to say: a late timeout can still take the answer
    # released at recovery).
    assert {n.notification_id for n in decided} <= {r.json["notification_id"]
                                                    for r in hook.at("/hook")}  # fmt: skip
    # PagerDuty bodies carry the alert (dedup_key): each alert got at least one request
    # after recovery per notification decided during the outage.
    after = Counter(r.json["dedup_key"] for r in pd.at("/pd") if r.at >= up_at)
    owed = Counter(n.alert_id for n in during)
    assert all(after[alert] >= k for alert, k in owed.items()), (after, owed)
