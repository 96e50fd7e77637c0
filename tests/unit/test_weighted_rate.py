"""core.sampling: a model-score rate weights each scored event by 1 / its sample rate."""

from __future__ import annotations

import pytest

from core.sampling import weight, weight_sql, weighted_rate

# 100 events scored at rate 1.0 with 10 flagged, then 40 scored at rate 0.2 (standing
# for 200 events) with 12 flagged
STEP = [(i < 10, 1.0) for i in range(100)] + [(i < 12, 0.2) for i in range(40)]


def test_the_rate_counts_each_scored_event_as_the_events_it_stands_for() -> None:
    n, rate, hits = weighted_rate(STEP)
    assert n == 140  # what the value rests on: the scored events, not their weight
    assert rate == pytest.approx((10 + 12 / 0.2) / (100 + 40 / 0.2))  # 23.3 %, not 22 / 140
    assert hits == pytest.approx(140 * 70 / 300)


def test_with_one_sample_rate_it_is_the_plain_flagged_share() -> None:
    assert weighted_rate([(i < 3, 0.25) for i in range(12)])[1] == pytest.approx(3 / 12)


def test_at_rate_one_every_number_is_the_unweighted_one_exactly() -> None:
    assert weighted_rate([(i < 7, 1.0) for i in range(49)]) == (49, 7 / 49, 7)


def test_no_scored_event_gives_no_rate() -> None:
    assert weighted_rate([]) == (0, None, 0.0)


def test_a_row_without_a_sample_rate_was_scored_in_full() -> None:
    assert weight(None) == 1.0


def test_a_zero_sample_rate_does_not_divide_by_zero() -> None:
    assert weight(0.0) == pytest.approx(1e6)
    assert weight_sql() == "1 / greatest(sample_rate, 1e-06)"
