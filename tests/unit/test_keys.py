"""The app|prompt_version key is spelled once, so the producer and the alert owner agree."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from core.keys import version_key
from core.sql import quote
from processors.alerting import owner_partition
from processors.batch import scored_key

KEYS = [("support-bot", "v7"), ("support-bot", None), ("rag|app", "v1"), ("ünïcode", "2026-12")]


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_the_worker_that_owns_an_alert_holds_the_partition_its_events_go_to(
    partitions: int,
) -> None:
    every = list(range(partitions))
    for app, version in KEYS:
        produced = DefaultPartitioner()(scored_key(app, version or ""), every, every)
        assert owner_partition(app, version, partitions) == produced


def test_a_missing_version_is_the_empty_one() -> None:
    assert version_key("app", None) == version_key("app", "") == "app|"


def test_a_quoted_literal_cannot_end_early_or_escape_its_quote() -> None:
    assert quote("o'brien\\") == "'o\\'brien\\\\'"
