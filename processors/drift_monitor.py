"""Drift windows per app|prompt_version, fed by ``llm.scored`` and tested in rounds.

State, and how it survives a restart without a state store:

- a **reference** being built (the first N events of a key) is written to
  ``llm_drift_reference_vectors`` every round and its events are acked then;
- an **open window** lives only in memory and its events stay unacked until the
  window's rows are in ``llm_drift``; after a crash, Kafka redelivers them and the
  window is rebuilt the same way (windows close by count; one closed by time may
  be cut differently, never twice);
- events already covered by a stored window or reference (``covered_offsets``) are
  acked and skipped, because a partition's commit point can lag behind a key
  whose window is still open.

Repeated tests: windows do not overlap, each is tested once at level alpha, so
under no drift a key raises a false alarm once per 1/alpha windows on average.
All windows closed in one round (every ``drift_round_s``) form one family and
Benjamini-Hochberg keeps the false discovery rate across its segments at alpha.

Where events go and when windows close is decided in :mod:`processors.drift_windows`,
without I/O; this module reads and writes storage and acks around those decisions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.keys import version_key
from core.retry import Backoff
from core.settings import Settings
from detectors.drift import MMDDriftTest
from processors.drift_family import Compute, FamilyTester
from processors.drift_windows import Ack, Coverage, Item, Placed, Retrieval, Window, WindowBook
from storage.drift import KINDS, RETRIEVAL_KINDS, DriftStore, Reference, new_reference_id, token
from storage.engine import Engine
from storage.rows import ReferenceVectorRow

__all__ = ["DriftMonitor", "RoundReport", "ScoredMessage"]

log = logging.getLogger(__name__)

STORAGE_BACKOFF = Backoff(first_s=0.5, max_s=30.0)  # storage down: wait, never drop


@dataclass(frozen=True)
class ScoredMessage:
    partition: int
    offset: int
    value: bytes
    ack: Ack
    timestamp: float = 0.0  # when the summary was produced (Kafka timestamp, seconds)


@dataclass
class RoundReport:
    references_grown: int = 0
    windows_tested: int = 0
    segments: int = 0
    drifted: list[str] = field(default_factory=list)  # "app|version/kind"
    skipped_small: int = 0


class DriftMonitor:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        embedding_model: str,
        compute: Compute,
        clock: Callable[[], float] = time.monotonic,
        store: DriftStore | None = None,
        test: MMDDriftTest | None = None,
    ) -> None:
        """``clock`` ages windows; ``store`` and ``test`` default to ClickHouse through
        ``engine`` and the MMD test from settings (unit tests pass fakes)."""
        self.settings = settings
        self.engine = engine
        self.store = store or DriftStore(engine.client, engine.database)
        self.model = embedding_model
        self.clock = clock
        self.family = FamilyTester(
            settings, engine, self.store,
            test or MMDDriftTest(alpha=settings.drift_alpha,
                                 permutations=settings.drift_permutations, device=settings.device),
            compute, embedding_model,
        )  # fmt: skip
        self.lock = asyncio.Lock()
        self.book = WindowBook(settings.drift_window_size)
        self.coverage = Coverage()
        self._refs: dict[str, Reference] = {}

    # intake -----------------------------------------------------------------

    async def add(self, messages: Sequence[ScoredMessage]) -> None:
        async with self.lock:
            for message in messages:
                await self._add_retrying(message)

    async def _add_retrying(self, message: ScoredMessage) -> None:
        """Storage may be down (covered offsets, references): wait, never drop a message.

        ``_add`` changes no state before its last storage call, so it is retried whole.
        """
        delays = STORAGE_BACKOFF.delays()
        while True:
            try:
                return await self._add(message)
            except Exception as exc:
                delay = delays()
                log.warning("drift: reading storage for llm.scored %s/%s failed, retrying "
                            "in %.0fs: %s", message.partition, message.offset, delay,
                            exc)  # fmt: skip
                await asyncio.sleep(delay)

    async def _add(self, message: ScoredMessage) -> None:
        try:
            value = json.loads(message.value)
            app, version = str(value["app"]), str(value["prompt_version"])
            item = Item(
                str(value["event_id"]),
                int(value["ts"]),
                message.partition,
                message.offset,
                message.ack,
                Retrieval.of(value),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.error("llm.scored %s/%s unreadable, skipped: %s", message.partition,
                      message.offset, exc)  # fmt: skip
            await message.ack()
            return
        key = self.book.note_key(app, version, message.partition)
        if await self._is_covered(key, message):
            await message.ack()  # already in a stored window or reference
            return
        ref = await self._reference_for(key)
        if self.book.place(key, item, ref, self.clock()) == Placed.DUPLICATE:
            await message.ack()

    async def _is_covered(self, key: str, message: ScoredMessage) -> bool:
        """Replayed, and its window or reference is stored already (see Coverage)?"""
        if not self.coverage.knows(message.partition):
            covered = await self.engine.run(self.store.covered_offsets, message.partition)
            self.coverage.load(message.partition, covered)
        return self.coverage.covers(message.partition, key, message.offset, message.timestamp)

    def _cover(self, key: str, partition: int, offset: int) -> None:
        self.coverage.cover(key, partition, offset, time.time())  # as stamped in storage

    async def _reference_for(self, key: str) -> Reference:
        ref = self._refs.get(key)
        if ref is not None:
            return ref
        app, version, _ = self.book.keys[key]
        ref = await self.engine.run(self.store.reference, app, version)
        if ref is not None and ref.embedding_model != self.model:
            log.warning(
                "drift reference of %s was embedded with %s, the worker uses %s: rebuilding",
                key, ref.embedding_model, self.model,
            )  # fmt: skip
            ref = None
        if ref is None:
            ref = await self._new_reference(app, version)
        self._use(key, ref)
        return ref

    def _use(self, key: str, ref: Reference) -> None:
        """Make ``ref`` the key's reference (an unfinished one takes over untested events)."""
        self._refs[key] = ref
        self.book.adopt(key, ref, self.clock())

    async def _new_reference(self, app: str, version: str) -> Reference:
        s = self.settings
        baseline = None
        if s.drift_new_version == "inherit":
            baseline = await self.engine.run(self.store.baseline, app, self.model)
        if baseline is not None and baseline.prompt_version != version:
            ref = Reference(
                app, version, new_reference_id(app, version), baseline.vectors_id, "inherited",
                f"from {baseline.key} ({baseline.source})", baseline.target, baseline.size,
                True, True, self.model,
            )  # fmt: skip
            log.info("drift: %s compares against %s's reference", ref.key, baseline.key)
        else:
            ref = Reference.from_next_events(
                app, version, s.drift_reference_size, self.model,
                f"first {s.drift_reference_size} events",
            )  # fmt: skip
            log.info("drift: building the reference of %s from its first %d events", ref.key,
                     ref.target)  # fmt: skip
        await self.engine.run(self.store.save_reference, ref)
        return ref

    # outside changes ----------------------------------------------------------

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget state of partitions this worker lost; their new owner replays them."""
        self.coverage.drop(partitions)
        for key in self.book.drop_partitions(partitions):
            self._refs.pop(key, None)

    async def forget_reference(self, app: str, version: str, *, locked: bool = False) -> None:
        """A reference was replaced from outside (CLI): use what storage says now.

        ``locked``: the caller holds :attr:`lock` already.
        """
        if not locked:
            async with self.lock:
                return await self.forget_reference(app, version, locked=True)
        key = version_key(app, version)
        self._refs.pop(key, None)
        if key in self.book.keys and self.book.has_open(key):
            await self._reference_for(key)

    # rounds -----------------------------------------------------------------

    async def run_round(self) -> RoundReport:
        async with self.lock:
            report = RoundReport()
            await self._refresh_references()
            report.references_grown = await self._grow_references()
            report.skipped_small = await self._close_expired()
            closed = self.book.take_closed()
            if closed:
                try:
                    await self._test(closed, report)
                except BaseException:
                    self.book.requeue(closed)  # not stored, not acked: next round
                    raise
            return report

    async def _refresh_references(self) -> None:
        """Pick up references replaced by the CLI or another worker."""
        active = {r.key: r for r in await self.engine.run(self.store.references)}
        for key, ref in list(self._refs.items()):
            now = active.get(key)
            if now is None:  # cleared: the key's next use builds or inherits a new one
                del self._refs[key]
            elif now.reference_id != ref.reference_id:
                if now.embedding_model != self.model:
                    # As at first use: the next use finds the mismatch and rebuilds.
                    del self._refs[key]
                    continue
                self._use(key, now)

    async def _grow_references(self) -> int:
        grown = 0
        for key in list(self.book.building):
            if not self.book.building[key].items:
                continue
            ref = await self._reference_for(key)
            items = self.book.building[key].items
            take = [] if ref.complete else items[: max(0, ref.target - ref.size)]
            if take:
                added = await self._store_reference_rows(ref, take)
                ref = ref.grown(added)
                await self.engine.run(self.store.save_reference, ref)
                self._refs[key] = ref
                grown += added
                if ref.complete:
                    log.info("drift: reference of %s complete (%d events)", key, ref.size)
            self.book.take_building(key)
            for item in take:
                await item.ack()
            if take:
                self._cover(key, take[-1].partition, take[-1].offset)
            self.book.overflow(key, items[len(take) :], self.clock())
        return grown

    async def _store_reference_rows(self, ref: Reference, items: list[Item]) -> int:
        ids = [i.event_id for i in items]
        vectors = await self.engine.run(self.store.event_vectors, ref.app, ref.prompt_version, ids)
        texts = await self.engine.run(self.store.event_texts, ref.app, ids)
        rows = []
        used = 0
        now = datetime.now(UTC)
        for item in items:
            found = [(kind, vectors.get((item.event_id, kind))) for kind in KINDS]
            if any(v is None for _, v in found):
                log.warning("drift: no stored embeddings for %s, left out of the reference",
                            item.event_id)  # fmt: skip
                continue
            used += 1
            text = texts.get(item.event_id, ("", ""))
            stamp_ts = found[0][1][0]  # type: ignore[index]
            for (kind, hit), body in zip(found, text, strict=True):
                ts, vector = hit  # type: ignore[misc]
                rows.append(
                    ReferenceVectorRow(
                        reference_id=ref.reference_id, kind=kind, event_id=item.event_id, ts=ts,
                        text=body, vector=vector, kafka_partition=item.partition,
                        kafka_offset=item.offset, added_at=now,
                    )
                )  # fmt: skip
            for kind, number in _retrieval_values(item.retrieval):
                rows.append(
                    ReferenceVectorRow(
                        reference_id=ref.reference_id, kind=kind, event_id=item.event_id,
                        ts=stamp_ts, text="", vector=[number], kafka_partition=item.partition,
                        kafka_offset=item.offset, added_at=now,
                    )
                )  # fmt: skip
        stamp = token("reference", ref.reference_id, items[0].offset, items[-1].offset,
                      items[0].event_id, items[-1].event_id)  # fmt: skip
        await self.engine.run(self.store.add_vectors, rows, stamp)
        return used

    async def _close_expired(self) -> int:
        s = self.settings
        small = self.book.expire(self.clock(), s.drift_window_s, s.drift_min_window)
        for window in small:
            log.info("drift: window of %s closed with %d events (< %d), not tested",
                     window.key, len(window.items), s.drift_min_window)  # fmt: skip
            for item in window.items:
                await item.ack()
            self._cover(window.key, window.partition, window.items[-1].offset)
        return len(small)

    async def _test(self, closed: list[Window], report: RoundReport) -> None:
        testable: list[tuple[Window, Reference]] = []
        for window in closed:
            ref = await self._reference_for(window.key)
            if not ref.complete:  # replaced while it waited: its events start the new one
                self.book.return_to_reference(window, self.clock())
                continue
            testable.append((window, ref))
        family = await self.family.decide(testable)
        report.drifted.extend(family.drifted)
        for window, _ in testable:
            first, last = window.items[0].offset, window.items[-1].offset
            stamp = token("drift", window.key, window.partition, first, last,
                          window.items[0].event_id, window.items[-1].event_id)  # fmt: skip
            await self.engine.run(self.store.write_results, family.rows_of(window), stamp)
            for item in window.items:
                await item.ack()
            window.items = []  # done: not requeued if a later window fails
            self._cover(window.key, window.partition, last)
            report.windows_tested += 1
        report.segments += family.size


def _retrieval_values(retrieval: Retrieval | None) -> list[tuple[str, float]]:
    """The retrieval numbers an event adds to a reference, per kind (none where unknown,
    and no relevance or length without context)."""
    if retrieval is None:
        return []
    values = ((kind, retrieval.value(kind)) for kind in RETRIEVAL_KINDS)
    return [(kind, v) for kind, v in values if v is not None]
