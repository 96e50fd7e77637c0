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

from alerting.config import METRICS

__all__ = [
    "Comparison",
    "DeliveryRecord",
    "Evidence",
    "Notification",
    "Rollback",
    "alert_identity",
    "iso",
]

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
class Comparison:
    """A baseline rule's evidence: both samples with 95 % intervals, the effect, and the
    p-value that stays valid however often the rule looked.

    For a rate the shares are the flagged shares and ``statistic`` is "share". For a
    distribution the shares are of events beyond ``cutoff``, the baseline's quantile
    (``statistic``: p95, p99 or median), and the values are each sample's quantile."""

    baseline: str  # the baseline's prompt_version
    period: str  # "concurrent": its events over the same time; "stored": its last window
    statistic: str
    baseline_value: float
    candidate_value: float
    cutoff: float | None
    baseline_share: float
    baseline_interval: tuple[float, float]  # 95 % Wilson interval of the share
    baseline_count: int
    candidate_share: float
    candidate_interval: tuple[float, float]
    candidate_count: int
    difference: float  # candidate value - baseline value
    ratio: float | None  # candidate value / baseline value (None when that is 0)
    p_value: float  # always valid: 1 / the mixture likelihood ratio
    judged: bool  # False: too few flagged events expected yet (p_value is 1)
    alpha: float
    min_effect: str  # as written in the rule; "" when none
    method: str
    query: str  # the SQL of both samples

    def describe(self, unit: str) -> str:
        """One line: "16.0% [14.1%, 18.0%] (n=3000) vs 11.5% ... on v6; +4.5pp, p=0.003"."""

        def pct(v: float) -> str:
            return f"{v:.1%}"

        def side(v: float, ci: tuple[float, float], n: int) -> str:
            return f"{pct(v)} [{pct(ci[0])}, {pct(ci[1])}] (n={n})"

        cand = side(self.candidate_share, self.candidate_interval, self.candidate_count)
        base = side(self.baseline_share, self.baseline_interval, self.baseline_count)
        ratio = f", x{self.ratio:.2f}" if self.ratio is not None else ""
        test = f"p={self.p_value:.2g} (always valid, alpha {self.alpha:g})"
        if not self.judged:
            test = "not judged yet (too few flagged events expected)"
        where = f"on baseline {self.baseline} ({self.period})"
        if self.statistic == "share":
            effect = f"{self.difference * 100:+.1f}pp" if unit == "ratio" else ""
            return f"share {cand} vs {base} {where}; {effect}{ratio}; {test}"
        return (
            f"{self.statistic} {self.candidate_value:.4g} vs {self.baseline_value:.4g} "
            f"({self.difference:+.4g}{ratio}); beyond the baseline's {self.statistic} "
            f"{self.cutoff:.4g}: {cand} vs {base} {where}; {test}"
        )


@dataclass(frozen=True)
class Evidence:
    """What shows the alert is real: the SQL an analyst runs, and a few examples."""

    query: str = ""
    examples: tuple[str, ...] = ()  # already PII-redacted
    link: str | None = None  # LLMPULSE_ALERT_QUERY_URL with the query filled in
    comparison: Comparison | None = None  # baseline rules: the two samples and the test


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
    compare_to: str = ""  # a baseline rule's compare_to; "" for a threshold rule

    @property
    def app(self) -> str:
        return self.labels.get("app", "")

    @property
    def prompt_version(self) -> str:
        return self.labels.get("prompt_version", "")

    @property
    def counted(self) -> str:
        """What ``count`` counts: "scored events" for a model score (only a sample of the
        events is model-scored while the worker sheds load), "events" for most others."""
        return METRICS[self.metric].counted if self.metric in METRICS else "events"

    def comparison_text(self) -> str:
        """A baseline rule's evidence in one line ("" for a threshold rule)."""
        c = self.evidence.comparison
        if c is None:
            return ""
        unit = METRICS[self.metric].unit if self.metric in METRICS else ""
        return c.describe(unit)

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
                comparison=_comparison(evidence.get("comparison")),
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


def _comparison(data: dict[str, Any] | None) -> Comparison | None:
    if not data:
        return None
    # Messages produced before cutoff, the shares and judged existed read as rates.
    known = {"cutoff": None, "baseline_share": data.get("baseline_value", 0.0),
             "candidate_share": data.get("candidate_value", 0.0), "judged": True}  # fmt: skip
    return Comparison(
        **{
            **known,
            **data,
            "baseline_interval": tuple(data["baseline_interval"]),
            "candidate_interval": tuple(data["candidate_interval"]),
        }
    )
