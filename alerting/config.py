"""Typed alerting configuration: rules, receivers and the secrets they name.

``alerting.rules`` builds these from YAML (collecting every error with its line);
everything else only reads them. Secrets are references (an environment variable or
a file), resolved when a notifier needs them, so no value ever sits in a repr, a
log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from alerting.significance import Effect
from core.errors import LlmpulseError
from core.thresholds import FLAG_AT

__all__ = [
    "CHANNELS",
    "COMPARABLE",
    "FILTER_LABELS",
    "METRICS",
    "OPS",
    "SEVERITIES",
    "Action",
    "MetricSpec",
    "ReceiverConfig",
    "Rule",
    "RuleSet",
    "Secret",
    "SecretError",
]

SEVERITIES = ("critical", "error", "warning", "info")  # PagerDuty's four
OPS = (">", ">=", "<", "<=")
CHANNELS = ("pagerduty", "slack", "webhook", "rollback", "alertmanager")
FILTER_LABELS = ("app", "environment", "model", "prompt_version", "variant")


class SecretError(LlmpulseError, RuntimeError):
    """A secret cannot be read; the message names its source, never a value."""


@dataclass(frozen=True)
class Secret:
    """Where a secret lives: an environment variable or a file (its content, stripped)."""

    env: str | None = None
    file: Path | None = None

    def value(self) -> str:
        if self.env is not None:
            v = os.environ.get(self.env, "")
            if not v:
                raise SecretError(f"environment variable {self.env} is not set or empty")
            return v
        if self.file is not None:
            try:
                v = self.file.read_text().strip()
            except OSError as exc:
                raise SecretError(f"cannot read secret file {self.file}: {exc.strerror}") from None
            if not v:
                raise SecretError(f"secret file {self.file} is empty")
            return v
        raise SecretError("secret has neither env nor file")

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})" if self.env else f"Secret(file='{self.file}')"


@dataclass(frozen=True)
class ReceiverConfig:
    """One delivery target. ``url`` is literal; ``url_secret`` is for URLs that are
    themselves credentials (Slack incoming webhooks). ``secret`` is the PagerDuty
    routing key, or the HMAC key of a webhook / rollback receiver."""

    name: str
    channel: str  # one of CHANNELS
    url: str | None = None
    url_secret: Secret | None = field(default=None, repr=False)
    secret: Secret | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    retry_deadline_s: float | None = None  # None: LLMPULSE_ALERT_RETRY_DEADLINE_S
    headers: dict[str, str] = field(default_factory=dict)  # non-secret extra headers
    line: int = 0

    def endpoint(self) -> str:
        if self.url:
            return self.url
        if self.url_secret is not None:
            return self.url_secret.value()
        raise SecretError(f"receiver {self.name} has no url")


@dataclass(frozen=True)
class Action:
    """Something done once when an alert starts firing, beyond telling people."""

    kind: str  # "rollback"
    receiver: str  # a receiver whose channel is "rollback"


@dataclass(frozen=True)
class MetricSpec:
    scope: str  # "version": per app|prompt_version; "app": per app (all versions)
    unit: str
    help: str
    needs_budget: bool = False
    uses_score_threshold: bool = False
    # what a value rests on (the count min_events is compared with): a model score is
    # only on the events that were model-scored, a sample of them under load
    counted: str = "events"


METRICS: dict[str, MetricSpec] = {
    "event_count": MetricSpec("version", "events", "events in the window"),
    "error_rate": MetricSpec("version", "ratio", "share of events with status=error"),
    "toxicity_rate": MetricSpec(
        "version", "ratio",
        "share of scored outputs with toxicity >= score_threshold (each weighted by "
        "1 / sample_rate)",
        uses_score_threshold=True, counted="scored events",
    ),
    "toxicity_max": MetricSpec(
        "version", "score", "highest output toxicity", counted="scored events"
    ),
    "hallucination_rate": MetricSpec(
        "version", "ratio",
        "share of scored grounded answers (with context) with hallucination >= score_threshold "
        "(each weighted by 1 / sample_rate)",
        uses_score_threshold=True, counted="scored events",
    ),
    "pii_rate": MetricSpec("version", "ratio", "share of events with PII in input or output"),
    "injection_rate": MetricSpec(
        "version", "ratio",
        "share of scored inputs with injection >= score_threshold (each weighted by "
        "1 / sample_rate)",
        uses_score_threshold=True, counted="scored events",
    ),
    "latency_p95": MetricSpec(
        "version", "ms", "95th percentile of latency_ms", counted="events with latency"
    ),
    "latency_p99": MetricSpec(
        "version", "ms", "99th percentile of latency_ms", counted="events with latency"
    ),
    "ttft_p95": MetricSpec(
        "version", "ms", "95th percentile of ttft_ms", counted="events with TTFT"
    ),
    "cost_usd": MetricSpec("version", "USD", "spend in the window"),
    "cost_burn_rate": MetricSpec(
        "app", "x budget", "spend rate over the window / the rate the budget allows",
        needs_budget=True,
    ),
    "negative_feedback_rate": MetricSpec(
        "version", "ratio", "share of events with feedback whose score is < 0",
        counted="events with feedback",
    ),
    "answer_relevance": MetricSpec(
        "version", "cosine",
        "median cosine of question and answer over the scored events (each weighted by "
        "1 / sample_rate); topical relatedness, not correctness: alert on a drop with op <",
        counted="scored events",
    ),
    "context_relevance": MetricSpec(
        "version", "cosine",
        "median over the scored events with context of the best retrieved chunk's cosine "
        "with the question (each weighted by 1 / sample_rate): alert on a drop with op <",
        counted="scored events with context",
    ),
    "drift": MetricSpec(
        "version", "flag", "1 if a drift window tested in the window drifted",
        counted="drift tests",
    ),
    "drift_p_value": MetricSpec(
        "version", "p", "smallest drift p-value of the windows tested in the window",
        counted="drift tests",
    ),
}  # fmt: skip


# Metrics a baseline rule can compare: rates by their flagged shares, the others by the
# shares of events beyond the baseline's own quantile (p95, p99; cost: the median call;
# relevance: its median, a drop leaving fewer events above it).
COMPARABLE = {
    "error_rate": "rate", "toxicity_rate": "rate", "hallucination_rate": "rate",
    "pii_rate": "rate", "injection_rate": "rate", "negative_feedback_rate": "rate",
    "latency_p95": "distribution", "latency_p99": "distribution", "ttft_p95": "distribution",
    "cost_usd": "distribution", "answer_relevance": "distribution",
    "context_relevance": "distribution",
}  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """One alert rule. Alerts are per app|prompt_version (per app for app-scoped
    metrics); ``filters`` restrict the events and become labels of the alert."""

    name: str
    metric: str
    op: str
    threshold: float
    window_s: float
    for_s: float = 0.0
    min_events: int = 1
    severity: str = "error"
    receivers: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    filters: dict[str, str] = field(default_factory=dict)
    score_threshold: float = FLAG_AT
    budget_usd: float | None = None
    budget_period_s: float = 86_400.0
    repeat_interval_s: float = 4 * 3600.0
    summary: str = ""  # optional format string: {app} {prompt_version} {value} {threshold} ...
    compare_to: str | None = None  # "baseline" (the app's last healthy version) or a version
    min_effect: Effect | None = None  # the smallest change worth an alert (baseline rules)
    alpha: float = 0.05  # baseline rules: false-alarm bound while a version is judged
    line: int = 0

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.metric]

    @property
    def higher_is_worse(self) -> bool:
        return self.op in (">", ">=")

    def breaches(self, value: float) -> bool:
        t = self.threshold
        return {
            ">": value > t, ">=": value >= t, "<": value < t, "<=": value <= t,
        }[self.op]  # fmt: skip


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    receivers: dict[str, ReceiverConfig] = field(default_factory=dict)
    source: str = ""
