"""The drift monitor's state without I/O: references being built, windows, coverage.

:class:`WindowBook` decides where each ``llm.scored`` summary goes (a reference being
built, the key's open window, or nowhere because it is a duplicate) and when windows
close (by count at once, by age when a round asks). :class:`Coverage` remembers the
last offset per key that a stored window or reference covers, so replayed summaries
are skipped. Both take the time as an argument, so tests drive them with a fake clock;
:mod:`processors.drift_monitor` does the storage calls and the acks around them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.keys import version_key
from storage.drift import Reference

__all__ = ["Ack", "Coverage", "Item", "Placed", "Retrieval", "Window", "WindowBook"]

Ack = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Retrieval:
    """One event's retrieval as its ``llm.scored`` summary tells it: the numbers retrieval
    drift tests (kinds ``context_relevance``, ``chunk_count``, ``chunk_length``)."""

    context_relevance: float | None  # the best chunk's; None without context
    chunks: int  # 0 without context
    chunk_chars: float | None  # mean characters per chunk; None without context

    @classmethod
    def of(cls, summary: dict[str, Any]) -> Retrieval | None:
        """None for a summary written before retrieval drift (no ``chunks``): unknown,
        which is not the same as no context."""
        if summary.get("chunks") is None:
            return None
        relevance, chars = summary.get("context_relevance"), summary.get("chunk_chars")
        return cls(
            None if relevance is None else float(relevance),
            int(summary["chunks"]),
            None if chars is None else float(chars),
        )

    def value(self, kind: str) -> float | None:
        """The number tested for ``kind``; None where the event has none (no context)."""
        if kind == "chunk_count":
            return float(self.chunks)
        if kind == "chunk_length":
            return self.chunk_chars
        if kind == "context_relevance":
            return self.context_relevance
        raise ValueError(f"not a retrieval kind: {kind!r}")


@dataclass(frozen=True)
class Item:
    """One stored event's summary, held unacked until its window or reference is stored."""

    event_id: str
    ts_ms: int
    partition: int
    offset: int
    ack: Ack
    retrieval: Retrieval | None = None


@dataclass
class Window:
    app: str
    prompt_version: str
    partition: int
    opened: float
    items: list[Item] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return version_key(self.app, self.prompt_version)

    def add(self, item: Item) -> bool:
        """False for an event already in the window (a summary produced twice)."""
        if item.event_id in self.ids:
            return False
        self.items.append(item)
        self.ids.add(item.event_id)
        return True


class Placed:
    """Where :meth:`WindowBook.place` put a summary."""

    DUPLICATE = "duplicate"  # already held: ack it now, it adds nothing
    REFERENCE = "reference"  # waits to join the key's reference at the next round
    WINDOW = "window"  # in the key's open window (closed when it reached the size)


