"""Crash anywhere: five SIGKILLs while traffic flows, and nothing is lost or doubled.

One run, shared by the tests below: a real worker takes a steady stream (background
traffic, broken payloads of six kinds, and a bad deploy of ``chaos-bot`` that must page,
roll back and resolve) and is SIGKILLed five times, four times exactly at a seam of the
commit order (before and after the store, before and after a notification) and once
from outside at a random moment, and restarted each time; the stream flows until the
last kill. Each test checks one promise of docs/architecture.md#delivery-guarantees on
what the run left behind. The full-size run (50,000 events, kills spread over the whole
run) is ``bench/chaos.py``. This run replaces the single-kill test the integration suite
had (20,000 events, one SIGKILL once 2,000 were stored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack
from tests.integration.receivers import Receivers
from tests.reliability.chaos import ChaosConfig, ChaosRun
from tests.reliability.chaos_checks import Check, verify

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Seam kills are cheap and land exactly; the notify seams need the incident in flight,
# which the run starts when the first of them comes up. A low rate keeps the backlog a
# worker restarting with cold models must catch up small, so the run stays short.
CONFIG = ChaosConfig(
    events=1_000, rate=10.0, incidents=1, store_kill_p=0.3, external_delay_s=(1.0, 8.0),
    plan=("before_notify", "after_notify", "after_store", "before_store", "external"),
)  # fmt: skip


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChaosRun, list[Check]]]:
    tmp: Path = tmp_path_factory.mktemp("chaos")
    with (
        EmbeddedBroker("127.0.0.1", free_port(), tmp / "broker-logs") as broker,
        Receivers() as receivers,
    ):
        stack = Stack(tmp / "home", broker.bootstrap, free_port())
        run = ChaosRun(stack, receivers, CONFIG)
        try:
            run.run()
            checks, _ = verify(run)
            yield run, checks
        finally:
            stack.kill_workers()


def failed(checks: list[Check], group: str) -> list[str]:
    mine = [c for c in checks if c.group == group]
    assert mine, f"no checks in group {group!r}"
    return [f"{c.name}: expected {c.expected!r}, got {c.got!r}" for c in mine if not c.ok]


def test_the_worker_was_killed_at_every_planned_seam_and_stops_cleanly_after(
    chaos: tuple[ChaosRun, list[Check]],
) -> None:
    """Five SIGKILLs, each where the plan put it; the sixth worker exits 0 on SIGTERM."""
    run, checks = chaos
    assert failed(checks, "kills") == [], [vars(k) for k in run.kills]


def test_every_valid_event_is_stored_exactly_once(chaos: tuple[ChaosRun, list[Check]]) -> None:
    """Offsets are committed only after storage, and replays collapse: FINAL = published."""
    _, checks = chaos
    assert failed(checks, "events") == []


def test_dead_letters_are_exactly_the_invalid_payloads(
    chaos: tuple[ChaosRun, list[Check]],
) -> None:
    """Same offsets in dead_letters FINAL and on llm.deadletter, each with its field."""
    _, checks = chaos
    assert failed(checks, "dead letters") == []


def test_the_bad_deploy_pages_once_rolls_back_once_and_resolves_once(
    chaos: tuple[ChaosRun, list[Check]],
) -> None:
    """Kills at the notify seams neither lose the episode nor start a second one."""
    run, checks = chaos
    assert failed(checks, "alerts") == [], run.summary()["incidents"]


def test_each_notification_is_delivered_once_per_receiver(
    chaos: tuple[ChaosRun, list[Check]],
) -> None:
    """One 'delivered' row per (notification, receiver); every receiver got every one."""
    _, checks = chaos
    assert failed(checks, "deliveries") == []
