"""Relevance: how close the answer, and each retrieved chunk, are to the question.

Both are cosines of vectors the suite's one encode call already computes: the
question (the event's input) and the answer (its output) are embedded for drift,
and every whole context chunk joins the same call (deduplicated with the answer
sentences and chunk sentences of the hallucination check, and remembered by the
model's cache), so no text goes through the model twice.

What a cosine of MiniLM vectors measures is topical relatedness: an answer about
the same subject as the question scores high whether or not it is right, and a
chunk that repeats the question's words without answering it can outscore the one
that answers. It is a drift and triage signal (retrieval that suddenly returns
off-topic chunks, answers that wander off), not a correctness score; groundedness
is :mod:`detectors.hallucination`'s job. MiniLM reads the first 256 word pieces of
a text, so a long chunk is judged by its beginning.

The shape of the retrieval (how many chunks, how long) is reported beside the
scores: the drift monitor tests all three, so a chunking change shows up even when
the scores barely move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from detectors.base import TextBatch

__all__ = ["DIGITS", "Relevance", "RelevanceScorer", "chunk_texts", "chunks_of"]

# Cosines are kept to 4 decimals: finer digits differ between CPUs and precisions and
# mean nothing for relatedness.
DIGITS = 4


class Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Relevance:
    """One model-scored event's relevance and the shape of its retrieval."""

    answer: float | None  # cosine(question, answer); None when either is blank
    context_max: float | None  # cosine(question, chunk), best chunk; None: no context
    context_mean: float | None  # ... averaged over the chunks
    chunks: int  # non-blank chunks retrieved (0 without context)
    chunk_chars: float | None  # their mean length in characters; None without context


def chunks_of(context: Sequence[str] | None) -> list[str]:
    """The chunks that carry text; a blank chunk retrieved nothing."""
    return [c for c in context or () if c.strip()]


def chunk_texts(batch: TextBatch) -> list[str]:
    """Every chunk of the batch, for the suite's one encode call."""
    return [c for context in batch.contexts for c in chunks_of(context)]


def _cosine(value: float) -> float:
    return round(min(1.0, max(-1.0, value)), DIGITS)


class RelevanceScorer:
    """Reads the batch's vectors (inputs and outputs on the batch, chunks from the
    model's cache, where the suite's encode left them) and takes cosines."""

    name = "relevance"

    def __init__(self, embeddings: Encoder) -> None:
        self.embeddings = embeddings

    def score(self, batch: TextBatch) -> list[Relevance]:
        if batch.input_vectors is None or batch.output_vectors is None:
            raise ValueError("relevance reads the batch's vectors: embed the batch first")
        chunks = [chunks_of(c) for c in batch.contexts]
        vectors = self.embeddings.encode([c for cs in chunks for c in cs])
        out, start = [], 0
        for i, event_chunks in enumerate(chunks):
            question = batch.inputs[i].strip() != ""
            q = batch.input_vectors[i].astype(np.float64)
            answer = None
            if question and batch.outputs[i].strip():
                answer = _cosine(float(q @ batch.output_vectors[i].astype(np.float64)))
            n = len(event_chunks)
            c_max = c_mean = length = None
            if n:
                length = round(sum(len(c) for c in event_chunks) / n, 1)
                if question:
                    sims = vectors[start : start + n].astype(np.float64) @ q
                    c_max, c_mean = _cosine(float(sims.max())), _cosine(float(sims.mean()))
            start += n
            out.append(Relevance(answer, c_max, c_mean, n, length))
        return out
