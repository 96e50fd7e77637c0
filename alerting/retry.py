"""The one place that retries a notification.

Notifiers make one attempt each; ``deliver`` repeats it with exponential backoff and
full jitter until it is delivered, fails permanently, or the next wait would pass
the deadline. Logs name the receiver, the alert and the reason, never a URL or a
secret: a notifier's ``Outcome.detail`` is already free of both.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alerting.alert import Notification
from alerting.notifiers.base import RETRY, Notifier, Outcome
from core.retry import Backoff

__all__ = ["Delivery", "RetryPolicy", "deliver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy(Backoff):
    """Alert delivery's backoff: full jitter from 1 s up to 60 s, for at most 5 minutes."""

    first_s: float = 1.0
    max_s: float = 60.0
    jitter: str = "full"
    deadline_s: float | None = 300.0


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome  # the last attempt's
    attempts: int
    gave_up: bool
    seconds: float


OnAttempt = Callable[[int, Outcome], Awaitable[None]]


async def _attempt(notifier: Notifier, alert: Notification) -> Outcome:
    """One call; a notifier bug becomes a retryable outcome instead of killing the agent."""
    try:
        return await notifier.notify(alert)
    except Exception as exc:  # CancelledError is a BaseException: it propagates
        return Outcome(RETRY, "exception", None, type(exc).__name__)


def _describe(outcome: Outcome) -> str:
    status = f" (HTTP {outcome.status})" if outcome.status is not None else ""
    detail = f": {outcome.detail}" if outcome.detail else ""
    return f"{outcome.reason}{status}{detail}"


async def deliver(
    notifier: Notifier,
    alert: Notification,
    policy: RetryPolicy,
    *,
    on_attempt: OnAttempt | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> Delivery:
    """Deliver ``alert`` through ``notifier``; ``on_attempt`` sees every attempt."""
    start = clock()
    attempt = 0
    last_reason: str | None = None
    while True:
        attempt += 1
        outcome = await _attempt(notifier, alert)
        if on_attempt is not None:
            await on_attempt(attempt, outcome)
        if outcome.ok:
            return Delivery(outcome, attempt, False, clock() - start)
        wait = policy.wait(attempt, rng)
        deadline = policy.deadline_s if policy.deadline_s is not None else float("inf")
        if not outcome.retryable or clock() - start + wait > deadline:
            why = "permanent failure" if not outcome.retryable else "retry deadline reached"
            log.error(
                "gave up on receiver %s (%s) for alert %s (%s) after %d attempt(s), %s: %s",
                notifier.name, notifier.channel, alert.alert_id, alert.status,
                attempt, why, _describe(outcome),
            )  # fmt: skip
            return Delivery(outcome, attempt, True, clock() - start)
        if outcome.reason != last_reason:
            log.warning(
                "receiver %s (%s) failed for alert %s, will retry: %s",
                notifier.name, notifier.channel, alert.alert_id, _describe(outcome),
            )  # fmt: skip
            last_reason = outcome.reason
        await sleep(wait)
