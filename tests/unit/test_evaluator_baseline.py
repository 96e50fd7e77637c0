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


def test_a_failed_judgement_leaves_a_firing_alert_firing_instead_of_resolving_it() -> None:
    """A query error is not "no data": resolving would page again on the next good look."""
    rule = Rule("r", "toxicity_rate", ">", 0.0, window_s=3600.0, compare_to="baseline",
                receivers=("p",))  # fmt: skip
    versions = [("bot", "v6", NOW - 7200, NOW - 1), ("bot", "v7", NOW - 600, NOW - 1)]
    state = {"fail": False}
    sent: list = []

    async def query(sql: str) -> list[tuple]:
        if "min(ingested_at)" in sql:
            return versions
        if "countIf(ingested_at >" in sql:  # served before v7: v6, busy
            return [("v6", NOW - 601, 50)]
        if "ORDER BY" in sql:  # the evidence query: no example texts here
            return []
        if state["fail"]:
            raise ConnectionError("storage down")
        return [(1000, 100)] if "'v6'" in sql else [(500, 250)]  # 10 % vs 50 % flagged

    async def save(_: object) -> None:
        return None

    async def send(note: object) -> None:
        sent.append(note)

    ev = Evaluator(RuleSet(rules=(rule,)), "db", query, save, send,
                   lambda app, version: True, clock=lambda: NOW)  # fmt: skip
    asyncio.run(ev.tick())
    assert [(n.status, n.reason) for n in sent] == [("firing", "first")]
    state["fail"] = True
    asyncio.run(ev.tick())
    state["fail"] = False
    asyncio.run(ev.tick())
    assert [(n.status, n.reason) for n in sent] == [("firing", "first")]  # no resolve, no re-page
