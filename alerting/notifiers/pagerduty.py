"""PagerDuty Events API v2: a trigger when an alert fires, a resolve when it clears.

``dedup_key`` is the alert's identity, so repeats update the same PagerDuty alert
and the resolve closes it. A resolve carries only the routing key, the action and
the dedup key: PagerDuty ignores everything else on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import aiohttp

from alerting.alert import RESOLVED, Notification, iso
from alerting.config import SEVERITIES, ReceiverConfig, SecretError
from alerting.http import post
from alerting.notifiers.base import PERMANENT, Outcome

__all__ = ["DEFAULT_URL", "PagerDutyNotifier", "pagerduty_body"]

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024  # PagerDuty truncates longer summaries itself; we do it visibly


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pagerduty_body(alert: Notification, routing_key: str) -> dict[str, Any]:
    """The Events v2 event for ``alert`` (pure, so tests and docs can show it)."""
    if alert.status == RESOLVED:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.alert_id}
    ev = alert.evidence
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.alert_id,
        "client": "llmpulse",
        "payload": {
            "summary": _truncate(alert.summary or alert.rule, MAX_SUMMARY),
            "source": "llmpulse/" + alert.app,
            "severity": alert.severity if alert.severity in SEVERITIES else "error",
            "timestamp": iso(alert.starts_at),
            "component": alert.app,
            "group": alert.prompt_version,
            "class": alert.metric,
            "custom_details": {
                "rule": alert.rule,
                "metric": alert.metric,
                "value": alert.value,
                "op": alert.op,
                "threshold": alert.threshold,
                "window_s": alert.window_s,
                "for_s": alert.for_s,
                "count": alert.count,
                "counted": alert.counted,
                "labels": alert.labels,
                "evidence_query": ev.query,
                "examples": list(ev.examples),
            },
        },
    }
    details = body["payload"]["custom_details"]
    if alert.compare_to:  # a baseline rule: no threshold
        details["compare_to"] = alert.compare_to
        del details["threshold"]
    if ev.comparison is not None:  # both samples, the effect, the test
        details["comparison"] = alert.comparison_text()
        details["baseline"] = asdict(ev.comparison)
    if ev.link:
        body["client_url"] = ev.link
        body["links"] = [{"href": ev.link, "text": "Evidence query"}]
    return body


class PagerDutyNotifier:
    channel = "pagerduty"
    name: str

    def __init__(self, config: ReceiverConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self.config = config
        self.session = session

    async def notify(self, alert: Notification) -> Outcome:
        try:
            if self.config.secret is None:
                raise SecretError(f"receiver {self.name} has no routing key")
            key = self.config.secret.value()
            has_url = self.config.url or self.config.url_secret is not None
            url = self.config.endpoint() if has_url else DEFAULT_URL
        except SecretError as exc:
            return Outcome(PERMANENT, "secret", None, str(exc))
        body = json.dumps(pagerduty_body(alert, key), separators=(",", ":"), sort_keys=True)
        return await post(
            self.session,
            url,
            body.encode(),
            headers=self.config.headers,
            timeout_s=self.config.timeout_s,
        )
