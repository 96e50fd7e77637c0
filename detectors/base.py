"""One protocol for every text scorer, and the batch they all read.

A worker micro-batch becomes one :class:`TextBatch`. The embedding model runs
first and attaches its vectors, so drift, hallucination and the learned heads
reuse them instead of encoding the same text again. ``score`` returns one typed
result per event, in order; thresholds and decisions live elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np

from core.errors import LlmpulseError

__all__ = ["Detector", "DetectorError", "TextBatch"]

R_co = TypeVar("R_co", covariant=True)


class DetectorError(LlmpulseError, RuntimeError):
    """A detector cannot be built as configured; the message says what to change."""


@dataclass(frozen=True)
class TextBatch:
    inputs: Sequence[str]
    outputs: Sequence[str]
    contexts: Sequence[Sequence[str] | None]
    # L2-normalised sentence embeddings, one row per event, set by the embedding model.
    input_vectors: np.ndarray | None = None
    output_vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not len(self.inputs) == len(self.outputs) == len(self.contexts):
            raise ValueError("inputs, outputs and contexts must have one entry per event")

    def __len__(self) -> int:
        return len(self.inputs)

    @classmethod
    def of(
        cls,
        inputs: Sequence[str],
        outputs: Sequence[str] | None = None,
        contexts: Sequence[Sequence[str] | None] | None = None,
    ) -> TextBatch:
        n = len(inputs)
        return cls(inputs, outputs if outputs is not None else [""] * n, contexts or [None] * n)

    def subset(self, rows: Sequence[int]) -> TextBatch:
        """These rows only, in this order (vectors too, when the batch has them)."""
        index = list(rows)
        return TextBatch(
            [self.inputs[i] for i in index],
            [self.outputs[i] for i in index],
            [self.contexts[i] for i in index],
            None if self.input_vectors is None else self.input_vectors[index],
            None if self.output_vectors is None else self.output_vectors[index],
        )

    def with_vectors(self, inputs: np.ndarray, outputs: np.ndarray) -> TextBatch:
        return replace(self, input_vectors=inputs, output_vectors=outputs)


class Detector(Protocol[R_co]):
    """Scores a whole batch in one pass per model; owns its device and reference stats."""

    name: str

    def score(self, batch: TextBatch) -> list[R_co]: ...
