"""The drift monitor's pure core: where each event goes, when windows close, what a
replay skips. Times are plain numbers (a fake clock); nothing here reads storage."""

from __future__ import annotations

from processors.drift_windows import Coverage, Item, Placed, Window, WindowBook
from storage.drift import Reference


async def _noop() -> None:
    return None


def item(n: int, partition: int = 0, event_id: str | None = None) -> Item:
    return Item(event_id or f"e{n}", 1_000 * n, partition, n, _noop)


def reference(target: int = 3, size: int = 0, complete: bool = False) -> Reference:
    return Reference("shop", "v1", "r1", "r1", "first", "", target, size, complete, True, "m")


def book_with_key(window_size: int = 4) -> tuple[WindowBook, str]:
    book = WindowBook(window_size)
    return book, book.note_key("shop", "v1", 0)


def test_events_fill_an_unfinished_reference_up_to_its_target_then_open_a_window() -> None:
    book, key = book_with_key()
    ref = reference(target=3, size=1)
    assert [book.place(key, item(n), ref, now=0.0) for n in range(4)] == [
        Placed.REFERENCE, Placed.REFERENCE, Placed.WINDOW, Placed.WINDOW,
    ]  # fmt: skip
    assert [i.offset for i in book.building[key].items] == [0, 1]
    assert [i.offset for i in book.windows[key].items] == [2, 3]


def test_a_window_closes_as_soon_as_it_holds_window_size_events() -> None:
    book, key = book_with_key(window_size=3)
    ref = reference(complete=True, size=3)
    for n in range(4):
        book.place(key, item(n), ref, now=0.0)
    assert [[i.offset for i in w.items] for w in book.closed] == [[0, 1, 2]]
    assert [i.offset for i in book.windows[key].items] == [3]


def test_a_summary_produced_twice_is_a_duplicate_in_a_window_and_in_a_reference() -> None:
    book, key = book_with_key()
    assert book.place(key, item(1), reference(complete=True, size=3), 0.0) == Placed.WINDOW
    assert book.place(key, item(2, event_id="e1"), reference(complete=True, size=3), 0.0) == (
        Placed.DUPLICATE
    )
    book2, key2 = book_with_key()
    assert book2.place(key2, item(1), reference(), 0.0) == Placed.REFERENCE
    assert book2.place(key2, item(2, event_id="e1"), reference(), 0.0) == Placed.DUPLICATE


def test_windows_expire_by_the_clock_and_small_ones_are_handed_back_untested() -> None:
    book = WindowBook(window_size=100)
    full = book.note_key("shop", "v1", 0)
    thin = book.note_key("shop", "v2", 1)
    done = reference(complete=True, size=3)
    for n in range(5):
        book.place(full, item(n), done, now=10.0)
    book.place(thin, item(9, partition=1), done, now=10.0)
    assert book.expire(now=69.0, max_age_s=60.0, min_events=3) == []  # not old enough
    small = book.expire(now=70.0, max_age_s=60.0, min_events=3)
    assert [w.key for w in small] == [thin]
    assert [w.key for w in book.take_closed()] == [full]
    assert book.windows == {} and book.closed == []


def test_a_window_opened_later_is_aged_from_its_own_first_event() -> None:
    book, key = book_with_key(window_size=100)
    book.place(key, item(0), reference(complete=True, size=3), now=50.0)
    assert book.expire(now=100.0, max_age_s=60.0, min_events=1) == []
    assert book.windows[key].opened == 50.0


def test_an_unfinished_reference_adopts_the_untested_windows_as_its_first_events() -> None:
    book, key = book_with_key(window_size=2)
    done = reference(complete=True, size=3)
    for n in range(3):  # one closed window [0, 1], one open [2]
        book.place(key, item(n), done, now=0.0)
    book.adopt(key, reference(target=10), now=5.0)
    assert book.closed == [] and key not in book.windows
    assert [i.offset for i in book.building[key].items] == [0, 1, 2]


def test_a_complete_reference_leaves_the_windows_alone() -> None:
    book, key = book_with_key(window_size=2)
    done = reference(complete=True, size=3)
    book.place(key, item(0), done, now=0.0)
    book.adopt(key, done, now=1.0)
    assert [i.offset for i in book.windows[key].items] == [0]


def test_events_past_a_reference_target_open_the_first_window() -> None:
    book, key = book_with_key(window_size=2)
    ref = reference(target=2)
    for n in range(2):
        book.place(key, item(n), ref, now=0.0)
    waiting = book.take_building(key)
    book.overflow(key, [*waiting[1:], item(5), item(6)], now=3.0)
    assert [[i.offset for i in w.items] for w in book.closed] == [[1, 5]]
    assert [i.offset for i in book.windows[key].items] == [6]
    assert key not in book.building


def test_a_window_returned_to_its_reference_is_emptied_so_nothing_acks_it_twice() -> None:
    book, key = book_with_key()
    window = Window("shop", "v1", 0, 0.0)
    window.add(item(1))
    book.return_to_reference(window, now=0.0)
    assert window.items == []
    assert [i.offset for i in book.building[key].items] == [1]


def test_failed_windows_are_requeued_ahead_of_new_ones_except_those_already_done() -> None:
    book, key = book_with_key(window_size=1)
    done = reference(complete=True, size=3)
    book.place(key, item(0), done, 0.0)
    book.place(key, item(1), done, 0.0)
    first, second = book.take_closed()
    second.items = []  # stored and acked before the failure
    book.place(key, item(2), done, 0.0)
    book.requeue([first, second])
    assert [[i.offset for i in w.items] for w in book.closed] == [[0], [2]]


def test_losing_a_partition_forgets_only_its_keys() -> None:
    book = WindowBook(window_size=10)
    kept = book.note_key("shop", "v1", 0)
    lost = book.note_key("shop", "v2", 1)
    done = reference(complete=True, size=3)
    book.place(kept, item(0), done, 0.0)
    book.place(lost, item(1, partition=1), reference(), 0.0)
    assert book.drop_partitions({1}) == {lost}
    assert set(book.keys) == {kept} and book.has_open(kept) and not book.has_open(lost)


def test_a_replay_is_covered_only_if_it_was_produced_before_the_covering_row() -> None:
    c = Coverage()
    c.load(0, {"shop|v1": (10, 100.0)})
    assert c.covers(0, "shop|v1", offset=10, produced_at=99.0)
    assert not c.covers(0, "shop|v1", offset=11, produced_at=99.0)  # past the stored window
    # A restarted in-memory broker numbers from 0 again: new events come after the row.
    assert not c.covers(0, "shop|v1", offset=3, produced_at=101.0)
    assert not c.covers(0, "shop|v2", offset=0, produced_at=0.0)


def test_coverage_grows_only_for_partitions_already_read_from_storage() -> None:
    c = Coverage()
    c.cover("shop|v1", 0, offset=5, written_at=50.0)
    assert not c.knows(0)  # read from storage on first use, which includes this row
    c.load(0, {})
    c.cover("shop|v1", 0, offset=5, written_at=50.0)
    assert c.covers(0, "shop|v1", 5, 49.0)
    c.drop({0})
    assert not c.knows(0)
