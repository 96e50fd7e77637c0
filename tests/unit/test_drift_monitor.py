"""DriftMonitor around its pure core: the storage calls, the acks and their order.

A fake store keeps rows in lists, a fake clock ages windows, and a fake test returns
a chosen p-value, so each behaviour is checked without ClickHouse or a model: events
are acked only once the rows that cover them are stored, and a failed write leaves
them unacked for the next round.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from core.settings import load_settings
from detectors.drift import DriftScore
from processors.drift_monitor import DriftMonitor, ScoredMessage
from storage.drift import Reference
from storage.rows import DriftRow, ReferenceVectorRow

MODEL = "test-model"
REF, WIN = 10, 10  # reference and window sizes: the smallest the settings allow


class FakeStore:
    """The DriftStore methods the monitor calls, over lists; every event has vectors."""

    def __init__(self) -> None:
        self.saved: list[Reference] = []
        self.vectors_rows: list[ReferenceVectorRow] = []
        self.results: list[DriftRow] = []
        self.fail_results = 0  # how many write_results calls raise first

    def covered_offsets(self, partition: int) -> dict[str, tuple[int, float]]:
        return {}

    def reference(self, app: str, prompt_version: str) -> Reference | None:
        found = [r for r in self.saved if (r.app, r.prompt_version) == (app, prompt_version)]
        return found[-1] if found else None

    def baseline(self, app: str, model: str) -> Reference | None:
        return None

    def references(self) -> list[Reference]:
        latest = {r.key: r for r in self.saved}
        return list(latest.values())

    def save_reference(self, ref: Reference) -> None:
        self.saved.append(ref)

    def event_vectors(
        self, app: str, version: str, ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[datetime, list[float]]]:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        return {(i, k): (at, [float(len(i)), 1.0]) for i in ids for k in ("input", "output")}

    def event_texts(self, app: str, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        return {i: (f"in {i}", f"out {i}") for i in ids}

    def add_vectors(self, rows: Sequence[ReferenceVectorRow], token: str) -> None:
        self.vectors_rows.extend(rows)

    def vectors(self, vectors_id: str, kind: str) -> tuple[np.ndarray, list[str]]:
        rows = [r for r in self.vectors_rows if r.reference_id == vectors_id and r.kind == kind]
        return np.asarray([r.vector for r in rows], dtype=np.float32), [r.text for r in rows]

    def write_results(self, rows: Sequence[DriftRow], token: str) -> None:
        if self.fail_results:
            self.fail_results -= 1
            raise ConnectionError("storage down")
        self.results.extend(rows)


class FakeEngine:
    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


class FakeTest:
    permutations = 100

    def __init__(self, p_value: float) -> None:
        self.p_value = p_value

    def score(self, ref: np.ndarray, cur: np.ndarray, permutations: int = 100) -> DriftScore:
        return DriftScore(0.5, self.p_value, 0.1, 1.0, permutations, len(ref), len(cur), 0.0)


async def compute(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def monitor(store: FakeStore, clock: Clock, p_value: float = 0.5) -> DriftMonitor:
    settings = load_settings(
        {}, drift_reference_size=REF, drift_window_size=WIN, drift_window_s=60.0,
        drift_min_window=2, drift_new_version="first",
    )  # fmt: skip
    m = DriftMonitor(settings, FakeEngine(), MODEL, compute, clock=clock,  # type: ignore[arg-type]
                     store=store, test=FakeTest(p_value))  # type: ignore[arg-type]  # fmt: skip
    m.family._explain = _no_explanation  # type: ignore[method-assign]
    return m


async def _no_explanation(segment: Any, fetched: Any) -> None:
    return None


class Acks:
    def __init__(self) -> None:
        self.offsets: list[int] = []

    def messages(self, offsets: range, version: str = "v1") -> list[ScoredMessage]:
        def ack_of(offset: int) -> Callable[[], Any]:
            async def ack() -> None:
                self.offsets.append(offset)

            return ack

        def value(n: int) -> bytes:
            body = {"app": "shop", "prompt_version": version, "event_id": f"e{n}", "ts": 1_000 * n}
            return json.dumps(body).encode()

        return [ScoredMessage(0, n, value(n), ack_of(n), timestamp=float(n)) for n in offsets]


def test_reference_events_are_acked_only_in_the_round_that_stores_them() -> None:
    store, clock, acks = FakeStore(), Clock(), Acks()
    m = monitor(store, clock)

    async def go() -> None:
        await m.add(acks.messages(range(REF)))
        assert acks.offsets == []  # held until the reference rows are stored
        report = await m.run_round()
        assert report.references_grown == REF

    asyncio.run(go())
    assert acks.offsets == list(range(REF))
    assert {r.event_id for r in store.vectors_rows} == {f"e{n}" for n in range(REF)}
    assert store.saved[-1].complete and store.saved[-1].size == REF


def test_a_full_window_is_tested_once_and_its_row_names_its_offsets() -> None:
    store, clock, acks = FakeStore(), Clock(), Acks()
    m = monitor(store, clock, p_value=0.001)

    async def go() -> None:
        await m.add(acks.messages(range(REF)))
        await m.run_round()
        await m.add(acks.messages(range(REF, REF + WIN)))  # closed by count
        report = await m.run_round()
        assert report.windows_tested == 1 and report.segments == 2
        assert report.drifted == ["shop|v1/input", "shop|v1/output"]

    asyncio.run(go())
    assert acks.offsets == list(range(REF + WIN))
    assert [(r.kind, r.first_offset, r.last_offset, r.n_cur) for r in store.results] == [
        ("input", 10, 19, 10), ("output", 10, 19, 10),
    ]  # fmt: skip
    assert all(r.drifted == 1 and r.family_size == 2 for r in store.results)


def test_a_window_whose_results_fail_to_store_stays_unacked_and_is_tested_next_round() -> None:
    store, clock, acks = FakeStore(), Clock(), Acks()
    m = monitor(store, clock)

    async def go() -> None:
        await m.add(acks.messages(range(REF)))
        await m.run_round()
        await m.add(acks.messages(range(REF, REF + WIN)))
        store.fail_results = 1
        with pytest.raises(ConnectionError):
            await m.run_round()
        assert acks.offsets == list(range(REF))
        report = await m.run_round()
        assert report.windows_tested == 1

    asyncio.run(go())
    assert acks.offsets == list(range(REF + WIN))
    assert len(store.results) == 2  # one window, both kinds, written once


def test_an_old_window_too_small_to_test_is_acked_untested_when_the_clock_passes() -> None:
    store, clock, acks = FakeStore(), Clock(), Acks()
    m = monitor(store, clock)

    async def go() -> None:
        await m.add(acks.messages(range(REF)))
        await m.run_round()
        clock.now = 10.0
        await m.add(acks.messages(range(REF, REF + 1)))  # one event, min_window is 2
        assert (await m.run_round()).skipped_small == 0
        clock.now = 70.0
        assert (await m.run_round()).skipped_small == 1

    asyncio.run(go())
    assert acks.offsets == list(range(REF + 1)) and store.results == []


def test_a_replayed_summary_already_in_a_stored_window_is_acked_and_skipped() -> None:
    store, clock, acks = FakeStore(), Clock(), Acks()
    m = monitor(store, clock)

    async def go() -> None:
        await m.add(acks.messages(range(REF)))
        await m.run_round()
        await m.add(acks.messages(range(8, REF)))  # redelivered after the reference was stored
        assert acks.offsets == [*range(REF), 8, 9]
        report = await m.run_round()
        assert report.references_grown == 0 and report.windows_tested == 0
        assert m.book.windows == {}

    asyncio.run(go())
    assert len(store.vectors_rows) == 2 * REF  # each event's two kinds, stored once


def test_an_unreadable_summary_is_acked_and_changes_nothing() -> None:
    store, clock, acks = FakeStore(), Clock(), Acks()
    m = monitor(store, clock)
    bad = ScoredMessage(0, 9, b"not json", acks.messages(range(9, 10))[0].ack)
    asyncio.run(m.add([bad]))
    assert acks.offsets == [9] and m.book.keys == {}
