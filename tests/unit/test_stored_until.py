"""StoredUntil: the time up to which everything on the broker is stored, from offsets."""

from __future__ import annotations

from processors.alerting import StoredUntil


def test_caught_up_offsets_mean_everything_is_stored_now() -> None:
    s = StoredUntil(now=0.0)
    assert s.note(10.0, {"p0": 5, "p1": 7}, {"p0": 5, "p1": 7}) == 10.0


def test_a_partition_behind_holds_the_time_at_the_last_note_it_reached() -> None:
    s = StoredUntil(now=0.0)
    assert s.note(10.0, {"p0": 5, "p1": 7}, {"p0": 5, "p1": 7}) == 10.0
    assert s.note(11.0, {"p0": 9, "p1": 7}, {"p0": 6, "p1": 7}) == 10.0
    assert s.note(12.0, {"p0": 12, "p1": 8}, {"p0": 8, "p1": 8}) == 10.0
    # p0 reaches 9 (the 11 s note) but not 12: stored up to 11 s
    assert s.note(13.0, {"p0": 12, "p1": 8}, {"p0": 9, "p1": 8}) == 11.0
    assert s.note(14.0, {"p0": 12, "p1": 8}, {"p0": 12, "p1": 8}) == 14.0


def test_partitions_not_fetched_yet_and_uncommitted_ones_count_right() -> None:
    s = StoredUntil(now=0.0)
    assert s.note(1.0, {"p0": None}, {}) == 1.0  # no high watermark yet: nothing to wait for
    assert s.note(2.0, {"p0": 3}, {"p0": None}) == 1.0  # nothing committed yet: behind
    assert s.note(3.0, {"p0": 3}, {"p0": 3}) == 3.0


def test_a_backlog_older_than_the_notes_kept_stays_behind() -> None:
    s = StoredUntil(now=0.0, max_notes=3)
    for t in range(1, 10):
        assert s.note(float(t), {"p0": 100 + t}, {"p0": 50}) == 0.0
    assert s.note(10.0, {"p0": 110}, {"p0": 110}) == 10.0
