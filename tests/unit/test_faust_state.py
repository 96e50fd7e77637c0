"""The Faust consumer state the worker resets after an embedded broker lost its memory.

Faust offers no public way to forget a partition's acks and commits, so the worker's
rewind reaches into four private attributes. This test fails on a Faust release that
renames them, before a broker restart would leave the group's lag up for good.
"""

from __future__ import annotations

import asyncio
import gc

import faust
from aiokafka.structs import TopicPartition

from processors.worker import forget_commits


def test_the_installed_faust_keeps_every_state_the_rewind_resets() -> None:
    loop = asyncio.new_event_loop()  # Faust would make one itself and leave it open
    asyncio.set_event_loop(loop)
    app = faust.App("state-check", broker="kafka://127.0.0.1:1", loop=loop)
    consumer = app.consumer
    try:
        tp = TopicPartition("llm.events", 0)
        consumer._committed_offset[tp] = 40
        consumer._acked[tp].append(41)
        assert forget_commits(consumer, tp) == []
        assert tp not in consumer._committed_offset
        assert tp not in consumer._acked
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        # The consumer's fetcher thread made a loop of its own at construction.
        thread_loop = getattr(getattr(consumer, "_thread", None), "thread_loop", None)
        if thread_loop is not None:
            thread_loop.close()
        del app, consumer
        gc.collect()


def test_a_missing_state_is_named_not_skipped_silently() -> None:
    class Renamed:
        def __init__(self) -> None:
            self._committed_offset: dict = {}

    assert forget_commits(Renamed(), TopicPartition("t", 0)) == ["_acked", "_acked_index", "_gap"]
