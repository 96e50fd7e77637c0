"""The alert state machine and the notify decision, case by case (clock passed in)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerting.state import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    needs_notify,
    notification_id,
    step,
    told,
)

BASE = AlertState("a1", "toxic-output")
PEND = replace(BASE, state=PENDING, active_at=100.0)

STEP_CASES = [
    # (previous state, breaching, now, for_s) -> (state, active_at, fired_at, resolved_at)
    # quiet and still quiet: nothing happens
    (BASE, False, 100.0, 30.0, (INACTIVE, None, None, None)),
    # condition turns true with a `for`: pending, remembering when it began
    (BASE, True, 100.0, 30.0, (PENDING, 100.0, None, None)),
    # condition true with for 0: fires at once
    (BASE, True, 100.0, 0.0, (FIRING, 100.0, 100.0, None)),
    # pending and `for` not yet elapsed: still pending
    (PEND, True, 129.9, 30.0, (PENDING, 100.0, None, None)),
    # pending for exactly `for`: fires
    (PEND, True, 130.0, 30.0, (FIRING, 100.0, 130.0, None)),
    # pending but the condition went away: back to inactive, no one was told
    (PEND, False, 110.0, 30.0, (INACTIVE, None, None, None)),
    # firing and still breaching: firing, same episode
    (
        replace(BASE, state=FIRING, active_at=100.0, fired_at=130.0), True, 500.0, 30.0,
        (FIRING, 100.0, 130.0, None),
    ),
    # firing and the condition went away (or too few events): resolved now
    (
        replace(BASE, state=FIRING, active_at=100.0, fired_at=130.0), False, 500.0, 30.0,
        (RESOLVED, 100.0, 130.0, 500.0),
    ),
    # resolved and quiet: stays resolved
    (
        replace(BASE, state=RESOLVED, fired_at=130.0, resolved_at=500.0), False, 900.0, 30.0,
        (RESOLVED, None, 130.0, 500.0),
    ),
    # resolved and breaching again: a new episode starts pending
    (
        replace(BASE, state=RESOLVED, fired_at=130.0, resolved_at=500.0), True, 900.0, 30.0,
        (PENDING, 900.0, None, None),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("prev", "breaching", "now", "for_s", "expected"), STEP_CASES)
def test_step(prev: AlertState, breaching: bool, now: float, for_s: float, expected: tuple) -> None:
    s = step(prev, breaching, now, for_s)
    assert (s.state, s.active_at, s.fired_at, s.resolved_at) == expected


FIRING_130 = replace(BASE, state=FIRING, active_at=100.0, fired_at=130.0)
TOLD_130 = replace(
    FIRING_130,
    notified_at=131.0,
    notified_status=FIRING,
    notified_episode=130.0,
    refreshed_at=131.0,
)
REPEAT = 3600.0

NOTIFY_CASES = [
    # (state, now, refresh_s) -> reason
    # inactive: nothing to say
    (BASE, 100.0, None, None),
    # pending: nobody is told before `for` has elapsed
    (replace(BASE, state=PENDING, active_at=100.0), 120.0, None, None),
    # just started firing, never told: the first notification
    (FIRING_130, 130.0, None, "first"),
    # told about this episode a minute ago: nothing
    (TOLD_130, 191.0, None, None),
    # told exactly one repeat interval ago: repeat
    (TOLD_130, 131.0 + REPEAT, None, "repeat"),
    # an Alertmanager receiver wants a keep-alive every 60 s
    (TOLD_130, 191.0, 60.0, "refresh"),
    # keep-alive sent 30 s ago: not yet
    (replace(TOLD_130, refreshed_at=170.0), 200.0, 60.0, None),
    # repeat wins over a keep-alive that is also due
    (TOLD_130, 131.0 + REPEAT, 60.0, "repeat"),
    # told about an earlier episode (resolved since): this firing is a new first
    (replace(TOLD_130, fired_at=900.0, notified_status=RESOLVED), 900.0, None, "first"),
    # a crash after the decision but before it was produced: still "first" after restart
    (replace(FIRING_130, notified_status=RESOLVED, notified_episode=20.0), 400.0, None, "first"),
    # resolved after people were told it fired: the resolve message
    (replace(TOLD_130, state=RESOLVED, resolved_at=500.0), 500.0, None, "resolved"),
    # resolve already told: nothing more
    (
        replace(TOLD_130, state=RESOLVED, resolved_at=500.0, notified_status=RESOLVED), 600.0,
        None, None,
    ),
    # resolved without anyone told it fired (e.g. fired and cleared between two ticks
    # of a restart): no resolve for an alert nobody heard of
    (replace(FIRING_130, state=RESOLVED, resolved_at=500.0), 500.0, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("st", "now", "refresh_s", "expected"), NOTIFY_CASES)
def test_needs_notify(st: AlertState, now: float, refresh_s: float | None, expected: str) -> None:
    assert needs_notify(st, REPEAT, now, refresh_s) == expected


def test_the_same_decision_made_twice_has_the_same_id() -> None:
    assert notification_id(FIRING_130, "first") == notification_id(FIRING_130, "first")


def test_a_new_episode_gets_a_new_id() -> None:
    later = replace(FIRING_130, fired_at=900.0)
    assert notification_id(later, "first") != notification_id(FIRING_130, "first")


def test_each_repeat_gets_its_own_id() -> None:
    again = told(TOLD_130, "repeat", 131.0 + REPEAT)
    assert notification_id(again, "repeat") != notification_id(TOLD_130, "repeat")


def test_telling_records_the_episode_so_the_next_tick_is_quiet() -> None:
    st = told(FIRING_130, "first", 131.0)
    assert (st.notified_status, st.notified_episode, st.notified_at) == (FIRING, 130.0, 131.0)
    assert needs_notify(st, REPEAT, 132.0) is None


def test_a_refresh_does_not_count_as_telling_people() -> None:
    st = told(TOLD_130, "refresh", 200.0)
    assert (st.notified_at, st.refreshed_at) == (131.0, 200.0)
