"""The evaluator's baseline path without an engine: which versions it judges at all."""

from __future__ import annotations

import asyncio
import logging

import pytest

from alerting.config import Rule, RuleSet
from alerting.evaluator import Evaluator

NOW = 1_800_000_000.0


def evaluator(rule: Rule, versions: list[tuple], asked: list[str]) -> Evaluator:
    async def query(sql: str) -> list[tuple]:
        asked.append(sql)
        return versions if "min(ingested_at)" in sql else [(0, 0)]

    async def nothing(_: object) -> None:
        return None

    return Evaluator(RuleSet(rules=(rule,)), "db", query, nothing, nothing,
                     lambda app, version: True, clock=lambda: NOW)  # fmt: skip


def test_a_pinned_version_with_no_events_is_said_once_and_judges_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rule = Rule("r", "toxicity_rate", ">", 0.0, window_s=3600.0, compare_to="v1")
    asked: list[str] = []
    ev = evaluator(rule, [("bot", "v7", NOW - 60, NOW - 1)], asked)
    with caplog.at_level(logging.WARNING, logger="alerting.evaluator"):
        for _ in range(3):
            assert asyncio.run(ev.tick()) == []
    warnings = [r.getMessage() for r in caplog.records if "pinned version v1" in r.getMessage()]
    assert len(warnings) == 1 and "bot v7 is not judged" in warnings[0]
    assert len(asked) == 3  # the versions query only: no sample was read


def test_a_version_older_than_the_window_has_passed_and_is_not_judged() -> None:
    rule = Rule("r", "toxicity_rate", ">", 0.0, window_s=3600.0, compare_to="baseline")
    asked: list[str] = []
    versions = [("bot", "v6", NOW - 90_000, NOW - 1), ("bot", "v7", NOW - 7200, NOW - 1)]
    assert asyncio.run(evaluator(rule, versions, asked).tick()) == []
    assert len(asked) == 1
