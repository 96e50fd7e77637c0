"""One round's closed windows tested as one family, with the false discovery rate held.

Every window closed in a round is split into segments: its input and its output
vectors against its reference's (MMD), and, for an app that retrieves context, its
retrieval numbers against the reference's (KS): the best chunk's relevance, the number
of chunks and their mean length, one number per event. Each segment gets a permutation
p-value; when the family is large enough that the Benjamini-Hochberg cut could fall
below the smallest p-value the permutations can give, the segments at that floor are
tested again with a finer grid (:func:`refine_permutations`). The cut then decides
every segment, and drifted ones get an explanation (clusters of what moved, or the
quantiles before and after). Storage of the results and the acks stay with
:class:`processors.drift_monitor.DriftMonitor`.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.settings import Settings
from detectors.base import DetectorError
from detectors.drift import (
    DriftResult,
    DriftScore,
    KSDriftTest,
    MMDDriftTest,
    benjamini_hochberg,
    refine_permutations,
)
from detectors.drift_explain import explain_drift, explain_shift
from processors.drift_windows import Window
from storage.drift import KINDS, RETRIEVAL_KINDS, DriftStore, Reference
from storage.engine import Engine
from storage.rows import DriftRow

__all__ = ["Family", "FamilyTester", "Segment"]

log = logging.getLogger(__name__)

# Runs a CPU/GPU-heavy function off the event loop (the scoring thread in the worker).
Compute = Callable[..., Awaitable[Any]]
CACHED_REFERENCES = 64  # reference vector sets (per kind) kept in memory
# retrieval kind -> what it measures and its unit, for the explanation's sentence
RETRIEVAL_WORDS = {
    "context_relevance": ("best chunk's relevance", "cosine"),
    "chunk_count": ("chunks per event", "chunks"),
    "chunk_length": ("chunk length", "characters"),
}


@dataclass
class Segment:
    """One kind of one window, with its reference's vectors: input or output vectors,
    or one of the RETRIEVAL_KINDS as (n, 1) arrays of numbers."""

    window: Window
    kind: str
    reference: Reference
    ref: np.ndarray
    ref_texts: list[str]
    cur: np.ndarray
    cur_ids: list[str]
    score: DriftScore | None = None


@dataclass
class Family:
    """The decided segments of one round: rows per window, and which drifted."""

    size: int = 0
    drifted: list[str] = field(default_factory=list)  # "app|version/kind"
    rows: dict[int, list[DriftRow]] = field(default_factory=dict)  # by id(window)

    def rows_of(self, window: Window) -> list[DriftRow]:
        return self.rows.get(id(window), [])


class FamilyTester:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: DriftStore,
        test: MMDDriftTest,
        compute: Compute,
        model: str,
        scalar: KSDriftTest | None = None,
    ) -> None:
        """``test`` tests the vectors; ``scalar`` the retrieval numbers (default: KS with
        the configured permutations)."""
        self.settings = settings
        self.engine = engine
        self.store = store
        self.test = test
        self.scalar = scalar or KSDriftTest(permutations=settings.drift_permutations)
        self.compute = compute
        self.model = model
        self._vectors: OrderedDict[tuple[str, str], tuple[np.ndarray, list[str]]] = OrderedDict()

    async def decide(self, windows: list[tuple[Window, Reference]]) -> Family:
        """Test every window against its (complete) reference as one family."""
        segments: list[Segment] = []
        for window, ref in windows:
            segments.extend(await self._segments(window, ref))
        scored: list[Segment] = []
        for segment in segments:
            test = self._test_of(segment)
            try:
                segment.score = await self.compute(test.score, segment.ref, segment.cur)
            except DetectorError as exc:  # e.g. a reference made by another model
                log.error("drift: %s %s not tested: %s", segment.window.key, segment.kind, exc)
                continue
            scored.append(segment)
        q = self.settings.drift_alpha
        needed = refine_permutations(len(scored), q)
        for segment in scored:  # only p-values at the floor can need a finer grid
            assert segment.score is not None
            test = self._test_of(segment)
            floor = 2 / (test.permutations + 1)
            if needed > test.permutations and segment.score.p_value <= floor:
                segment.score = await self.compute(
                    test.score, segment.ref, segment.cur, permutations=needed
                )
        _, cut = benjamini_hochberg([s.score.p_value for s in scored if s.score], q)
        family = Family(size=len(scored))
        fetched: dict[int, dict[str, tuple[str, str]]] = {}
        for segment in scored:
            assert segment.score is not None
            result = DriftResult.decide(segment.score, cut)
            if result.drifted:
                result = result.with_explanation(await self._explain(segment, fetched))
                family.drifted.append(f"{segment.window.key}/{segment.kind}")
                log.warning(
                    "drift: %s %s p=%.4g <= %.4g (distance %.4f, %d vs %d events)",
                    segment.window.key, segment.kind, result.p_value, result.threshold,
                    result.distance, result.n_cur, result.n_ref,
                )  # fmt: skip
            row = self._row(segment, result, len(scored))
            family.rows.setdefault(id(segment.window), []).append(row)
        return family

    def _test_of(self, segment: Segment) -> MMDDriftTest | KSDriftTest:
        return self.scalar if segment.kind in RETRIEVAL_KINDS else self.test

    async def _segments(self, window: Window, ref: Reference) -> list[Segment]:
        ids = [i.event_id for i in window.items]
        vectors = await self.engine.run(
            self.store.event_vectors, window.app, window.prompt_version, ids
        )
        out = []
        for kind in KINDS:
            ref_vectors, ref_texts = await self._reference_vectors(ref.vectors_id, kind)
            cur_ids = [i for i in ids if (i, kind) in vectors]
            if len(ref_vectors) < 2 or len(cur_ids) < 2:
                log.warning("drift: %s %s has %d reference and %d window vectors, not tested",
                            window.key, kind, len(ref_vectors), len(cur_ids))  # fmt: skip
                continue
            cur = np.asarray([vectors[(i, kind)][1] for i in cur_ids], dtype=np.float32)
            out.append(Segment(window, kind, ref, ref_vectors, ref_texts, cur, cur_ids))
        for kind in RETRIEVAL_KINDS:
            segment = await self._retrieval_segment(window, ref, kind)
            if segment is not None:
                out.append(segment)
        return out

    async def _retrieval_segment(self, window: Window, ref: Reference, kind: str) -> Segment | None:
        """The window's numbers of one retrieval kind against the reference's; None where
        the key retrieves nothing (no context on either side: nothing to test, quietly)
        or one side has fewer than 2 (said in the log)."""
        values = [(i.event_id, i.retrieval.value(kind)) for i in window.items if i.retrieval]
        found = [(event_id, v) for event_id, v in values if v is not None]
        ref_values, _ = await self._reference_vectors(ref.vectors_id, kind)
        ref_values = ref_values.reshape(-1, 1) if ref_values.size else np.zeros((0, 1), np.float32)
        if kind == "chunk_count":  # every event has a count: 0 without context
            retrieves = bool(ref_values.any()) or any(v for _, v in found)
        else:
            retrieves = len(ref_values) > 0 or len(found) > 0
        if not retrieves:
            return None
        if len(ref_values) < 2 or len(found) < 2:
            log.info("drift: %s %s has %d reference and %d window values, not tested",
                     window.key, kind, len(ref_values), len(found))  # fmt: skip
            return None
        cur = np.asarray([[v] for _, v in found], dtype=np.float32)
        return Segment(window, kind, ref, ref_values, [], cur, [e for e, _ in found])

    async def _reference_vectors(self, vectors_id: str, kind: str) -> tuple[np.ndarray, list[str]]:
        cache_key = (vectors_id, kind)
        if cache_key in self._vectors:
            self._vectors.move_to_end(cache_key)
            return self._vectors[cache_key]
        found = await self.engine.run(self.store.vectors, vectors_id, kind)
        self._vectors[cache_key] = found
        while len(self._vectors) > CACHED_REFERENCES:
            self._vectors.popitem(last=False)
        return found

    async def _explain(
        self, segment: Segment, fetched: dict[int, dict[str, tuple[str, str]]]
    ) -> dict[str, Any] | None:
        """``fetched``: the window's texts by id(window), read once for both kinds."""
        if segment.kind in RETRIEVAL_KINDS:
            what, unit = RETRIEVAL_WORDS[segment.kind]
            return explain_shift(segment.ref, segment.cur, what, unit)
        try:
            window = segment.window
            texts = fetched.get(id(window))
            if texts is None:
                ids = [i.event_id for i in window.items]
                texts = await self.engine.run(self.store.event_texts, window.app, ids)
                fetched[id(window)] = texts
            index = KINDS.index(segment.kind)
            cur_texts = [texts.get(i, ("", ""))[index] for i in segment.cur_ids]
            return await self.compute(
                explain_drift, segment.ref, segment.cur, segment.ref_texts, cur_texts,
                clusters=self.settings.drift_clusters,
            )  # fmt: skip
        except Exception:  # an explanation must never cost the test result
            log.exception("drift: explaining %s %s failed", segment.window.key, segment.kind)
            return None

    def _row(self, segment: Segment, result: DriftResult, family: int) -> DriftRow:
        window = segment.window
        stamps = [i.ts_ms for i in window.items]
        return DriftRow(
            key=window.key, app=window.app, prompt_version=window.prompt_version,
            kind=segment.kind,
            window_start=datetime.fromtimestamp(min(stamps) / 1000, UTC),
            window_end=datetime.fromtimestamp(max(stamps) / 1000, UTC),
            n_ref=result.n_ref, n_cur=result.n_cur, statistic=result.statistic,
            p_value=result.p_value, threshold=result.threshold, drifted=int(result.drifted),
            distance=result.distance,
            explanation=(
                json.dumps(result.explanation, ensure_ascii=False) if result.explanation else ""
            ),
            method=result.method, version=result.version, alpha=self.settings.drift_alpha,
            family_size=family, permutations=result.permutations, bandwidth=result.bandwidth,
            reference_id=segment.reference.reference_id, embedding_model=self.model,
            kafka_partition=window.partition, first_offset=window.items[0].offset,
            last_offset=window.items[-1].offset, tested_at=datetime.now(UTC),
        )  # fmt: skip
