"""One reading of "since" for reports, compare and rules: durations back from now or ISO times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.time import DurationError, parse_duration, parse_since

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_a_timedelta_and_a_naive_datetime_are_read_like_their_text() -> None:
    assert parse_since(timedelta(hours=6), NOW) == parse_since("6h", NOW)
    assert parse_since(datetime(2026, 5, 1), NOW) == parse_since("2026-05-01", NOW)


@pytest.mark.parametrize("since", [timedelta(0), timedelta(hours=-1), datetime(2026, 7, 1)])
def test_an_empty_range_or_the_future_is_refused(since) -> None:
    with pytest.raises(ValueError):
        parse_since(since, NOW)


def test_a_bad_duration_is_an_llmpulse_error_the_cli_prints_in_one_line() -> None:
    with pytest.raises(DurationError, match="invalid duration 'soon'"):
        parse_duration("soon")
