"""Each channel against a real local HTTP server: the exact JSON it receives."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alerting.alert import Evidence, Notification, Rollback
from alerting.config import ReceiverConfig, Secret
from alerting.notifiers import build_notifier
from alerting.notifiers import pagerduty as pagerduty_module
from alerting.notifiers.base import Notifier, Outcome
from alerting.notifiers.pagerduty import DEFAULT_URL, PagerDutyNotifier, pagerduty_body
from alerting.notifiers.slack import SlackNotifier, slack_body
from alerting.notifiers.webhook import RollbackNotifier, WebhookNotifier
from alerting.retry import RetryPolicy, deliver
from alerting.signing import sign, verify

ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
HMAC_KEY = "hmac-key-for-tests"
SLACK_TOKEN = "XoXbSeCrEtT0KeN"
LINK = "https://ch.example/play?q=SELECT%201&x=1"
QUERY = "SELECT count()\n  FROM llm_events WHERE app = 'chat'"

FIRING = Notification(
    notification_id="n-42", alert_id="a1b2c3d4e5f6", reason="first", status="firing",
    rule="high_error_rate",
    labels={"alertname": "high_error_rate", "app": "chat", "prompt_version": "v7",
            "severity": "critical"},
    severity="critical", metric="error_rate", op=">", threshold=0.05, value=0.2, count=120,
    window_s=300, for_s=60, starts_at=1_700_000_000.0, ends_at=None,
    evaluated_at=1_700_000_060.0, summary="chat v7: error_rate 0.2 > 0.05",
    receivers=("oncall", "deploy"),
    evidence=Evidence(query=QUERY, examples=("user <b>x</b> & y", "second"), link=LINK),
    rollback=Rollback(receiver="deploy", app="chat", prompt_version="v7", rollback_to="v6"),
)  # fmt: skip
RESOLVED = dataclasses.replace(
    FIRING, notification_id="n-43", reason="resolved", status="resolved", value=0.01,
    ends_at=1_700_000_900.0, evaluated_at=1_700_000_900.0, rollback=None,
)  # fmt: skip


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Make = Callable[[str, aiohttp.ClientSession], Notifier]


async def _exchange(
    make: Make, alert: Notification, status: int, text: str
) -> tuple[Outcome, list[Received]]:
    got: list[Received] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(Received(request.path, dict(request.headers), await request.read()))
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        outcome = await make(str(server.make_url("")), session).notify(alert)
    return outcome, got


def exchange(
    make: Make, alert: Notification, status: int = 200, text: str = "ok"
) -> tuple[Outcome, list[Received]]:
    """Start a local receiver, make ``make(base_url, session)`` notify it once."""
    return asyncio.run(_exchange(make, alert, status, text))


def at(cls: type, channel: str, path: str, **config: Any) -> Make:
    """A factory for ``cls`` posting to ``path`` on the local server."""
    return lambda base, session: cls(ReceiverConfig(channel, channel, url=base + path, **config),
                                     session)  # fmt: skip


pagerduty = at(PagerDutyNotifier, "pagerduty", "/v2/enqueue", secret=Secret("PD_KEY"))
rollback = at(RollbackNotifier, "rollback", "/rollback", secret=Secret("HOOK_KEY"))


def slack(base: str, session: aiohttp.ClientSession) -> Notifier:
    return SlackNotifier(ReceiverConfig("team", "slack", url_secret=Secret("SLACK_URL")), session)


def slack_at(base: str, session: aiohttp.ClientSession, mp: pytest.MonkeyPatch) -> Notifier:
    """The Slack URL is a secret: set it once the local server's address is known."""
    mp.setenv("SLACK_URL", f"{base}/services/{SLACK_TOKEN}")
    return slack(base, session)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", ROUTING_KEY)
    monkeypatch.setenv("HOOK_KEY", HMAC_KEY)


# --- PagerDuty ---------------------------------------------------------------------------

PD_TRIGGER = {
    "routing_key": ROUTING_KEY,
    "event_action": "trigger",
    "dedup_key": "a1b2c3d4e5f6",
    "client": "llmpulse",
    "client_url": LINK,
    "links": [{"href": LINK, "text": "Evidence query"}],
    "payload": {
        "summary": "chat v7: error_rate 0.2 > 0.05",
        "source": "llmpulse/chat",
        "severity": "critical",
        "timestamp": "2023-11-14T22:13:20.000Z",
        "component": "chat",
        "group": "v7",
        "class": "error_rate",
        "custom_details": {
            "rule": "high_error_rate",
            "metric": "error_rate",
            "value": 0.2,
            "op": ">",
            "threshold": 0.05,
            "window_s": 300,
            "for_s": 60,
            "count": 120,
            "counted": "events",
            "labels": FIRING.labels,
            "evidence_query": QUERY,
            "examples": ["user <b>x</b> & y", "second"],
        },
    },
}


