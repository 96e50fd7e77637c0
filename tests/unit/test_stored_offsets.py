"""StoredOffsets: what the batch handler has stored, per partition, for the alert evaluator."""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from processors.handler import StoredOffsets


def test_a_stored_batch_raises_each_partition_to_one_past_its_last_record() -> None:
    s = StoredOffsets()
    s.advance([("llm.events", 0, 4), ("llm.events", 0, 5), ("llm.events", 1, 9)])
    assert dict(s) == {("llm.events", 0): 6, ("llm.events", 1): 10}


def test_a_replayed_batch_never_moves_a_partition_back() -> None:
    s = StoredOffsets()
    s.advance([("llm.events", 0, 9)])
    s.advance([("llm.events", 0, 3)])
    assert s[("llm.events", 0)] == 10


def test_kafka_topic_partitions_find_the_same_entries() -> None:
    s = StoredOffsets()
    s.advance([("llm.events", 2, 0)])
    assert s.get(TopicPartition("llm.events", 2)) == 1
    assert s.get(TopicPartition("llm.events", 3), 0) == 0


def test_the_broker_committed_offset_seeds_a_partition_and_none_leaves_it_unknown() -> None:
    s = StoredOffsets()
    s.advance([("llm.events", 0, 20)])
    s.seed({TopicPartition("llm.events", 0): 12, TopicPartition("llm.events", 1): 7,
            TopicPartition("llm.events", 2): None})  # fmt: skip
    assert dict(s) == {("llm.events", 0): 21, ("llm.events", 1): 7}


def test_a_forgotten_partition_starts_again_from_nothing() -> None:
    s = StoredOffsets()
    s.advance([("llm.events", 0, 40)])
    s.forget(TopicPartition("llm.events", 0))
    assert ("llm.events", 0) not in s
