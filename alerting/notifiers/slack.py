"""Slack incoming webhook: one Block Kit message per state change.

The webhook URL is itself a credential, so it comes from ``url_secret`` and never
reaches a log. Every piece of alert text is escaped (``&``, ``<``, ``>``) so an
example or a rule name cannot forge a mention or a link, and truncated to stay
inside Block Kit's limits.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from alerting.alert import RESOLVED, Notification, iso
from alerting.config import ReceiverConfig, SecretError
from alerting.http import post
from alerting.notifiers.base import PERMANENT, Outcome

__all__ = ["SlackNotifier", "escape", "slack_body"]

MAX_HEADER = 150  # Block Kit's limit for a header's plain text
MAX_EXAMPLE = 300
MAX_EXAMPLES = 3
MAX_QUERY = 500
MAX_FIELD = 500
MAX_LEAD = 1500


def escape(text: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str, limit: int) -> str:
    """Escape, then cut to ``limit`` characters without splitting an ``&amp;``."""
    out = escape(" ".join(text.split()))
    if len(out) <= limit:
        return out
    cut = out[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _num(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _field(title: str, value: str) -> dict[str, str]:
    return _mrkdwn(f"*{title}*\n{_md(value, MAX_FIELD)}")


def _evidence(alert: Notification) -> list[dict[str, Any]]:
    """The examples section (firing only) and the context line with the query and link."""
    ev = alert.evidence
    blocks: list[dict[str, Any]] = []
    if ev.examples and alert.status != RESOLVED:
        lines = ["• " + _md(x, MAX_EXAMPLE) for x in ev.examples[:MAX_EXAMPLES]]
        blocks.append({"type": "section", "text": _mrkdwn("*Examples*\n" + "\n".join(lines))})
    if ev.comparison is not None and alert.status != RESOLVED:
        text = "*Compared with the baseline*\n" + _md(alert.comparison_text(), MAX_EXAMPLE)
        blocks.append({"type": "section", "text": _mrkdwn(text)})
    context = []
    if ev.query:
        query = _md(ev.query.replace("`", "'"), MAX_QUERY)  # a backtick would end the span
        context.append(_mrkdwn(f"Evidence: `{query}`"))
    if ev.link:
        link = escape(ev.link.replace("|", "%7C"))
        context.append(_mrkdwn(f"<{link}|Open the evidence query>"))
    if context:
        blocks.append({"type": "context", "elements": context})
    return blocks


def slack_body(alert: Notification) -> dict[str, Any]:
    """The message for ``alert`` (pure, so tests and docs can show it)."""
    resolved = alert.status == RESOLVED
    icon, word = (":large_green_circle:", "RESOLVED") if resolved else (":red_circle:", "FIRING")
    where = f"{alert.app}/{alert.prompt_version}"
    measure = f"{alert.metric} = {_num(alert.value)} ({alert.op} {alert.threshold:g})"
    if alert.evidence.comparison is not None:
        measure = f"{alert.metric} vs baseline {alert.evidence.comparison.baseline}"
    elif alert.compare_to:
        measure = f"{alert.metric} = {_num(alert.value)} (compared with {alert.compare_to})"
    if resolved:
        at = iso(alert.ends_at if alert.ends_at is not None else alert.evaluated_at)
        last = f"; last value {_num(alert.value)}" if alert.value is not None else ""
        lead = f"Resolved at {at}{last}."
        fallback = f"RESOLVED: {alert.rule} on {where} at {at}{last}"
    else:
        lead = alert.summary or f"{alert.rule}: {measure}"
        fallback = f"FIRING: {alert.rule} on {where}: {measure}"
    window = f"{alert.window_s:g}s" + (f" (for {alert.for_s:g}s)" if alert.for_s else "")
    header = _cut(f"{icon} {word}: {alert.rule}", MAX_HEADER)
    fields = [
        _field("App", alert.app),
        _field("Prompt version", alert.prompt_version),
        _field("Metric", measure),
        _field("Window", window),
        _field("Severity", alert.severity),
        _field(alert.counted.capitalize(), str(alert.count)),
    ]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "text": _mrkdwn(_md(lead, MAX_LEAD)), "fields": fields},
        *_evidence(alert),
    ]
    return {"text": _md(fallback, MAX_LEAD), "blocks": blocks}


class SlackNotifier:
    channel = "slack"
    name: str

    def __init__(self, config: ReceiverConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self.config = config
        self.session = session

    async def notify(self, alert: Notification) -> Outcome:
        try:
            url = self.config.endpoint()
        except SecretError as exc:
            return Outcome(PERMANENT, "secret", None, str(exc))
        body = json.dumps(slack_body(alert), separators=(",", ":"), sort_keys=True)
        return await post(
            self.session,
            url,
            body.encode(),
            headers=self.config.headers,
            timeout_s=self.config.timeout_s,
        )
