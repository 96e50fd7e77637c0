"""The real-parts fixtures (Tansu broker, worker stack) shared with the integration suite,
and what the outage tests read from Kafka: the worker group's committed offsets and lag."""

from __future__ import annotations

import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.synthetic import synthetic_events
from processors.app import APP_ID
from tests.integration.conftest import broker, receivers, stack  # noqa: F401


def committed_and_end(
    bootstrap: str, topic: str = "llm.events"
) -> tuple[dict[int, int], dict[int, int]]:
    """The worker group's committed offset and the end offset of every partition.

    Read by a consumer that is assigned, not subscribed, so it never joins the group.
    aiokafka's admin ``list_consumer_group_offsets`` cannot parse Tansu's answer, and
    Tansu's ListOffsets gives the last batch's base offset + 1, not the end, so the end
    is the high watermark that a fetch reports.
    """

    async def read() -> tuple[dict[int, int], dict[int, int]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=APP_ID, enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )  # fmt: skip
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
            consumer.assign(tps)
            committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
            for tp in tps:
                consumer.seek(tp, committed[tp.partition])
            deadline = time.monotonic() + 10
            while any(consumer.highwater(tp) is None for tp in tps):
                assert time.monotonic() < deadline, "no fetch answered with a high watermark"
                await consumer.getmany(timeout_ms=200, max_records=1)
            return committed, {tp.partition: int(consumer.highwater(tp) or 0) for tp in tps}
        finally:
            await consumer.stop()

    return asyncio.run(read())


def lag(bootstrap: str) -> int:
    """Events of ``llm.events`` that the worker group has not committed yet."""
    committed, end = committed_and_end(bootstrap)
    return sum(end[p] - committed[p] for p in end)


def wait_lag_zero(bootstrap: str, timeout: float = 30.0) -> float:
    """Seconds until the group's lag is 0 (Faust commits acked offsets every second)."""
    start = time.monotonic()
    while lag(bootstrap) != 0:
        assert time.monotonic() - start < timeout, f"lag still {lag(bootstrap)} after {timeout}s"
        time.sleep(0.5)
    return time.monotonic() - start


def payloads(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``n`` valid events as (key, value), event ids prefixed by the seed."""
    return [
        (e["event_id"].encode(), json.dumps(e).encode())
        for e in synthetic_events(n, seed=seed, prefix=f"s{seed}")
    ]
