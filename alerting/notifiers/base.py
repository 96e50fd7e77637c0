"""The notifier protocol and the one outcome type every channel returns.

A notifier makes one attempt and never loops: retrying lives in ``alerting.retry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from alerting.alert import Notification

__all__ = ["Notifier", "Outcome"]

OK = "ok"
RETRY = "retry"
PERMANENT = "permanent"


@dataclass(frozen=True)
class Outcome:
    kind: str  # ok | retry | permanent
    reason: str  # a short enum-like label: ok, server_error, rate_limited, client_error,
    # timeout, connection, secret, ...; also the alert_log column
    status: int | None = None  # HTTP status when there was a response
    detail: str = ""  # for the log; never holds a secret

    @property
    def ok(self) -> bool:
        return self.kind == OK

    @property
    def retryable(self) -> bool:
        return self.kind == RETRY


class Notifier(Protocol):
    name: str  # the receiver's name in the rules file
    channel: str  # pagerduty | slack | webhook | rollback | alertmanager

    async def notify(self, alert: Notification) -> Outcome: ...
