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

__all__ = ["Delivery", "RetryPolicy", "deliver"]

log = logging.getLogger(__name__)

MIN_JITTER = 0.1  # a wait is at least this share of its bound, so retries never spin


@dataclass(frozen=True)
class RetryPolicy:
    first_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    deadline_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {self.first_s}, {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.deadline_s < 0:
            raise ValueError(f"deadline_s must be >= 0, got {self.deadline_s}")

    def bound(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
        try:
            return min(self.max_s, self.first_s * self.factor ** (attempt - 1))
        except OverflowError:
            return self.max_s

    def wait(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        bound = self.bound(attempt)
        return max(MIN_JITTER * bound, rng() * bound)


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
        if not outcome.retryable or clock() - start + wait > policy.deadline_s:
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