def test_pagerduty_trigger_is_the_exact_events_v2_body(secrets: None) -> None:
    outcome, [req] = exchange(pagerduty, FIRING, 202, '{"status":"success"}')
    assert outcome.ok and outcome.status == 202
    assert req.path == "/v2/enqueue"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == PD_TRIGGER


def test_pagerduty_resolve_carries_only_key_action_and_dedup_key(secrets: None) -> None:
    _, [req] = exchange(pagerduty, RESOLVED, 202)
    assert req.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "a1b2c3d4e5f6",
    }


def test_pagerduty_without_a_link_sends_no_client_url_or_links() -> None:
    alert = dataclasses.replace(FIRING, evidence=Evidence(query=QUERY))
    body = pagerduty_body(alert, ROUTING_KEY)
    assert "client_url" not in body and "links" not in body


def test_pagerduty_unknown_severity_becomes_error() -> None:
    alert = dataclasses.replace(FIRING, severity="page")
    assert pagerduty_body(alert, ROUTING_KEY)["payload"]["severity"] == "error"


def test_pagerduty_summary_is_cut_to_1024_characters() -> None:
    summary = pagerduty_body(dataclasses.replace(FIRING, summary="x" * 5000), "k")["payload"]
    assert len(summary["summary"]) == 1024 and summary["summary"].endswith("…")


def test_pagerduty_defaults_to_the_public_events_endpoint(
    secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls: list[str] = []

    async def fake_post(session: object, url: str, body: bytes, **kw: object) -> Outcome:
        urls.append(url)
        return Outcome("ok", "ok", 202)

    monkeypatch.setattr(pagerduty_module, "post", fake_post)
    cfg = ReceiverConfig("oncall", "pagerduty", secret=Secret("PD_KEY"))
    asyncio.run(PagerDutyNotifier(cfg, None).notify(FIRING))  # type: ignore[arg-type]
    assert urls == [DEFAULT_URL] == ["https://events.pagerduty.com/v2/enqueue"]


def test_pagerduty_rate_limit_is_retryable(secrets: None) -> None:
    outcome, _ = exchange(pagerduty, FIRING, 429, "")
    assert (outcome.kind, outcome.reason) == ("retry", "rate_limited")


def test_pagerduty_missing_routing_key_is_permanent_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PD_KEY", raising=False)
    outcome, got = exchange(pagerduty, FIRING)
    assert outcome == Outcome("permanent", "secret", None,
                              "environment variable PD_KEY is not set or empty")  # fmt: skip
    assert got == []


# --- Slack -------------------------------------------------------------------------------

SLACK_CONTEXT = {
    "type": "context",
    "elements": [
        {"type": "mrkdwn", "text": "Evidence: `SELECT count() FROM llm_events WHERE app = 'chat'`"},
        {"type": "mrkdwn", "text": "<https://ch.example/play?q=SELECT%201&amp;x=1|Open the evidence query>"},  # noqa: E501
    ],
}  # fmt: skip


def _fields(value: str) -> list[dict[str, str]]:
    texts = ["*App*\nchat", "*Prompt version*\nv7", f"*Metric*\nerror_rate = {value} (&gt; 0.05)",
             "*Window*\n300s (for 60s)", "*Severity*\ncritical", "*Events*\n120"]  # fmt: skip
    return [{"type": "mrkdwn", "text": t} for t in texts]


def test_slack_firing_is_the_exact_block_kit_message(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, [req] = exchange(lambda b, s: slack_at(b, s, monkeypatch), FIRING)
    assert outcome.ok
    assert req.path == f"/services/{SLACK_TOKEN}"
    assert req.json == {
        "text": "FIRING: high_error_rate on chat/v7: error_rate = 0.2 (&gt; 0.05)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                                        "text": ":red_circle: FIRING: high_error_rate"}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": "chat v7: error_rate 0.2 &gt; 0.05"},
             "fields": _fields("0.2")},
            {"type": "section", "text": {"type": "mrkdwn", "text":
                "*Examples*\n• user &lt;b&gt;x&lt;/b&gt; &amp; y\n• second"}},
            SLACK_CONTEXT,
        ],
    }  # fmt: skip


