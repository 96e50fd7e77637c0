"""PendingSince: how long records on the broker have waited to be stored, from offsets."""

from __future__ import annotations

from processors.alerting import PendingSince


def test_a_worker_that_keeps_up_has_nothing_pending_before_now() -> None:
    p = PendingSince()
    assert p.note(10.0, {"p0": 5, "p1": 7}, {"p0": 5, "p1": 7}) == 10.0


def test_records_in_flight_under_steady_traffic_are_pending_only_since_the_last_note() -> None:
    p = PendingSince()
    assert p.note(10.0, {"p0": 5}, {"p0": 5}) == 10.0
    assert p.note(11.0, {"p0": 9}, {"p0": 6}) == 11.0  # arrived after 10 s, not stored yet
    assert p.note(12.0, {"p0": 12}, {"p0": 9}) == 12.0  # the 11 s note is reached


def test_a_stall_keeps_the_time_of_the_first_note_it_did_not_reach() -> None:
    p = PendingSince()
    assert p.note(10.0, {"p0": 5}, {"p0": 5}) == 10.0
    assert p.note(11.0, {"p0": 9}, {"p0": 5}) == 11.0
    assert p.note(12.0, {"p0": 12}, {"p0": 5}) == 11.0
    assert p.note(20.0, {"p0": 20}, {"p0": 5}) == 11.0  # behind by 9 s
    assert p.note(21.0, {"p0": 21}, {"p0": 9}) == 12.0  # catching up
    assert p.note(22.0, {"p0": 22}, {"p0": 22}) == 22.0


def test_a_partition_taken_away_by_a_rebalance_is_not_waited_for() -> None:
    p = PendingSince()
    assert p.note(5.0, {"p0": 10, "p1": 10}, {"p0": 8, "p1": 10}) == 5.0
    # p0 now belongs to another worker: this one no longer holds its offsets
    assert p.note(6.0, {"p1": 12}, {"p1": 12}) == 6.0


def test_partitions_not_fetched_yet_and_ones_with_nothing_stored_count_right() -> None:
    p = PendingSince()
    assert p.note(1.0, {"p0": None}, {}) == 1.0  # no high watermark yet: nothing to wait for
    assert p.note(2.0, {"p0": 3}, {}) == 2.0  # nothing stored yet: pending
    assert p.note(3.0, {"p0": 4}, {}) == 2.0
    assert p.note(4.0, {"p0": 4}, {"p0": 4}) == 4.0


def test_a_backlog_longer_than_the_notes_kept_keeps_its_oldest_time() -> None:
    p = PendingSince(max_notes=3)
    for t in range(1, 10):
        assert p.note(float(t), {"p0": 100 + t}, {"p0": 50}) == 1.0
    assert p.note(10.0, {"p0": 110}, {"p0": 110}) == 10.0
