"""Retrieval drift: the KS permutation test on one number per event, and the drift
monitor testing the best chunk's relevance, the chunk count and the chunk length of each
window in the same family as the vectors.

Samples are drawn as seeded integers (chunk lengths in characters, counts, relevance in
hundredths), so no expected value depends on a CPU's float rounding: the KS statistic is
computed in whole numbers and the permutations come from numpy's seeded generator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.stats import binom, ks_2samp

from core.settings import load_settings
from detectors.base import DetectorError
from detectors.drift import KS_METHOD, KSDriftTest
from processors.drift_monitor import DriftMonitor, ScoredMessage
from processors.drift_windows import Retrieval
from storage.drift import RETRIEVAL_KINDS
from tests.unit.test_drift_monitor import Clock, FakeEngine, FakeStore, FakeTest, compute

REF, WIN = 200, 100


def ints(low: int, high: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=n).astype(np.float32)


# --- the test on one number per event ---------------------------------------------------


def test_the_statistic_is_the_largest_gap_between_the_two_cdfs_ties_included() -> None:
    ref, cur = ints(1, 6, 300, seed=1), ints(2, 7, 120, seed=2)  # chunk counts: many ties
    score = KSDriftTest(permutations=99).score(ref, cur)
    assert score.statistic == pytest.approx(ks_2samp(ref, cur).statistic, abs=1e-12)
    assert (score.n_ref, score.n_cur, score.method, score.bandwidth) == (300, 120, KS_METHOD, 0.0)


def test_a_window_of_short_chunks_drifts_from_a_reference_of_long_ones() -> None:
    long, short = ints(600, 1000, 500, seed=1), ints(150, 400, 200, seed=2)
    score = KSDriftTest(permutations=1000).score(long, short)
    assert score.p_value == 1 / 1001  # no permutation comes near: the smallest p-value
    assert score.statistic == 1.0  # every short chunk is below every long one
    assert score.distance < -200  # the window's median minus the reference's, in characters


def test_a_window_from_the_same_distribution_does_not_drift() -> None:
    score = KSDriftTest(permutations=1000).score(ints(600, 1000, 500, 1), ints(600, 1000, 200, 3))
    assert score.p_value > 0.2


def test_the_same_seed_gives_the_same_p_value_and_more_permutations_a_finer_one() -> None:
    ref, cur = ints(0, 100, 80, seed=4), ints(5, 105, 40, seed=5)
    test = KSDriftTest(permutations=200, seed=7)
    first, again = test.score(ref, cur), test.score(ref, cur)
    assert first.p_value == again.p_value
    assert test.score(ref, cur, permutations=2000).permutations == 2000


def test_under_no_drift_p_values_are_not_too_small() -> None:
    """P(p <= a) <= a: 300 pairs from one distribution, each at the 10 % level, may reject
    no more often than a binomial of 300 draws at 10 % allows (one-sided 0.1 %)."""
    test = KSDriftTest(permutations=199)
    rejected = sum(
        test.score(ints(0, 20, 60, 2 * k), ints(0, 20, 30, 2 * k + 1)).p_value <= 0.1
        for k in range(300)
    )
    assert rejected <= binom.ppf(0.999, 300, 0.1)


def test_stored_one_element_vectors_are_read_as_numbers() -> None:
    column = ints(0, 10, 20, seed=6).reshape(-1, 1)
    assert KSDriftTest(permutations=99).score(column, column[:10]).n_ref == 20


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.array([1.0]), "at least 2 values"),
        (np.array([1.0, np.nan]), "NaN"),
        (np.ones((3, 2)), "one number per event"),
    ],
)
def test_unusable_values_are_a_clear_error(values: np.ndarray, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        KSDriftTest(permutations=99).score(np.arange(5.0), values)


# --- the monitor --------------------------------------------------------------------------


def summary(n: int, version: str, retrieval: dict[str, Any] | None) -> dict[str, Any]:
    body = {"app": "rag", "prompt_version": version, "event_id": f"e{n}", "ts": 1_000 * n}
    return body | (retrieval or {})


def messages(bodies: list[dict[str, Any]], first: int, acked: list[int]) -> list[ScoredMessage]:
    def ack_of(offset: int) -> Callable[[], Any]:
        async def ack() -> None:
            acked.append(offset)

        return ack

    return [
        ScoredMessage(0, first + i, json.dumps(b).encode(), ack_of(first + i), float(first + i))
        for i, b in enumerate(bodies)
    ]


def rag_events(n: int, first: int, lengths: tuple[int, int], seed: int) -> list[dict[str, Any]]:
    """Events retrieving 3 to 5 chunks, one in ten none, the best chunk's relevance 0.40 to
    0.80 and the chunks ``lengths`` characters long (integers, drawn seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        chunks = int(rng.integers(3, 6)) if rng.integers(10) else 0
        chars = float(rng.integers(*lengths))
        relevance = float(rng.integers(40, 81)) / 100
        retrieval = {"chunks": chunks, "chunk_chars": chars if chunks else None,
                     "context_relevance": relevance if chunks else None}  # fmt: skip
        out.append(summary(first + i, "v1", retrieval))
    return out


def run(bodies: list[list[dict[str, Any]]]) -> tuple[FakeStore, list[Any]]:
    """A reference of the first REF summaries, then one round per list that follows."""
    settings = load_settings(
        {}, drift_reference_size=REF, drift_window_size=WIN, drift_window_s=3600.0,
        drift_min_window=2, drift_new_version="first",
    )  # fmt: skip
    store, acked = FakeStore(), []
    m = DriftMonitor(settings, FakeEngine(), "test-model", compute, clock=Clock(),  # type: ignore[arg-type]
                     store=store, test=FakeTest(0.5))  # type: ignore[arg-type]  # fmt: skip
    rounds = []

    async def go() -> None:
        offset = 0
        for batch in bodies:
            await m.add(messages(batch, offset, acked))
            offset += len(batch)
            rounds.append(await m.run_round())

    asyncio.run(go())
    return store, rounds


def by_kind(store: FakeStore) -> dict[str, Any]:
    return {r.kind: r for r in store.results}


def test_shorter_chunks_drift_and_the_row_says_which_kind_and_how() -> None:
    reference = rag_events(REF, 0, (600, 1000), seed=1)
    store, _ = run([reference, rag_events(WIN, REF, (150, 400), seed=2)])
    rows = by_kind(store)
    assert set(rows) == {"input", "output", *RETRIEVAL_KINDS}
    length = rows["chunk_length"]
    assert length.drifted == 1 and length.method == KS_METHOD
    assert length.family_size == 5 and length.p_value <= length.threshold
    explanation = json.loads(length.explanation)
    assert explanation["summary"].startswith("chunk length lower: median ")
    assert explanation["window"]["median"] < 400 <= 600 <= explanation["reference"]["median"]
    # the counts and the relevance were drawn from the same ranges: not drifted
    assert rows["chunk_count"].drifted == 0 and rows["context_relevance"].drifted == 0
    assert rows["chunk_count"].n_cur == WIN  # every event has a count, 0 without context
    assert rows["chunk_length"].n_cur < WIN  # only the events with context have a length


def test_a_window_like_its_reference_does_not_drift() -> None:
    store, rounds = run([rag_events(REF, 0, (600, 1000), 1), rag_events(WIN, REF, (600, 1000), 3)])
    assert [r for r in store.results if r.drifted] == []
    assert rounds[-1].segments == 5


def test_fewer_chunks_drift_as_chunk_count() -> None:
    fewer = [e | {"chunks": 1 if e["chunks"] else 0} for e in rag_events(WIN, REF, (600, 1000), 3)]
    store, _ = run([rag_events(REF, 0, (600, 1000), 1), fewer])
    assert by_kind(store)["chunk_count"].drifted == 1
    assert by_kind(store)["chunk_length"].drifted == 0


def test_the_reference_stores_one_number_per_event_and_retrieval_kind() -> None:
    reference = rag_events(REF, 0, (600, 1000), seed=1)
    store, _ = run([reference])
    counts = [r for r in store.vectors_rows if r.kind == "chunk_count"]
    lengths = [r for r in store.vectors_rows if r.kind == "chunk_length"]
    assert len(counts) == REF and [r.vector for r in counts[:3]] == [
        [float(e["chunks"])] for e in reference[:3]
    ]
    with_context = [e for e in reference if e["chunks"]]
    assert len(lengths) == len(with_context) < REF
    assert all(r.text == "" for r in counts + lengths)


def test_an_app_without_retrieval_tests_its_vectors_only() -> None:
    plain = [summary(n, "v1", {"chunks": 0, "chunk_chars": None, "context_relevance": None})
             for n in range(REF + WIN)]  # fmt: skip
    store, _ = run([plain[:REF], plain[REF:]])
    assert sorted(by_kind(store)) == ["input", "output"]


def test_summaries_from_before_retrieval_drift_add_no_retrieval_values() -> None:
    old = [summary(n, "v1", None) for n in range(REF)]
    store, _ = run([old])
    assert {r.kind for r in store.vectors_rows} == {"input", "output"}
    assert Retrieval.of(old[0]) is None
    assert Retrieval.of({"chunks": 0}) == Retrieval(None, 0, None)  # known: no context


def test_a_drift_alert_quotes_how_a_retrieval_number_moved() -> None:
    from alerting.evaluator import _drift_examples

    store, _ = run([rag_events(REF, 0, (600, 1000), 1), rag_events(WIN, REF, (150, 400), 2)])
    row = by_kind(store)["chunk_length"]
    # the evidence query's columns: window_start, window_end, kind, p_value, threshold,
    # drifted, explanation
    evidence = [(row.window_start, row.window_end, row.kind, row.p_value, row.threshold,
                 row.drifted, row.explanation)]  # fmt: skip
    (example,) = _drift_examples(evidence)
    assert example.startswith("chunk_length: chunk length lower: median ")
    assert " characters (p10-p90 " in example