def test_slack_resolved_says_when_and_the_last_value(monkeypatch: pytest.MonkeyPatch) -> None:
    _, [req] = exchange(lambda b, s: slack_at(b, s, monkeypatch), RESOLVED)
    assert req.json == {
        "text": "RESOLVED: high_error_rate on chat/v7 at 2023-11-14T22:28:20.000Z; last value 0.01",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                                        "text": ":large_green_circle: RESOLVED: high_error_rate"}},
            {"type": "section",
             "text": {"type": "mrkdwn",
                      "text": "Resolved at 2023-11-14T22:28:20.000Z; last value 0.01."},
             "fields": _fields("0.01")},
            SLACK_CONTEXT,
        ],
    }  # fmt: skip


def test_slack_shows_at_most_three_examples_each_cut_near_300_characters() -> None:
    alert = dataclasses.replace(FIRING, evidence=Evidence(examples=("&" * 400, "b", "c", "d")))
    [examples] = [b for b in slack_body(alert)["blocks"] if "Examples" in str(b)]
    lines = examples["text"]["text"].split("\n")[1:]
    assert [line[:3] for line in lines] == ["• &", "• b", "• c"]
    assert len(lines[0]) <= 302 and lines[0].endswith("&amp;…")  # no half-cut entity


def test_a_model_score_alert_says_its_count_is_of_scored_events() -> None:
    # while the worker sheds load only a sample is model-scored: 80 of maybe 320 events
    alert = dataclasses.replace(FIRING, metric="toxicity_rate", count=80)
    assert alert.counted == "scored events"
    assert {"type": "mrkdwn", "text": "*Scored events*\n80"} in slack_body(alert)["blocks"][1][
        "fields"
    ]
    details = pagerduty_body(alert, ROUTING_KEY)["payload"]["custom_details"]
    assert (details["count"], details["counted"]) == (80, "scored events")


def test_slack_text_cannot_forge_a_mention_or_link() -> None:
    alert = dataclasses.replace(FIRING, rule="r", summary="<!channel> <https://evil|click>")
    section = slack_body(alert)["blocks"][1]
    assert section["text"]["text"] == "&lt;!channel&gt; &lt;https://evil|click&gt;"


def test_slack_missing_url_is_permanent_and_names_only_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLACK_URL", raising=False)
    outcome, got = exchange(slack, FIRING)
    assert outcome == Outcome("permanent", "secret", None,
                              "environment variable SLACK_URL is not set or empty")  # fmt: skip
    assert got == []


# --- Webhook -----------------------------------------------------------------------------


def test_webhook_posts_the_whole_notification_with_its_idempotency_key() -> None:
    hook = at(WebhookNotifier, "webhook", "/h", headers={"X-Team": "ml"})
    outcome, [req] = exchange(hook, FIRING, 204, "")
    assert outcome.ok
    assert req.body == FIRING.to_json()
    assert Notification.from_json(req.body) == FIRING
    assert req.headers["Idempotency-Key"] == "n-42"
    assert req.headers["X-Team"] == "ml"
    assert "X-Llmpulse-Signature" not in req.headers


def test_webhook_with_a_secret_is_signed(secrets: None) -> None:
    _, [req] = exchange(at(WebhookNotifier, "webhook", "/h", secret=Secret("HOOK_KEY")), RESOLVED)
    assert req.body == RESOLVED.to_json()
    verify(HMAC_KEY, req.headers, req.body, time.time())


# --- Rollback ----------------------------------------------------------------------------

ROLLBACK = {
    "type": "llmpulse.rollback",
    "app": "chat",
    "prompt_version": "v7",
    "rollback_to": "v6",
    "alert_id": "a1b2c3d4e5f6",
    "idempotency_key": "a1b2c3d4e5f6-1700000000000",
    "rule": "high_error_rate",
    "metric": "error_rate",
    "value": 0.2,
    "threshold": 0.05,
    "op": ">",
    "window_s": 300,
    "fired_at": "2023-11-14T22:13:20.000Z",
    "evidence": {"query": QUERY, "examples": ["user <b>x</b> & y", "second"], "link": LINK},
}


def test_rollback_body_is_compact_sorted_json_of_the_decision(secrets: None) -> None:
    def fixed_clock(base: str, session: aiohttp.ClientSession) -> Notifier:
        cfg = ReceiverConfig(
            "deploy", "rollback", url=base + "/rollback", secret=Secret("HOOK_KEY")
        )
        return RollbackNotifier(cfg, session, clock=lambda: 1_700_000_100.5)

    outcome, [req] = exchange(fixed_clock, FIRING, 200, "")
    assert outcome.ok and req.path == "/rollback"
    assert req.json == ROLLBACK
    assert req.body == json.dumps(ROLLBACK, separators=(",", ":"), sort_keys=True).encode()
    assert req.headers["Idempotency-Key"] == "a1b2c3d4e5f6-1700000000000"
    assert req.headers["X-Llmpulse-Timestamp"] == "1700000100"
    assert req.headers["X-Llmpulse-Signature"] == sign(HMAC_KEY, 1_700_000_100, req.body)


