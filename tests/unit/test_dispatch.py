"""Who gets a notification, and that a finished delivery is never repeated."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from alerting.alert import DeliveryRecord, Notification, Rollback
from alerting.dispatch import Dispatcher
from alerting.notifiers.base import Outcome
from alerting.retry import RetryPolicy

NOTE = Notification(
    notification_id="n1", alert_id="a1", reason="first", status="firing", rule="toxic",
    labels={"alertname": "toxic", "app": "bot", "prompt_version": "v7"}, severity="critical",
    metric="toxicity_rate", op=">", threshold=0.1, value=0.4, count=50, window_s=60.0,
    for_s=30.0, starts_at=100.0, ends_at=None, evaluated_at=101.0, summary="toxic",
    receivers=("pager", "chat", "am"), rollback=Rollback("deployer", "bot", "v7", "v6"),
)  # fmt: skip


@dataclass
class Fake:
    name: str
    channel: str
    outcomes: list[Outcome] = field(default_factory=lambda: [Outcome("ok", "ok", 202)])
    calls: list[Notification] = field(default_factory=list)

    async def notify(self, alert: Notification) -> Outcome:
        self.calls.append(alert)
        return self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]


@dataclass
class Log:
    rows: list[DeliveryRecord] = field(default_factory=list)

    async def finished(self, ids: Sequence[str]) -> set[tuple[str, str]]:
        done = ("delivered", "gave_up", "skipped")
        return {
            (r.notification_id, r.receiver)
            for r in self.rows
            if r.notification_id in ids and r.outcome in done
        }

    async def write(self, rows: list[DeliveryRecord]) -> None:
        self.rows.extend(rows)


def setup() -> tuple[dict[str, Fake], Log, Dispatcher]:
    fakes = {
        "pager": Fake("pager", "pagerduty"),
        "chat": Fake("chat", "slack"),
        "am": Fake("am", "alertmanager"),
        "deployer": Fake("deployer", "rollback"),
    }
    log = Log()
    policy = RetryPolicy(first_s=0.001, max_s=0.002, deadline_s=1.0)
    d = Dispatcher(fakes, dict.fromkeys(fakes, policy), log.finished, log.write)
    return fakes, log, d


def test_a_first_firing_goes_to_every_receiver_and_the_rollback() -> None:
    fakes, _log, d = setup()
    result = asyncio.run(d.dispatch(NOTE))
    assert result == dict.fromkeys(["pager", "chat", "am", "deployer"], "delivered")
    assert [len(f.calls) for f in fakes.values()] == [1, 1, 1, 1]


def test_a_message_seen_twice_is_delivered_once() -> None:
    fakes, _log, d = setup()
    asyncio.run(d.dispatch(NOTE))
    assert asyncio.run(d.dispatch(NOTE)) == {}
    assert [len(f.calls) for f in fakes.values()] == [1, 1, 1, 1]


def test_only_the_receivers_that_failed_are_tried_again_on_replay() -> None:
    fakes, log, d = setup()
    fakes["chat"].outcomes = [Outcome("retry", "server_error", 503)]
    asyncio.run(d.dispatch(NOTE))  # chat gives up at the deadline
    log.rows = [r for r in log.rows if r.receiver != "chat"]  # as if the worker died mid-retry
    fakes["chat"].outcomes = [Outcome("ok", "ok", 200)]
    assert asyncio.run(d.dispatch(NOTE)) == {"chat": "delivered"}


def test_keep_alives_go_to_alertmanager_only() -> None:
    _fakes, _log, d = setup()
    refresh = replace(NOTE, notification_id="n2", reason="refresh", rollback=None)
    assert asyncio.run(d.dispatch(refresh)) == {"am": "delivered"}


def test_a_rollback_without_a_healthy_version_is_skipped_and_logged() -> None:
    fakes, log, d = setup()
    note = replace(NOTE, rollback=Rollback("deployer", "bot", "v7", None))
    assert asyncio.run(d.dispatch(note))["deployer"] == "skipped"
    assert fakes["deployer"].calls == []
    assert [r.result for r in log.rows if r.receiver == "deployer"] == ["no_healthy_version"]


def test_an_unknown_receiver_is_a_visible_give_up() -> None:
    _fakes, log, d = setup()
    note = replace(NOTE, receivers=("nobody",), rollback=None)
    assert asyncio.run(d.dispatch(note)) == {"nobody": "gave_up"}
    assert [(r.receiver, r.outcome, r.result) for r in log.rows] == [
        ("nobody", "gave_up", "unknown_receiver")
    ]


def test_every_failed_attempt_and_the_outcome_are_logged() -> None:
    fakes, log, d = setup()
    fakes["pager"].outcomes = [Outcome("retry", "server_error", 500)] * 3 + [
        Outcome("ok", "ok", 202)
    ]
    asyncio.run(d.dispatch(replace(NOTE, receivers=("pager",), rollback=None)))
    assert [(r.attempt, r.outcome, r.http_status) for r in log.rows] == [
        (1, "failed", 500), (2, "failed", 500), (3, "failed", 500), (4, "delivered", 202),
    ]  # fmt: skip


def test_the_same_message_in_flight_twice_is_delivered_once() -> None:
    fakes, _log, d = setup()

    async def both() -> list[dict[str, str]]:
        return list(await asyncio.gather(d.dispatch(NOTE), d.dispatch(NOTE)))

    first, second = asyncio.run(both())
    assert {**first, **second} == dict.fromkeys(["pager", "chat", "am", "deployer"], "delivered")
    assert [len(f.calls) for f in fakes.values()] == [1, 1, 1, 1]
