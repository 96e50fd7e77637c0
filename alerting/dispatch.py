"""Deliver one ``llm.alerts`` message to each of its receivers, once.

Before sending, ``alert_log`` is asked which (notification, receiver) pairs already
finished, so a message produced twice or replayed after a crash is not delivered
again; a crash *during* an HTTP call can still repeat that call, which is why every
channel carries a dedup or idempotency key. Receivers are independent: a dead Slack
does not delay PagerDuty. Messages of one alert reach one receiver in order (a lock
per alert and receiver), so a resolve never overtakes its trigger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from alerting.alert import DeliveryRecord, Notification
from alerting.notifiers.base import Notifier, Outcome
from alerting.retry import RetryPolicy, deliver

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

Finished = Callable[[Sequence[str]], Awaitable[set[tuple[str, str]]]]


LogRows = Callable[[list[DeliveryRecord]], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        policies: Mapping[str, RetryPolicy],
        finished: Finished,
        log_rows: LogRows,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.notifiers = notifiers
        self.policies = policies
        self.finished = finished
        self.log_rows = log_rows
        self.clock = clock
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    def targets(self, n: Notification) -> list[str]:
        names = list(n.receivers)
        if n.reason == "refresh":  # keep-alives are for Alertmanager only
            names = [r for r in names if self._channel(r) == "alertmanager"]
        if n.rollback is not None:
            names.append(n.rollback.receiver)
        return list(dict.fromkeys(names))

    def _channel(self, name: str) -> str:
        notifier = self.notifiers.get(name)
        return notifier.channel if notifier is not None else ""

    async def dispatch(self, n: Notification) -> dict[str, str]:
        """Deliver to every target not yet finished; returns receiver → final outcome
        for the targets attempted now."""
        targets = self.targets(n)
        outcomes = await asyncio.gather(*(self._one(n, t) for t in targets))
        return {t: o for t, o in zip(targets, outcomes, strict=True) if o is not None}

    def _row(
        self, n: Notification, name: str, attempt: int, outcome: str, o: Outcome
    ) -> DeliveryRecord:
        return DeliveryRecord(
            at=self.clock(), notification_id=n.notification_id, alert_id=n.alert_id,
            rule=n.rule, app=n.app, prompt_version=n.prompt_version, reason=n.reason,
            status=n.status, receiver=name, channel=self._channel(name) or "unknown",
            attempt=attempt, outcome=outcome, result=o.reason, http_status=o.status,
            detail=o.detail[:500],
        )  # fmt: skip

    async def _one(self, n: Notification, name: str) -> str | None:
        # The same message can be in flight twice (produced again after a crash, or
        # replayed): the check and the final log row are both under the lock, so the
        # second one sees the first one's outcome and stops.
        async with self._locks[(n.alert_id, name)]:
            if (n.notification_id, name) in await self.finished([n.notification_id]):
                return None
            return await self._deliver(n, name)

    async def _deliver(self, n: Notification, name: str) -> str:
        notifier = self.notifiers.get(name)
        if notifier is None:
            log.error("alert %s: receiver %r is not configured; gave up", n.alert_id, name)
            o = Outcome("permanent", "unknown_receiver", None, "not in the rules file")
            await self.log_rows([self._row(n, name, 0, "gave_up", o)])
            return "gave_up"
        if notifier.channel == "rollback" and (n.rollback is None or not n.rollback.rollback_to):
            log.warning(
                "alert %s: no healthy version of %s to roll back to; rollback not called",
                n.alert_id, n.app,
            )  # fmt: skip
            o = Outcome("permanent", "no_healthy_version", None, "")
            await self.log_rows([self._row(n, name, 0, "skipped", o)])
            return "skipped"

        async def record(attempt: int, o: Outcome) -> None:
            if not o.ok:
                await self.log_rows([self._row(n, name, attempt, "failed", o)])

        policy = self.policies.get(name) or RetryPolicy()
        d = await deliver(notifier, n, policy, on_attempt=record)
        final = "delivered" if d.outcome.ok else "gave_up"
        await self.log_rows([self._row(n, name, d.attempts, final, d.outcome)])
        return final
