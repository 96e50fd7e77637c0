"""Relevance: cosines of the question with the answer and with each chunk, from the
vectors the suite already computed, and the shape of the retrieval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from detectors.base import TextBatch
from detectors.embeddings import EmbeddingModel
from detectors.relevance import Relevance, RelevanceScorer, chunk_texts
from detectors.suite import DetectorSuite, SuiteConfig


class Table:
    """A fake encoder: fixed unit vectors by text; counts what it was asked."""

    def __init__(self, vectors: dict[str, Sequence[float]]) -> None:
        self.vectors = {
            k: np.asarray(v, np.float32) / np.linalg.norm(v) for k, v in vectors.items()
        }
        self.asked: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.asked += texts
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 2))


def embedded(table: Table, batch: TextBatch) -> TextBatch:
    return batch.with_vectors(table.encode(batch.inputs), table.encode(batch.outputs))


def test_the_best_and_the_mean_chunk_cosine_and_the_answer_cosine() -> None:
    table = Table({"q": [1, 0], "a": [0.6, 0.8], "on topic": [1, 0], "off": [0, 1]})
    batch = embedded(table, TextBatch.of(["q"], ["a"], [["on topic", "off"]]))
    (r,) = RelevanceScorer(table).score(batch)
    assert r == Relevance(answer=0.6, context_max=1.0, context_mean=0.5, chunks=2,
                          chunk_chars=(8 + 3) / 2)  # fmt: skip


def test_without_context_only_the_answer_is_scored_and_no_chunk_is_counted() -> None:
    table = Table({"q": [1, 0], "a": [1, 0]})
    (r,) = RelevanceScorer(table).score(embedded(table, TextBatch.of(["q"], ["a"], [None])))
    assert r == Relevance(answer=1.0, context_max=None, context_mean=None, chunks=0,
                          chunk_chars=None)  # fmt: skip


def test_blank_chunks_retrieved_nothing_and_are_neither_scored_nor_counted() -> None:
    table = Table({"q": [1, 0], "a": [1, 0], "c": [0, 1]})
    batch = embedded(table, TextBatch.of(["q"], ["a"], [["", "  ", "c"]]))
    (r,) = RelevanceScorer(table).score(batch)
    assert (r.chunks, r.chunk_chars, r.context_max, r.context_mean) == (1, 1.0, 0.0, 0.0)
    assert chunk_texts(batch) == ["c"]


def test_a_blank_question_or_answer_has_no_relevance_but_keeps_its_chunk_counts() -> None:
    table = Table({"": [1, 1], " ": [1, 1], "q": [1, 0], "a": [0, 1], "c": [1, 0]})
    batch = embedded(table, TextBatch.of(["", "q"], ["a", " "], [["c"], ["c"]]))
    blank_question, blank_answer = RelevanceScorer(table).score(batch)
    assert blank_question == Relevance(None, None, None, 1, 1.0)
    assert (blank_answer.answer, blank_answer.context_max) == (None, 1.0)


def test_cosines_are_kept_to_four_decimals() -> None:
    table = Table({"q": [1, 0], "a": [np.cos(0.3), np.sin(0.3)]})
    (r,) = RelevanceScorer(table).score(embedded(table, TextBatch.of(["q"], ["a"])))
    assert r.answer == round(float(np.cos(0.3)), 4) == 0.9553


def test_the_chunks_of_a_batch_are_read_in_one_call() -> None:
    table = Table({"q": [1, 0], "a": [1, 0], "x": [1, 0], "y": [0, 1]})
    batch = embedded(table, TextBatch.of(["q", "q", "q"], ["a"] * 3, [["x"], None, ["y", "x"]]))
    table.asked = []
    out = RelevanceScorer(table).score(batch)
    assert table.asked == ["x", "y", "x"]
    assert [r.context_max for r in out] == [1.0, None, 1.0]
    assert [r.context_mean for r in out] == [1.0, None, 0.5]


def test_vectors_must_be_on_the_batch() -> None:
    with pytest.raises(ValueError, match="embed the batch first"):
        RelevanceScorer(Table({})).score(TextBatch.of(["q"], ["a"]))


@pytest.fixture(scope="module")
def minilm() -> EmbeddingModel:
    return EmbeddingModel(device="cpu", precision="fp32")


def test_with_minilm_the_chunk_that_answers_outscores_an_unrelated_one(
    minilm: EmbeddingModel,
) -> None:
    question = "How long do refunds take to reach my card?"
    relevant = "Refunds are paid back to the original card within 14 days of the return."
    unrelated = "Our office dog, Biscuit, enjoys long walks in the park on Sundays."
    inputs = [question, question]
    outputs = ["Refunds reach your card within 14 days.", "Biscuit loves the park."]
    batch = TextBatch.of(inputs, outputs, [[relevant], [unrelated]])
    vectors = minilm.encode([*inputs, *outputs])
    batch = batch.with_vectors(vectors[:2], vectors[2:])
    good, bad = RelevanceScorer(minilm).score(batch)
    assert good.context_max is not None and bad.context_max is not None
    assert good.context_max > bad.context_max + 0.3
    assert good.answer is not None and bad.answer is not None
    assert good.answer > bad.answer + 0.3


@pytest.fixture(scope="module")
def suite() -> DetectorSuite:
    return DetectorSuite(SuiteConfig(device="cpu", precision="fp32"))


def test_the_suite_adds_whole_chunks_to_its_one_encode_call_and_scores_relevance(
    suite: DetectorSuite,
) -> None:
    model = suite.embeddings
    calls: list[int] = []
    encode = model.model.encode
    model.model.encode = lambda texts, **kw: calls.append(len(texts)) or encode(texts, **kw)
    chunk = "Refunds are paid within 14 days. Shipping costs $5 per order."
    batch = TextBatch.of(
        ["when is my refund paid?", "hello", "hi"],
        ["Your refund arrives within 14 days.", "hi there", "hello"],
        [[chunk], None, [chunk]],
    )
    scores = suite.score(batch, chosen=[True, True, False])
    # one call: the two inputs, the chunk's two sentences (for the hallucination check)
    # and the whole chunk, once for both events; the outputs, the claim sentence among
    # them, went through the tone model's pass
    assert calls == [5]
    grounded, plain, shed = (s.relevance for s in scores)
    assert grounded is not None and grounded.chunks == 1 and grounded.chunk_chars == len(chunk)
    assert grounded.context_max is not None and grounded.context_max == grounded.context_mean
    assert plain is not None and plain.context_max is None and plain.answer is not None
    assert shed is None  # load shedding skipped its models


def test_rows_and_drift_summaries_carry_relevance_and_the_retrieval_shape(
    suite: DetectorSuite,
) -> None:
    import json

    from detectors.cost import PriceTable
    from processors.batch import Record, Scorer
    from processors.shedding import Sampling
    from storage.rows import EVENT_COLUMNS

    base = {"ts": "2026-01-01T00:00:00Z", "app": "a", "model": "gpt-4o",
            "input": "when is my refund paid?", "output": "Within 14 days."}  # fmt: skip
    events = [
        base | {"event_id": "rag", "context": ["Refunds are paid within 14 days.", "Hi."]},
        base | {"event_id": "plain"},
        base | {"event_id": "shed", "context": ["Refunds are paid within 14 days."]},
    ]
    records = [
        Record("llm.events", 0, i, None, json.dumps(e).encode()) for i, e in enumerate(events)
    ]
    batch = Scorer(PriceTable.load(), suite).score(records, Sampling(0.5, (True, True, False), 9.0))
    rag, plain, shed = (dict(zip(EVENT_COLUMNS, r, strict=True)) for r in batch.rows)
    assert rag["answer_relevance"] is not None and rag["context_relevance_max"] is not None
    assert rag["context_relevance_max"] > rag["context_relevance_mean"]  # "Hi." is off topic
    assert plain["answer_relevance"] is not None and plain["context_relevance_max"] is None
    assert (shed["answer_relevance"], shed["context_relevance_max"]) == (None, None)
    summaries = {json.loads(v)["event_id"]: json.loads(v) for _, v in batch.summaries}
    assert set(summaries) == {"rag", "plain"}  # the shed event has no vectors to drift
    assert summaries["rag"]["context_relevance"] == pytest.approx(rag["context_relevance_max"])
    assert (summaries["rag"]["chunks"], summaries["rag"]["chunk_chars"]) == (2, (32 + 3) / 2)
    assert (summaries["plain"]["chunks"], summaries["plain"]["context_relevance"]) == (0, None)
