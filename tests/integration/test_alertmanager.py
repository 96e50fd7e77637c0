"""AlertmanagerNotifier against a real Alertmanager (Debian's 0.25 build).

What Alertmanager does with our alerts is asserted as observed: a posted firing alert
is listed active with our labels and annotations; a re-send moves its ``endsAt``; a
resolved one (``endsAt`` now) or one whose ``endsAt`` passed without a re-send is no
longer listed at all by ``GET /api/v2/alerts``, whatever the ``active`` filter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from alerting.alert import Evidence, Notification, iso
from alerting.config import ReceiverConfig
from alerting.notifiers.alertmanager import RESEND_GRACE_S, AlertmanagerNotifier
from alerting.notifiers.base import Outcome
from tests.integration.alertmanager import RealAlertmanager

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def am() -> Iterator[RealAlertmanager]:
    with RealAlertmanager() as running:
        yield running


def firing(alert_id: str, now: float) -> Notification:
    return Notification(
        notification_id=f"{alert_id}-1", alert_id=alert_id, reason="first", status="firing",
        rule="ErrorRateHigh",
        labels={"alertname": "ErrorRateHigh", "app": "chat", "prompt_version": "v7",
                "severity": "critical", "environment": "prod"},
        severity="critical", metric="error_rate", op=">", threshold=0.05, value=0.2, count=40,
        window_s=300.0, for_s=60.0, starts_at=now - 60, ends_at=None, evaluated_at=now,
        summary="chat v7: error rate 20% > 5%",
        evidence=Evidence(query="SELECT count() FROM llm_events", examples=("boom", "timeout"),
                          link="http://127.0.0.1:8123/play?query=SELECT%201"),
    )  # fmt: skip


def send(am: RealAlertmanager, alert: Notification) -> Outcome:
    async def go() -> Outcome:
        async with aiohttp.ClientSession() as session:
            config = ReceiverConfig("am", "alertmanager", url=am.url + "/")
            return await AlertmanagerNotifier(config, session).notify(alert)

    return asyncio.run(go())


def ours(am: RealAlertmanager, alert_id: str, query: str = "") -> list[dict[str, Any]]:
    return [a for a in am.get(f"/api/v2/alerts{query}") if a["labels"].get("alert_id") == alert_id]


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Alertmanager ingests posted alerts asynchronously: poll until ``check`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_firing_alert_is_active_then_refreshed_then_resolved(am: RealAlertmanager) -> None:
    now = time.time()
    alert = firing("it-firing-1", now)
    outcome = send(am, alert)
    assert (outcome.kind, outcome.status) == ("ok", 200), outcome

    (listed,) = eventually(lambda: ours(am, alert.alert_id))
    assert listed["labels"] == {
        "alertname": "ErrorRateHigh", "alert_id": "it-firing-1", "app": "chat",
        "environment": "prod", "prompt_version": "v7", "severity": "critical",
    }  # fmt: skip
    assert listed["annotations"] == {
        "summary": "chat v7: error rate 20% > 5%",
        "description": "error_rate = 0.2 > 0.05 over 5m (40 events)",
        "value": "0.2",
        "threshold": "0.05",
        "query": "SELECT count() FROM llm_events",
        "examples": "- boom\n- timeout",
    }
    assert listed["status"]["state"] == "active"
    assert listed["startsAt"] == iso(alert.starts_at)
    assert listed["endsAt"] == iso(now + RESEND_GRACE_S)
    assert listed["generatorURL"] == "http://127.0.0.1:8123/play?query=SELECT%201"
    assert ours(am, alert.alert_id, "?active=true") == [listed]

    # The evaluator's minutely refresh: same alert (fingerprint), endsAt moves on.
    refresh = replace(alert, reason="refresh", evaluated_at=now + 60, value=0.3)
    assert send(am, refresh).ok
    (moved,) = eventually(
        lambda: [a for a in ours(am, alert.alert_id) if a["endsAt"] != listed["endsAt"]]
    )
    assert moved["fingerprint"] == listed["fingerprint"]
    assert moved["endsAt"] == iso(now + 60 + RESEND_GRACE_S)
    assert moved["annotations"]["value"] == "0.3"
    assert moved["status"]["state"] == "active"

    # Resolved with endsAt now: Alertmanager 0.25 stops listing it at once, under
    # every filter (its API never lists alerts whose endsAt has passed).
    resolved = replace(
        alert, reason="resolved", status="resolved", value=None, ends_at=time.time(),
        evaluated_at=time.time(),
    )  # fmt: skip
    assert send(am, resolved).ok
    assert eventually(lambda: not ours(am, alert.alert_id))
    for query in ("?active=true", "?active=false", "?active=true&silenced=true&inhibited=true"):
        assert ours(am, alert.alert_id, query) == [], query
    assert not [
        a for g in am.get("/api/v2/alerts/groups") for a in g["alerts"]
        if a["labels"].get("alert_id") == alert.alert_id
    ]  # fmt: skip


def test_alert_expires_by_itself_when_the_sender_stops(am: RealAlertmanager) -> None:
    # Sent as if evaluated RESEND_GRACE_S - 2 s ago: endsAt is 2 s from now, and with
    # no refresh after it Alertmanager resolves the alert without being told.
    now = time.time()
    alert = firing("it-expiring-1", now - RESEND_GRACE_S + 2)
    assert send(am, alert).ok
    (listed,) = eventually(lambda: ours(am, alert.alert_id))
    assert listed["status"]["state"] == "active"
    assert eventually(lambda: not ours(am, alert.alert_id), timeout=15.0)