def test_rollback_signature_verifies_with_the_documented_verifier(secrets: None) -> None:
    _, [req] = exchange(rollback, FIRING)
    verify(HMAC_KEY, req.headers, req.body, time.time())


def test_rollback_idempotency_key_is_the_same_for_every_notification_of_an_episode(
    secrets: None,
) -> None:
    repeat = dataclasses.replace(FIRING, notification_id="n-99", reason="repeat")
    keys = [exchange(rollback, a)[1][0].headers["Idempotency-Key"] for a in (FIRING, repeat)]
    assert keys == ["a1b2c3d4e5f6-1700000000000"] * 2


def test_rollback_without_a_decision_is_permanent_and_sends_nothing(secrets: None) -> None:
    outcome, got = exchange(rollback, RESOLVED)
    assert (outcome.kind, outcome.reason, got) == ("permanent", "no_rollback", [])


def test_rollback_without_a_secret_is_refused() -> None:
    outcome, got = exchange(at(RollbackNotifier, "rollback", "/rollback"), FIRING)
    assert (outcome.kind, outcome.reason, got) == ("permanent", "secret", [])


# --- Secrets stay secret -----------------------------------------------------------------


def test_secret_values_are_not_in_the_config_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_URL", f"https://hooks.slack.com/services/{SLACK_TOKEN}")
    monkeypatch.setenv("HOOK_KEY", HMAC_KEY)
    cfg = ReceiverConfig("deploy", "rollback", url_secret=Secret("SLACK_URL"),
                         secret=Secret("HOOK_KEY"))  # fmt: skip
    assert cfg.endpoint().endswith(SLACK_TOKEN)  # the values are really there
    assert SLACK_TOKEN not in repr(cfg) and HMAC_KEY not in repr(cfg)


def test_a_missing_secret_file_leaks_no_secret_to_outcome_or_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "hmac.key"
    monkeypatch.setenv("HOOK_URL", f"https://deploy.example/hook?token={SLACK_TOKEN}")
    cfg = ReceiverConfig("deploy", "rollback", url_secret=Secret("HOOK_URL"),
                         secret=Secret(file=missing))  # fmt: skip

    async def go() -> Outcome:
        async with aiohttp.ClientSession() as session:
            notifier = build_notifier(cfg, session)
            return (await deliver(notifier, FIRING, RetryPolicy())).outcome

    with caplog.at_level(logging.DEBUG):
        outcome = asyncio.run(go())
    assert (outcome.kind, outcome.reason) == ("permanent", "secret")
    assert str(missing) in outcome.detail
    assert str(missing) in caplog.text and "deploy" in caplog.text
    assert SLACK_TOKEN not in outcome.detail + caplog.text
    assert "deploy.example" not in caplog.text


def test_failing_slack_retries_log_no_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        async def fail(request: web.Request) -> web.Response:
            return web.Response(status=500, text="internal_error")

        app = web.Application()
        app.router.add_post("/{tail:.*}", fail)
        async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as s:
            notifier = slack_at(str(server.make_url("")), s, monkeypatch)
            policy = RetryPolicy(first_s=0.01, max_s=0.01, deadline_s=0.1)
            delivery = await deliver(notifier, FIRING, policy, rng=lambda: 1.0)
        assert delivery.gave_up and delivery.attempts >= 2

    with caplog.at_level(logging.DEBUG, logger="alerting"):
        asyncio.run(go())
    assert "internal_error" in caplog.text
    assert SLACK_TOKEN not in caplog.text and "127.0.0.1" not in caplog.text


# --- build_notifier ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "cls"),
    [("pagerduty", PagerDutyNotifier), ("slack", SlackNotifier),
     ("webhook", WebhookNotifier), ("rollback", RollbackNotifier)],
)  # fmt: skip
def test_build_notifier_picks_the_channel_class(channel: str, cls: type) -> None:
    notifier = build_notifier(ReceiverConfig("r", channel), None)  # type: ignore[arg-type]
    assert isinstance(notifier, cls)
    assert (notifier.name, notifier.channel) == ("r", channel)


def test_build_notifier_refuses_an_unknown_channel() -> None:
    with pytest.raises(ValueError, match="email"):
        build_notifier(ReceiverConfig("r", "email"), None)  # type: ignore[arg-type]
