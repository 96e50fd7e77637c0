"""The evaluator's decisions with a scripted metric source, a fake outbox and a clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from alerting.alert import Notification
from alerting.config import Action, ReceiverConfig, Rule, RuleSet
from alerting.evaluator import Evaluator
from alerting.state import AlertState

RULE = Rule(
    "toxic-output", "toxicity_rate", ">", 0.1, window_s=60.0, for_s=30.0, min_events=20,
    severity="critical", receivers=("pager",), actions=(Action("rollback", "deployer"),),
    filters={"app": "bot"},
)  # fmt: skip
RULES = RuleSet(
    (RULE,),
    {
        "pager": ReceiverConfig("pager", "pagerduty"),
        "deployer": ReceiverConfig("deployer", "rollback", url="http://x"),
    },
)


@dataclass
class World:
    """What ClickHouse would answer, and what the evaluator did."""

    now: float = 1000.0
    current: list[tuple] = field(default_factory=list)  # (app, version, value, n)
    versions: list[tuple] = field(default_factory=lambda: [("v6", 900.0), ("v5", 500.0)])
    healthy: dict[str, float] = field(default_factory=lambda: {"v6": 0.01, "v5": 0.0})
    examples: list[tuple] = field(default_factory=list)
    sent: list[Notification] = field(default_factory=list)
    saved: list[AlertState] = field(default_factory=list)
    fail_send: bool = False
    owned: bool = True

    async def query(self, sql: str) -> list[tuple]:
        if "ORDER BY last_seen" in sql:
            return self.versions
        if "LIMIT 20" in sql:
            return self.examples
        for version, value in self.healthy.items():
            if f"prompt_version = '{version}'" in sql:
                return [("bot", version, value, 100)]
        return self.current

    async def save(self, states: list[AlertState]) -> None:
        self.saved.extend(states)

    async def send(self, n: Notification) -> None:
        if self.fail_send:
            raise ConnectionError("broker down")
        self.sent.append(n)

    def evaluator(self) -> Evaluator:
        return Evaluator(
            RULES, "db", self.query, self.save, self.send, lambda app, v: self.owned,
            redact=lambda s: s.replace("jane@example.com", "[EMAIL]"), clock=lambda: self.now,
        )  # fmt: skip


def tick(ev: Evaluator) -> list[Notification]:
    return asyncio.run(ev.tick())


def test_a_model_score_alert_says_how_many_scored_events_its_value_rests_on() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)])  # n: count(toxicity), the scored events
    ev = w.evaluator()
    tick(ev)
    w.now += 30.0
    (n,) = tick(ev)
    assert n.count == 50
    assert n.summary == (
        "toxic-output: toxicity_rate 40.0% > 10.0% over 1m on bot v7 (50 scored events)"
    )


def test_a_breach_waits_for_the_for_duration_before_anyone_is_told() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)])
    ev = w.evaluator()
    assert tick(ev) == []
    w.now += 29.0
    assert tick(ev) == []
    w.now += 1.0
    (n,) = tick(ev)
    assert (n.status, n.reason, n.labels["prompt_version"], n.value) == (
        "firing",
        "first",
        "v7",
        0.4,
    )
    assert n.starts_at == 1030.0


def test_the_first_firing_carries_the_rollback_to_the_last_healthy_version() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    (n,) = tick(ev)
    assert n.rollback is not None
    assert (n.rollback.receiver, n.rollback.prompt_version, n.rollback.rollback_to) == (
        "deployer", "v7", "v6",
    )  # fmt: skip


def test_a_version_that_breaches_the_rule_is_not_a_rollback_target() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0, healthy={"v6": 0.3, "v5": 0.02})
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    (n,) = tick(ev)
    assert n.rollback is not None and n.rollback.rollback_to == "v5"


def test_no_healthy_version_means_no_rollback_target() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0, versions=[])
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    (n,) = tick(ev)
    assert n.rollback is not None and n.rollback.rollback_to is None


def test_too_few_events_is_not_a_breach() -> None:
    w = World(current=[("bot", "v7", 0.9, 19)])
    ev = w.evaluator()
    for _ in range(5):
        assert tick(ev) == []
        w.now += 30.0


def test_a_firing_alert_resolves_once_when_its_traffic_stops() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    tick(ev)
    w.current = []  # rolled back: v7 has no events in the window any more
    w.now = 40.0
    (n,) = tick(ev)
    assert (n.status, n.reason, n.ends_at, n.value) == ("resolved", "resolved", 40.0, None)
    w.now = 50.0
    assert tick(ev) == []


def test_the_repeat_interval_sends_a_reminder() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    tick(ev)
    w.now = 30.0 + RULE.repeat_interval_s + 1
    (n,) = tick(ev)
    assert n.reason == "repeat" and n.rollback is None  # a rollback happens once


def test_keys_owned_by_another_worker_are_left_alone() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], owned=False, now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    assert tick(ev) == [] and w.saved == []


def test_a_decision_lost_to_a_failed_send_is_made_again_with_the_same_id() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    w.fail_send = True
    with pytest.raises(ConnectionError):
        tick(ev)
    # a restart: a new evaluator loads what was saved before the send
    latest = {s.alert_id: s for s in w.saved}
    w.fail_send, w.now = False, 35.0
    ev2 = w.evaluator()
    ev2.load(latest)
    (n,) = tick(ev2)
    assert n.reason == "first" and n.starts_at == 30.0
    ev3 = w.evaluator()
    ev3.load(latest)
    (again,) = tick(ev3)
    assert again.notification_id == n.notification_id


def test_examples_are_redacted_and_the_evidence_query_names_the_key() -> None:
    w = World(
        current=[("bot", "v7", 0.4, 50)], now=0.0,
        examples=[("t", "e1", "m", "you idiot, mail jane@example.com")],
    )  # fmt: skip
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    (n,) = tick(ev)
    assert n.evidence.examples == ("you idiot, mail [EMAIL]",)
    assert "prompt_version = 'v7'" in n.evidence.query and "toxicity" in n.evidence.query


def test_an_empty_window_right_after_a_restart_does_not_resolve_a_firing_alert() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    tick(ev)
    saved = {s.alert_id: s for s in w.saved}
    w.current, w.now = [], 100.0  # restarted: the backlog is not scored yet
    ev2 = w.evaluator()
    ev2.load(saved)
    assert tick(ev2) == []  # lag is not recovery
    w.now = 100.0 + RULE.window_s  # a whole window later, still nothing: it is over
    (n,) = tick(ev2)
    assert n.reason == "resolved"


def test_a_thin_window_right_after_a_restart_does_not_resolve_a_firing_alert() -> None:
    # The window first holds the rows stored before the crash, which then age out while
    # the backlog is not scored yet (a few rows, or none). Resolving on either would page
    # again once the backlog lands.
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    tick(ev)
    saved = {s.alert_id: s for s in w.saved}
    ev2 = w.evaluator()
    w.now = 100.0
    ev2.load(saved)
    for now, current in ((100.0, [("bot", "v7", 0.4, 50)]), (130.0, [("bot", "v7", 0.4, 5)]),
                         (140.0, []), (150.0, [("bot", "v7", 0.4, 50)])):  # fmt: skip
        w.now, w.current = now, current
        assert tick(ev2) == [], now
    w.current, w.now = [], 100.0 + RULE.window_s  # a window after the restart, traffic gone
    (n,) = tick(ev2)
    assert n.reason == "resolved"


def test_a_restored_alert_keeps_firing_until_the_backlog_left_by_the_restart_is_stored() -> None:
    # Catching up, the worker scores one partition's backlog after the other, so the bad
    # version's events arrive in bursts with empty windows between them, even past the
    # first window: no recovery is judged on those until the backlog is stored.
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = w.evaluator()
    tick(ev)
    w.now = 30.0
    tick(ev)
    saved = {s.alert_id: s for s in w.saved}
    stored = {"backlog": False}
    ev2 = Evaluator(
        RULES, "db", w.query, w.save, w.send, lambda app, v: True, clock=lambda: w.now,
        caught_up=lambda: stored["backlog"],
    )  # fmt: skip
    w.now = 100.0
    ev2.load(saved)
    for now, current in ((100.0, []), (150.0, [("bot", "v7", 0.4, 50)]), (200.0, []),
                         (300.0, [("bot", "v7", 0.4, 5)])):  # fmt: skip
        w.now, w.current = now, current
        assert tick(ev2) == [], now
    stored["backlog"] = True  # caught up, and still no events of v7: it is over
    w.now, w.current = 310.0, []
    (n,) = tick(ev2)
    assert n.reason == "resolved"


def test_a_thin_window_while_the_worker_is_behind_is_not_a_recovery() -> None:
    # A stall longer than the window (load, a slow batch) empties the window by ingestion
    # time while v7's events wait on the broker: resolving then would page again later.
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    pending = {"since": 0.0}
    ev = Evaluator(
        RULES, "db", w.query, w.save, w.send, lambda app, v: True, clock=lambda: w.now,
        pending_since=lambda: pending["since"],
    )  # fmt: skip
    tick(ev)
    w.now = pending["since"] = 30.0
    assert [n.reason for n in tick(ev)] == ["first"]
    for now in (70.0, 100.0, 140.0):  # records waiting since 30 s: the worker is behind
        w.now, w.current = now, []
        assert tick(ev) == [], now
    pending["since"] = 140.0  # caught up, and still no events of v7: it is over
    (n,) = tick(ev)
    assert n.reason == "resolved"


def test_a_worker_behind_by_half_the_window_or_less_still_resolves_on_no_data() -> None:
    w = World(current=[("bot", "v7", 0.4, 50)], now=0.0)
    ev = Evaluator(
        RULES, "db", w.query, w.save, w.send, lambda app, v: True, clock=lambda: w.now,
        pending_since=lambda: w.now - RULE.window_s / 2,
    )  # fmt: skip
    tick(ev)
    w.now = 30.0
    assert [n.reason for n in tick(ev)] == ["first"]
    w.now, w.current = 100.0, []
    (n,) = tick(ev)
    assert n.reason == "resolved"
