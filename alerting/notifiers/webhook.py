"""Generic webhook and rollback calls: signed JSON that a service of yours receives.

``WebhookNotifier`` sends the whole notification; ``RollbackNotifier`` sends only
the rollback decision, always signed, since acting on a forged one would change
production. Both carry an ``Idempotency-Key`` header because ``deliver`` retries
and Kafka replays: the receiver must act once per key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import aiohttp

from alerting.alert import Notification, iso
from alerting.config import ReceiverConfig, SecretError
from alerting.http import post
from alerting.notifiers.base import PERMANENT, Outcome
from alerting.signing import signed_headers

__all__ = ["RollbackNotifier", "WebhookNotifier", "rollback_body"]

ROLLBACK_TYPE = "llmpulse.rollback"


def rollback_body(alert: Notification) -> dict[str, Any]:
    """What a rollback receiver gets (pure, so tests and docs can show it)."""
    if alert.rollback is None:
        raise ValueError(f"alert {alert.alert_id} carries no rollback")
    ev = alert.evidence
    body: dict[str, Any] = {
        "type": ROLLBACK_TYPE,
        "app": alert.rollback.app,
        "prompt_version": alert.rollback.prompt_version,
        "rollback_to": alert.rollback.rollback_to,
        "alert_id": alert.alert_id,
        "idempotency_key": alert.idempotency_key,
        "rule": alert.rule,
        "metric": alert.metric,
        "value": alert.value,
        "threshold": alert.threshold,
        "op": alert.op,
        "window_s": alert.window_s,
        "fired_at": iso(alert.starts_at),
        "evidence": {"query": ev.query, "examples": list(ev.examples), "link": ev.link},
    }
    if ev.comparison is not None:  # a baseline rule: both samples, the effect, the test
        body["evidence"]["comparison"] = asdict(ev.comparison)
    return body


class _SignedPost:
    """Shared by both channels: resolve the URL and key, sign the exact bytes, POST."""

    channel: str
    name: str
    key_required: bool

    def __init__(
        self,
        config: ReceiverConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = config.name
        self.config = config
        self.session = session
        self.clock = clock

    async def _send(self, body: bytes, idempotency_key: str) -> Outcome:
        cfg = self.config
        try:
            url = cfg.endpoint()
            if cfg.secret is None and self.key_required:
                raise SecretError(f"receiver {self.name} has no HMAC secret")
            signature = signed_headers(cfg.secret.value(), body, self.clock()) if cfg.secret else {}
        except SecretError as exc:
            return Outcome(PERMANENT, "secret", None, str(exc))
        headers = {**cfg.headers, "Idempotency-Key": idempotency_key, **signature}
        return await post(self.session, url, body, headers=headers, timeout_s=cfg.timeout_s)


class WebhookNotifier(_SignedPost):
    channel = "webhook"
    key_required = False

    async def notify(self, alert: Notification) -> Outcome:
        return await self._send(alert.to_json(), alert.notification_id)


class RollbackNotifier(_SignedPost):
    channel = "rollback"
    key_required = True

    async def notify(self, alert: Notification) -> Outcome:
        if alert.rollback is None:
            return Outcome(PERMANENT, "no_rollback", None, "the notification has no rollback")
        body = json.dumps(rollback_body(alert), separators=(",", ":"), sort_keys=True)
        return await self._send(body.encode(), alert.idempotency_key)
