"""Load shedding: when and how much the models sample, from lag, arrivals and costs."""

from __future__ import annotations

import logging
import random

import pytest

from processors.shedding import MIN_RATE, LoadShedder


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def arrivals(start: float, rate: float, n: int) -> list[float]:
    """Kafka timestamps of ``n`` events produced at ``rate`` per second from ``start``."""
    return [start + i / rate for i in range(n)]


def measured(max_lag_s: float, now: float) -> LoadShedder:
    """A shedder whose last busy batch of 100 events took 1.1 s from plan to plan, 1.0 s
    of it in the models: 10 ms per model-scored event, 1 ms per event for the rest."""
    wall, mono = Clock(now), Clock(0.0)
    shedder = LoadShedder(max_lag_s, random.Random(7), wall, mono)
    shedder.plan(arrivals(now - 500.0, 100.0, 100))  # long ago: no arrival estimate left
    shedder.observe(events=100, scored=100, model_s=1.0)
    mono.now = 1.1
    return shedder


def test_a_worker_that_keeps_up_scores_every_event() -> None:
    shedder = measured(30.0, now=1_000.0)
    plan = shedder.plan(arrivals(995.0, 50.0, 100))  # 5 s behind
    assert plan.rate == 1.0 and all(plan.chosen) and not shedder.shedding


def test_past_the_bound_the_rate_drains_the_lag_within_the_bound() -> None:
    shedder = measured(30.0, now=1_000.0)
    # 101 events produced at 100/s (the models manage 91), the oldest 45 s ago: go
    # 2.5x the arrivals, so each event may take 1 / 250 s = 4 ms, of which 1 ms is not
    # the models': 3 / 10 sampled
    plan = shedder.plan(arrivals(955.0, 100.0, 101))
    assert shedder.shedding
    assert plan.lag_s == pytest.approx(45.0)
    assert plan.rate == pytest.approx(0.3)


def test_the_sample_is_a_bernoulli_draw_at_the_rate() -> None:
    shedder = measured(30.0, now=10_000.0)
    plan = shedder.plan(arrivals(9_955.0, 100.0, 2_000))
    share = sum(plan.chosen) / len(plan.chosen)
    # 2,000 draws: the share lies within 4 standard deviations of the rate
    assert abs(share - plan.rate) < 4 * (plan.rate * (1 - plan.rate) / 2_000) ** 0.5


def test_the_rate_never_falls_to_zero() -> None:
    shedder = measured(30.0, now=1_000.0)
    # 5,000 events/s arriving while the rest alone costs 1 ms an event: hopeless
    plan = shedder.plan(arrivals(900.0, 5_000.0, 500))
    assert plan.rate == MIN_RATE


def test_zero_bound_never_sheds() -> None:
    shedder = measured(0.0, now=1_000.0)
    plan = shedder.plan(arrivals(0.0, 50.0, 100))  # 1,000 s behind
    assert plan.rate == 1.0 and not shedder.shedding


def test_nothing_is_shed_before_the_costs_are_measured() -> None:
    shedder = LoadShedder(30.0, random.Random(7), Clock(1_000.0), Clock(0.0))
    assert shedder.plan(arrivals(900.0, 50.0, 100)).rate == 1.0


def test_shedding_stops_once_caught_up_and_the_models_keep_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(1_000.0)
    shedder = measured(30.0, now=1_000.0)
    shedder.clock = clock
    with caplog.at_level(logging.WARNING, logger="processors.shedding"):
        assert shedder.plan(arrivals(955.0, 100.0, 101)).rate < 1.0
        clock.now = 1_100.0
        # 10 s behind now, still 100/s arriving: shedding goes on
        assert shedder.plan(arrivals(1_090.0, 100.0, 101)).rate == pytest.approx(0.65)
        clock.now = 1_200.0
        # 2 s behind, and arrivals fell to 40/s: 11 ms an event is within budget
        plan = shedder.plan(arrivals(1_198.0, 40.0, 41))
    assert plan.rate == 1.0 and not shedder.shedding
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("load shedding starts: 45s behind")
    assert messages[1].startswith("load shedding stops")


def test_shedding_starts_before_a_full_batch_would_overshoot_the_bound() -> None:
    wall, mono = Clock(1_000.0), Clock(0.0)
    shedder = LoadShedder(30.0, random.Random(7), wall, mono)
    shedder.plan(arrivals(400.0, 100.0, 1_000))  # behind: a busy batch
    shedder.observe(events=1_000, scored=1_000, model_s=10.0)
    mono.now = 11.0  # 11 s a cycle, 10 of them in the models
    # 25 s behind: within the bound, but a full batch would be stored 36 s behind
    plan = shedder.plan(arrivals(975.0, 101.0, 1_000))
    assert shedder.shedding and plan.rate < 1.0


def test_a_cycle_that_waited_for_events_does_not_count_as_work() -> None:
    wall, mono = Clock(1_000.0), Clock(0.0)
    shedder = LoadShedder(30.0, random.Random(7), wall, mono)
    shedder.plan(arrivals(999.8, 100.0, 10))  # taken 0.2 s behind: the worker was idle
    shedder.observe(events=10, scored=10, model_s=0.1)
    mono.now = 30.0  # then waited half a minute for the next events
    shedder.plan(arrivals(1_000.0, 100.0, 10))
    assert shedder.other_s is None and shedder.cycle_s is None
