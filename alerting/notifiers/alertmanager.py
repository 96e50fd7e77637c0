"""Alertmanager: post the alert to its v2 API and let it route, group and silence.

Alertmanager treats a client like Prometheus: an alert is active until its
``endsAt``, so a firing alert gets ``endsAt`` a few minutes ahead and is re-sent
before that (the evaluator's ``refresh`` notifications, every minute). If llmpulse
dies, Alertmanager resolves the alert by itself once ``endsAt`` passes instead of
paging forever; a resolved alert is sent with its real ``endsAt``, which resolves it
at once. The labels, including ``alertname``, are the alert's identity there.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from alerting.alert import RESOLVED, Notification, iso
from alerting.config import ReceiverConfig, SecretError
from alerting.http import post
from alerting.notifiers.base import PERMANENT, Outcome
from alerting.rules_yaml import format_duration

__all__ = ["RESEND_GRACE_S", "AlertmanagerNotifier", "alertmanager_alert"]

# How far ahead a firing alert's endsAt lies: several refresh intervals, so a few
# lost refreshes do not resolve it, but a dead sender stops paging within minutes.
RESEND_GRACE_S = 300.0
MAX_EXAMPLES_CHARS = 2000
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|[\x00-\x20\x7f]")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _name(key: str) -> str:
    """A valid Prometheus label name: one invalid name makes the whole POST a 400."""
    name = _BAD_NAME_CHARS.sub("_", key)
    return "_" + name if not name or name[0].isdigit() else name


def _description(alert: Notification) -> str:
    if alert.evidence.comparison is not None and alert.status != RESOLVED:
        return alert.comparison_text()
    rule = f"{alert.op} {alert.threshold:g} over {format_duration(alert.window_s)}"
    if alert.compare_to:
        rule = f"worse than {alert.compare_to} over {format_duration(alert.window_s)}"
    seen = f"{alert.metric} = {_number(alert.value)}" if alert.value is not None else alert.metric
    if alert.status == RESOLVED:
        counted = f" ({alert.count} {alert.counted})" if alert.count else ""
        return f"{seen}: no longer {rule}{counted}"
    return f"{seen} {rule} ({alert.count} {alert.counted})"


def _link(url: str | None) -> str | None:
    """Only an absolute http(s) URL: Alertmanager refuses the whole POST (422) when
    ``generatorURL`` is not a valid URI, and a bad link must not cost the page."""
    if not url or _BAD_ESCAPE.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _examples(examples: tuple[str, ...]) -> str:
    text = "\n".join(f"- {e}" for e in examples)
    return text if len(text) <= MAX_EXAMPLES_CHARS else text[: MAX_EXAMPLES_CHARS - 1] + "…"


def alertmanager_alert(alert: Notification) -> dict[str, Any]:
    """One ``postableAlert`` of the v2 API (``POST /api/v2/alerts`` takes a list).

    Empty values are left out: to Alertmanager, as to Prometheus, an empty label is
    an absent one (and an empty annotation says nothing), so ``value`` is absent when
    there was no data.
    """
    labels = {_name(k): str(v) for k, v in alert.labels.items()}
    labels.update(alertname=alert.rule, severity=alert.severity, alert_id=alert.alert_id)
    annotations = {
        "summary": alert.summary,
        "description": _description(alert),
        "value": _number(alert.value),
        "threshold": f"{alert.threshold:g}",
        "query": alert.evidence.query,
        "examples": _examples(alert.evidence.examples),
    }
    if alert.compare_to:  # a baseline rule: no threshold
        del annotations["threshold"]
    if (c := alert.evidence.comparison) is not None:
        annotations.update(
            baseline=c.baseline, baseline_value=_number(c.baseline_value),
            p_value=f"{c.p_value:.3g}", comparison_query=c.query,
        )  # fmt: skip
    if alert.status == RESOLVED:
        ends_at = alert.ends_at if alert.ends_at is not None else alert.evaluated_at
    else:
        ends_at = max(alert.evaluated_at, alert.starts_at) + RESEND_GRACE_S
    body: dict[str, Any] = {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": iso(alert.starts_at),
        "endsAt": iso(max(ends_at, alert.starts_at)),  # endsAt < startsAt is a 400
    }
    link = _link(alert.evidence.link)
    if link is not None:
        body["generatorURL"] = link
    return body


class AlertmanagerNotifier:
    channel = "alertmanager"

    def __init__(self, config: ReceiverConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self.config = config
        self.session = session

    @property
    def url(self) -> str:
        return self.config.endpoint().rstrip("/") + "/api/v2/alerts"

    async def notify(self, alert: Notification) -> Outcome:
        try:
            url = self.url
        except SecretError as exc:  # the message names the source, never a value
            return Outcome(PERMANENT, "secret", None, str(exc))
        body = json.dumps([alertmanager_alert(alert)], separators=(",", ":")).encode()
        return await post(
            self.session, url, body, headers=self.config.headers, timeout_s=self.config.timeout_s
        )
