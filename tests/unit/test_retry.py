"""``deliver``: the one retry loop, run on a fake clock so nothing really waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest

from alerting.alert import Notification
from alerting.notifiers.base import Outcome
from alerting.retry import Delivery, RetryPolicy, deliver

OK = Outcome("ok", "ok", 202)
ERR_500 = Outcome("retry", "server_error", 500, "upstream broke")
ERR_400 = Outcome("permanent", "client_error", 400, "invalid event")
TIMEOUT = Outcome("retry", "timeout", None, "no answer in 10s")

ALERT = Notification(
    notification_id="n-1", alert_id="a1b2c3", reason="first", status="firing",
    rule="high_error_rate", labels={"app": "chat", "prompt_version": "v7"},
    severity="critical", metric="error_rate", op=">", threshold=0.05, value=0.2,
    count=120, window_s=300, for_s=60, starts_at=1_700_000_000.0, ends_at=None,
    evaluated_at=1_700_000_060.0, summary="error rate 20%",
)  # fmt: skip


class Scripted:
    """A notifier that returns (or raises) the given results in order, then repeats the last."""

    name = "oncall"
    channel = "pagerduty"

    def __init__(self, results: Iterable[Outcome | BaseException]) -> None:
        self.results = list(results)
        self.calls = 0

    async def notify(self, alert: Notification) -> Outcome:
        result = self.results[min(self.calls, len(self.results) - 1)]
        self.calls += 1
        if isinstance(result, BaseException):
            raise result
        return result


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def run(
    notifier: Scripted,
    policy: RetryPolicy | None = None,
    rng: float = 1.0,
    **kw: object,
) -> tuple[Delivery, FakeTime]:
    t = FakeTime()
    delivery = asyncio.run(
        deliver(notifier, ALERT, policy or RetryPolicy(), sleep=t.sleep, clock=t.clock,
                rng=lambda: rng, **kw)  # type: ignore[arg-type]
    )  # fmt: skip
    return delivery, t


def test_delivered_after_three_server_errors() -> None:
    delivery, t = run(Scripted([ERR_500, ERR_500, ERR_500, OK]))
    assert delivery == Delivery(OK, attempts=4, gave_up=False, seconds=7.0)
    assert t.waits == [1.0, 2.0, 4.0]


def test_permanent_failure_gives_up_at_once_with_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Scripted([ERR_400, OK])
    with caplog.at_level(logging.WARNING, logger="alerting.retry"):
        delivery, t = run(notifier)
    assert (delivery.outcome, delivery.attempts, delivery.gave_up) == (ERR_400, 1, True)
    assert notifier.calls == 1 and t.waits == []
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    for part in ("oncall", "a1b2c3", "client_error", "400", "1 attempt"):
        assert part in record.getMessage()


def test_gives_up_when_the_next_wait_would_pass_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Waits 1+2+4+8 = 15 s; the next (16 s) would end at 31 s > 30 s.
    with caplog.at_level(logging.ERROR, logger="alerting.retry"):
        delivery, t = run(Scripted([ERR_500]), RetryPolicy(deadline_s=30))
    assert (delivery.attempts, delivery.gave_up, delivery.seconds) == (5, True, 15.0)
    assert t.waits == [1.0, 2.0, 4.0, 8.0]
    assert "deadline" in caplog.records[-1].getMessage()


def test_zero_deadline_makes_exactly_one_attempt() -> None:
    delivery, _ = run(Scripted([ERR_500]), RetryPolicy(deadline_s=0))
    assert (delivery.attempts, delivery.gave_up) == (1, True)


def test_waits_grow_exponentially_and_are_capped_by_max_s() -> None:
    policy = RetryPolicy(first_s=1, max_s=10, factor=3, deadline_s=60)
    _, t = run(Scripted([ERR_500] * 7 + [OK]), policy)
    assert t.waits == [1.0, 3.0, 9.0, 10.0, 10.0, 10.0, 10.0]


def test_full_jitter_scales_each_wait_by_the_random_draw() -> None:
    _, t = run(Scripted([ERR_500, ERR_500, OK]), rng=0.5)
    assert t.waits == [0.5, 1.0]


def test_jitter_never_waits_less_than_a_tenth_of_the_bound() -> None:
    _, t = run(Scripted([ERR_500, ERR_500, OK]), rng=0.0)
    assert t.waits == [0.1, 0.2]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryPolicy(factor=10).bound(10_000) == 60.0


@pytest.mark.parametrize(
    "kwargs",
    [{"first_s": 0}, {"first_s": 5, "max_s": 1}, {"factor": 0.5}, {"deadline_s": -1}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_repr_is_readable() -> None:
    assert repr(RetryPolicy()) == (
        "RetryPolicy(first_s=1.0, max_s=60.0, factor=2.0, jitter='full', deadline_s=300.0)"
    )


def test_an_exception_in_notify_is_retried() -> None:
    notifier = Scripted([KeyError("boom"), OK])
    delivery, _ = run(notifier)
    assert (delivery.outcome, delivery.attempts) == (OK, 2)


def test_an_exception_becomes_a_retryable_outcome_naming_its_type() -> None:
    seen: list[Outcome] = []

    async def record(attempt: int, outcome: Outcome) -> None:
        seen.append(outcome)

    run(Scripted([KeyError("boom"), OK]), on_attempt=record)
    assert seen[0] == Outcome("retry", "exception", None, "KeyError")


def test_cancellation_propagates() -> None:
    with pytest.raises(asyncio.CancelledError):
        run(Scripted([asyncio.CancelledError()]))


def test_on_attempt_is_called_once_per_attempt_in_order() -> None:
    seen: list[tuple[int, str]] = []

    async def record(attempt: int, outcome: Outcome) -> None:
        seen.append((attempt, outcome.reason))

    run(Scripted([ERR_500, TIMEOUT, OK]), on_attempt=record)
    assert seen == [(1, "server_error"), (2, "timeout"), (3, "ok")]


def test_warns_only_when_the_failure_reason_changes(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = [ERR_500, ERR_500, ERR_500, TIMEOUT, TIMEOUT, ERR_500, OK]
    with caplog.at_level(logging.WARNING, logger="alerting.retry"):
        run(Scripted(outcomes))
    warned = [r.getMessage() for r in caplog.records]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3
    assert "server_error" in warned[0]
    assert "timeout" in warned[1]
    assert "server_error" in warned[2]


def test_success_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="alerting.retry"):
        run(Scripted([OK]))
    assert caplog.records == []
