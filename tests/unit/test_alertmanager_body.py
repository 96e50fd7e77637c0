"""The exact request AlertmanagerNotifier sends, caught by a local aiohttp server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from alerting.alert import Evidence, Notification
from alerting.config import ReceiverConfig, Secret
from alerting.notifiers.alertmanager import RESEND_GRACE_S, AlertmanagerNotifier
from alerting.notifiers.base import Outcome
from llmpulse.broker import free_port

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

ALERT = Notification(
    notification_id="n-1", alert_id="a1b2c3", reason="first", status="firing",
    rule="ToxicityHigh",
    labels={"alertname": "ToxicityHigh", "app": "chat", "prompt_version": "v3",
            "severity": "warning", "variant": ""},
    severity="warning", metric="toxicity_rate", op=">=", threshold=0.1, value=0.125, count=80,
    window_s=900.0, for_s=0.0, starts_at=T0, ends_at=None, evaluated_at=T0 + 120,
    summary="chat v3: 12.5% toxic",
    evidence=Evidence(query="SELECT 1", examples=("you idiot",),
                      link="https://ch.example/play?q=SELECT%201"),
)  # fmt: skip


def capture(
    answer: int, send: Callable[[str], Awaitable[Outcome]]
) -> tuple[Outcome, dict[str, Any]]:
    """Serve one status on a free port, run ``send(base_url)``, return what came in."""
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(
            path=request.path, method=request.method,
            content_type=request.headers.get("Content-Type"), body=await request.read(),
        )  # fmt: skip
        return web.Response(status=answer, text="" if answer < 300 else "bad alert")

    async def go() -> Outcome:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await send(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(go()), seen


def notify(alert: Notification, url_suffix: str = "/", answer: int = 200) -> tuple[Outcome, Any]:
    async def send(base: str) -> Outcome:
        async with aiohttp.ClientSession() as session:
            config = ReceiverConfig("am-prod", "alertmanager", url=base + url_suffix)
            notifier = AlertmanagerNotifier(config, session)
            assert (notifier.name, notifier.channel) == ("am-prod", "alertmanager")
            return await notifier.notify(alert)

    outcome, seen = capture(answer, send)
    assert (seen["method"], seen["path"]) == ("POST", "/api/v2/alerts")
    assert seen["content_type"] == "application/json"
    return outcome, json.loads(seen["body"])


def test_firing_body_is_one_postable_alert_ending_a_grace_period_ahead() -> None:
    outcome, body = notify(ALERT)
    assert outcome.ok and outcome.status == 200
    assert body == [
        {
            "labels": {
                "alertname": "ToxicityHigh", "alert_id": "a1b2c3", "app": "chat",
                "prompt_version": "v3", "severity": "warning",
            },  # empty "variant" left out: an empty label is an absent one
            "annotations": {
                "summary": "chat v3: 12.5% toxic",
                "description": "toxicity_rate = 0.125 >= 0.1 over 15m (80 scored events)",
                "value": "0.125",
                "threshold": "0.1",
                "query": "SELECT 1",
                "examples": "- you idiot",
            },
            "startsAt": "2026-01-01T00:00:00.000Z",
            "endsAt": "2026-01-01T00:07:00.000Z",
            "generatorURL": "https://ch.example/play?q=SELECT%201",
        }
    ]  # fmt: skip
    assert RESEND_GRACE_S == 300.0


def test_resolved_body_ends_when_the_alert_ended_and_has_no_value() -> None:
    resolved = replace(ALERT, reason="resolved", status="resolved", value=None,
                       ends_at=T0 + 600.5, evaluated_at=T0 + 601)  # fmt: skip
    _, (alert,) = notify(resolved, url_suffix="")
    assert alert["endsAt"] == "2026-01-01T00:10:00.500Z"
    assert "value" not in alert["annotations"]
    assert alert["annotations"]["description"] == (
        "toxicity_rate: no longer >= 0.1 over 15m (80 scored events)"
    )
    assert alert["labels"]["alertname"] == "ToxicityHigh"


def test_what_alertmanager_would_refuse_is_left_out_or_fixed() -> None:
    odd = replace(
        ALERT,
        labels={**ALERT.labels, "team-name": "ml", "9x": "y"},
        evidence=Evidence(query="", examples=("x" * 5000,), link="not a url"),
    )
    _, (alert,) = notify(odd)
    assert alert["labels"]["team_name"] == "ml" and alert["labels"]["_9x"] == "y"
    assert "generatorURL" not in alert and "query" not in alert["annotations"]
    assert len(alert["annotations"]["examples"]) == 2000
    bad_escape = replace(ALERT, evidence=Evidence(link="http://h/play?q=%zz"))
    assert "generatorURL" not in notify(bad_escape)[1][0]


def test_a_refused_alert_is_permanent_and_a_5xx_is_retried() -> None:
    outcome, _ = notify(ALERT, answer=400)
    assert (outcome.kind, outcome.reason, outcome.detail) == ("permanent", "client_error",
                                                              "bad alert")  # fmt: skip
    assert notify(ALERT, answer=503)[0].retryable


def test_a_missing_url_secret_is_a_permanent_outcome_without_a_request() -> None:
    async def go() -> Outcome:
        async with aiohttp.ClientSession() as session:
            config = ReceiverConfig(
                "am", "alertmanager", url_secret=Secret(env="LLMPULSE_TEST_UNSET_AM_URL")
            )
            return await AlertmanagerNotifier(config, session).notify(ALERT)

    outcome = asyncio.run(go())
    assert (outcome.kind, outcome.reason) == ("permanent", "secret")
    assert "LLMPULSE_TEST_UNSET_AM_URL" in outcome.detail
