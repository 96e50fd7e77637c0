"""One backoff type for every retry loop: how waits grow, jitter and refuse nonsense."""

from __future__ import annotations

import pytest

from alerting.retry import RetryPolicy
from core.retry import MIN_JITTER, Backoff


def test_waits_grow_by_the_factor_up_to_the_cap() -> None:
    b = Backoff(first_s=0.5, max_s=3.0, jitter="none")
    assert [b.wait(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.bound(10_000) == 3.0  # no overflow on a long outage


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_spread_jitter_keeps_a_wait_within_a_fifth_of_its_bound(draw, expected) -> None:
    assert Backoff(first_s=1.0).wait(1, rng=lambda: draw) == pytest.approx(expected)


def test_full_jitter_never_waits_less_than_a_tenth_of_the_bound() -> None:
    b = Backoff(first_s=2.0, max_s=2.0, jitter="full")
    assert b.wait(1, rng=lambda: 0.0) == MIN_JITTER * 2.0
    assert b.wait(1, rng=lambda: 0.75) == 1.5


def test_delays_hands_out_the_next_wait_of_a_loop() -> None:
    delays = Backoff(first_s=1.0, max_s=4.0, jitter="none").delays()
    assert [delays() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_s": 0},
        {"first_s": 5, "max_s": 1},
        {"factor": 0.5},
        {"deadline_s": -1},
        {"jitter": "lots"},
    ],
)
def test_nonsense_is_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_alert_delivery_uses_the_same_type_with_its_own_defaults() -> None:
    policy = RetryPolicy()
    assert isinstance(policy, Backoff)
    assert (policy.first_s, policy.max_s, policy.jitter, policy.deadline_s) == (
        1.0, 60.0, "full", 300.0,
    )  # fmt: skip