class WindowBook:
    """Per app|prompt_version key: the events building its reference, its open window,
    and the windows closed but not yet tested."""

    def __init__(self, window_size: int) -> None:
        self.window_size = window_size
        self.keys: dict[str, tuple[str, str, int]] = {}  # key -> (app, version, partition)
        self.building: dict[str, Window] = {}
        self.windows: dict[str, Window] = {}
        self.closed: list[Window] = []

    def note_key(self, app: str, version: str, partition: int) -> str:
        key = version_key(app, version)
        self.keys[key] = (app, version, partition)
        return key

    def building_of(self, key: str, partition: int, now: float) -> Window:
        if key not in self.building:
            app, version, _ = self.keys[key]
            self.building[key] = Window(app, version, partition, now)
        return self.building[key]

    def place(self, key: str, item: Item, ref: Reference, now: float) -> str:
        """An event of a key (:meth:`note_key`) goes to the key's reference ``ref`` while
        it is short of its target (counting the events already waiting for it), else to
        the key's open window."""
        if not ref.complete:
            building = self.building_of(key, item.partition, now)
            if ref.size + len(building.items) < ref.target:
                return Placed.REFERENCE if building.add(item) else Placed.DUPLICATE
        return self._to_window(key, item, now)

    def _to_window(self, key: str, item: Item, now: float) -> str:
        window = self.windows.get(key)
        if window is None:
            app, version, _ = self.keys[key]
            window = self.windows[key] = Window(app, version, item.partition, now)
        if not window.add(item):
            return Placed.DUPLICATE
        if len(window.items) >= self.window_size:
            self.closed.append(self.windows.pop(key))
        return Placed.WINDOW

    def adopt(self, key: str, ref: Reference, now: float) -> None:
        """``ref`` became the key's reference: when it is unfinished, events not yet
        tested (closed and open windows) become its first events, rather than windows
        with nothing to compare against (after ``--first N`` or a clear)."""
        if ref.complete:
            return
        pending = [w for w in self.closed if w.key == key]
        self.closed = [w for w in self.closed if w.key != key]
        if key in self.windows:
            pending.append(self.windows.pop(key))
        for window in pending:
            self.return_to_reference(window, now)

    def return_to_reference(self, window: Window, now: float) -> None:
        """Move a window's events back to its key's reference being built; the window
        is left empty, so nothing acks them twice."""
        building = self.building_of(window.key, window.partition, now)
        for item in window.items:
            building.add(item)
        window.items = []

    def take_building(self, key: str) -> list[Item]:
        """The events waiting to join the key's reference, removed from the book."""
        window = self.building.pop(key, None)
        return window.items if window is not None else []

    def overflow(self, key: str, items: Iterable[Item], now: float) -> None:
        """Events past the reference's target open the key's first window."""
        for item in items:
            self._to_window(key, item, now)

    def expire(self, now: float, max_age_s: float, min_events: int) -> list[Window]:
        """Close windows older than ``max_age_s``: those with ``min_events`` or more
        join the windows to test; the smaller ones are returned, to be acked untested."""
        small: list[Window] = []
        for key, window in list(self.windows.items()):
            if now - window.opened < max_age_s:
                continue
            del self.windows[key]
            if len(window.items) >= min_events:
                self.closed.append(window)
            else:
                small.append(window)
        return small

    def take_closed(self) -> list[Window]:
        closed, self.closed = self.closed, []
        return closed

    def requeue(self, windows: Iterable[Window]) -> None:
        """Windows whose test failed (not stored, not acked) are tested next round;
        those already done (emptied) are not."""
        self.closed = [w for w in windows if w.items] + self.closed

    def drop_partitions(self, partitions: set[int]) -> set[str]:
        """Forget the keys of partitions this worker lost; returns those keys."""
        gone = {k for k, (_, _, p) in self.keys.items() if p in partitions}
        self.windows = {k: w for k, w in self.windows.items() if k not in gone}
        self.building = {k: w for k, w in self.building.items() if k not in gone}
        self.closed = [w for w in self.closed if w.key not in gone]
        for key in gone:
            self.keys.pop(key, None)
        return gone

    def has_open(self, key: str) -> bool:
        return key in self.windows or key in self.building


class Coverage:
    """Per partition and key, the last offset a stored window or reference covers, and
    when that row was written.

    The offset alone does not tell a replay: the embedded broker keeps topics in memory,
    so after it restarts offsets begin at 0 again. A replayed summary was produced before
    the row covering it was written; a new one after.
    """

    def __init__(self) -> None:
        self._by_partition: dict[int, dict[str, tuple[int, float]]] = {}

    def knows(self, partition: int) -> bool:
        return partition in self._by_partition

    def load(self, partition: int, covered: dict[str, tuple[int, float]]) -> None:
        self._by_partition[partition] = dict(covered)

    def covers(self, partition: int, key: str, offset: int, produced_at: float) -> bool:
        last, written_at = self._by_partition.get(partition, {}).get(key, (-1, 0.0))
        return offset <= last and produced_at <= written_at

    def cover(self, key: str, partition: int, offset: int, written_at: float) -> None:
        """Storage wrote a row covering ``offset``; a partition not loaded yet reads it
        from storage when first needed."""
        covered = self._by_partition.get(partition)
        if covered is not None:
            covered[key] = (offset, written_at)

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self._by_partition.pop(p, None)
