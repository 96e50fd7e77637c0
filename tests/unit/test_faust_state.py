"""The Faust consumer state the worker resets after an embedded broker lost its memory.

Faust offers no public way to forget a partition's acks and commits, so the worker's
rewind reaches into four private attributes. This test fails on a Faust release that
renames them, before a broker restart would leave the group's lag up for good.
"""

from __future__ import annotations

import faust
from aiokafka.structs import TopicPartition

from processors.worker import forget_commits


def test_the_installed_faust_keeps_every_state_the_rewind_resets() -> None:
    app = faust.App("state-check", broker="kafka://127.0.0.1:1")
    try:
        consumer = app.consumer
        tp = TopicPartition("llm.events", 0)
        consumer._committed_offset[tp] = 40
        consumer._acked[tp].append(41)
        assert forget_commits(consumer, tp) == []
        assert tp not in consumer._committed_offset
        assert tp not in consumer._acked
    finally:
        app.loop.close()


def test_a_missing_state_is_named_not_skipped_silently() -> None:
    class Renamed:
        def __init__(self) -> None:
            self._committed_offset: dict = {}

    assert forget_commits(Renamed(), TopicPartition("t", 0)) == ["_acked", "_acked_index", "_gap"]
