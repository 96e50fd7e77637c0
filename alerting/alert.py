"""One message on ``llm.alerts``: an alert state change that someone must be told about.

The evaluator decides and produces it; the notify agent delivers it. Kafka is the
outbox, so everything a notifier needs is in the message, including the rollback
target, which is computed once at decision time: a replay delivers the same thing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["DeliveryRecord", "Evidence", "Notification", "Rollback", "alert_identity", "iso"]

FIRING = "firing"
RESOLVED = "resolved"


def alert_identity(rule: str, labels: dict[str, str]) -> str:
    """Hash of the rule and its sorted labels: PagerDuty's dedup_key, Alertmanager's
    fingerprint, and the key of the alert's state."""
    text = rule + "\x00" + "\x00".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Evidence:
    """What shows the alert is real: the SQL an analyst runs, and a few examples."""

    query: str = ""
    examples: tuple[str, ...] = ()  # already PII-redacted
    link: str | None = None  # LLMPULSE_ALERT_QUERY_URL with the query filled in


@dataclass(frozen=True)
class Rollback:
    receiver: str
    app: str
    prompt_version: str  # the bad one
    rollback_to: str | None  # the last healthy version; None when there is none


@dataclass(frozen=True)
class Notification:
    notification_id: str  # same decision, same id: the notify agent delivers it once
    alert_id: str
    reason: str  # first | repeat | resolved | refresh (Alertmanager keep-alive)
    status: str  # firing | resolved
    rule: str
    labels: dict[str, str]  # alertname, app, prompt_version, severity and the rule's filters
    severity: str
    metric: str
    op: str
    threshold: float
    value: float | None  # the metric at the decision (None: no data, as when it resolved)
    count: int  # events (or windows, for drift) behind the value
    window_s: float
    for_s: float
    starts_at: float  # epoch seconds the alert started firing
    ends_at: float | None  # epoch seconds it resolved
    evaluated_at: float
    summary: str
    receivers: tuple[str, ...] = ()
    evidence: Evidence = field(default_factory=Evidence)
    rollback: Rollback | None = None

    @property
    def app(self) -> str:
        return self.labels.get("app", "")

    @property
    def prompt_version(self) -> str:
        return self.labels.get("prompt_version", "")

    @property
    def idempotency_key(self) -> str:
        """One per firing episode: a retried or replayed rollback carries the same key."""
        return f"{self.alert_id}-{int(self.starts_at * 1000)}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Notification:
        data: dict[str, Any] = json.loads(raw)
        evidence = data.pop("evidence", None) or {}
        rollback = data.pop("rollback", None)
        return cls(
            **{**data, "receivers": tuple(data.get("receivers", ()))},
            evidence=Evidence(
                query=evidence.get("query", ""),
                examples=tuple(evidence.get("examples", ())),
                link=evidence.get("link"),
            ),
            rollback=Rollback(**rollback) if rollback else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    """One attempt's outcome for one receiver: a row of ``alert_log``, whose columns
    are these fields in this order (storage derives its column list from them)."""

    at: float  # epoch seconds
    notification_id: str
    alert_id: str
    rule: str
    app: str
    prompt_version: str
    reason: str
    status: str
    receiver: str
    channel: str
    attempt: int
    outcome: str
    result: str
    http_status: int | None
    detail: str
