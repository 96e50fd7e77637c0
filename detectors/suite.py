"""Every text detector the worker runs, built once and run in a fixed order.

The worker and ``llmpulse score`` both go through :class:`DetectorSuite`, so an
offline backfill computes exactly what the stream computes. Order matters: the
embedding model runs first and its vectors are handed to the others.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from detectors.base import DetectorError, TextBatch
from detectors.embeddings import EmbeddingModel, EmbeddingsDetector
from detectors.hallucination import Groundedness, HallucinationDetector
from detectors.injection import Injection, InjectionDetector
from detectors.pii import Pii, PiiDetector
from detectors.redaction import Redactor
from detectors.relevance import Relevance, RelevanceScorer, chunk_texts
from detectors.toxicity import Toxicity, load_toxicity

__all__ = ["DetectorSuite", "NoEmbeddings", "SuiteConfig", "TextScores"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SuiteConfig:
    """Model paths and modes; ``None`` paths mean the bundled default."""

    device: str = "auto"
    precision: str = "auto"  # LLMPULSE_PRECISION: auto | fp32 | bf16 | fp16 | int8
    embedding_model: str | None = None
    toxicity_checkpoint: str | None = None
    toxicity_config: str | None = None
    hallucination_nli: str | None = None
    injection_classifier: str | None = None
    redaction: str = "mask"
    redaction_salt: str = field(default="", repr=False)  # a secret
    models: bool = True  # LLMPULSE_MODELS: False loads no model, only the cheap detectors run


@dataclass(frozen=True)
class TextScores:
    """One event's text scores. The model-based ones (toxicity, hallucination, the
    injection score, the vectors) are None where load shedding skipped the models."""

    toxicity: Toxicity | None
    hallucination: Groundedness | None
    pii: Pii
    injection: Injection
    input_vector: np.ndarray | None
    output_vector: np.ndarray | None
    relevance: Relevance | None = None  # cosines of the same vectors, and the chunks' shape

    @property
    def modelled(self) -> bool:
        return self.input_vector is not None


class NoEmbeddings:
    """Stands in for the embedding model when the models are off (``SuiteConfig.models``):
    nothing is loaded, nothing runs on a device, and asking for a vector says why not."""

    name = ""
    device = "cpu"
    precision = "off"
    dim = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise DetectorError("the models are off (LLMPULSE_MODELS=off): no embedding model loaded")


class DetectorSuite:
    """Loads every model once; ``score`` runs one batched pass per model.

    With ``config.models`` False no model is loaded: only the cheap detectors (PII,
    injection rule signals) exist, and callers must pass ``chosen`` all False."""

    def __init__(self, config: SuiteConfig | None = None) -> None:
        self.config = config or SuiteConfig()
        c = self.config
        self.pii = PiiDetector()
        self.redactor = Redactor(c.redaction, salt=c.redaction_salt)
        self.seconds: dict[str, float] = defaultdict(float)  # cumulative, per detector
        if not c.models:
            self.embeddings: EmbeddingModel | NoEmbeddings = NoEmbeddings()
            self.injection = InjectionDetector(None)  # its rule signals; no model behind them
            log.info("detectors ready: models off, cheap detectors only; redaction=%s",
                     c.redaction)  # fmt: skip
            return
        self.embeddings = EmbeddingModel(c.embedding_model, device=c.device, precision=c.precision)
        self.embedder = EmbeddingsDetector(self.embeddings)
        self.toxicity = load_toxicity(
            c.toxicity_checkpoint, c.toxicity_config, c.device, self.embeddings
        )
        self.hallucination = HallucinationDetector(
            self.embeddings, nli_path=c.hallucination_nli, device=c.device
        )
        self.injection = InjectionDetector(
            self.embeddings, classifier_path=c.injection_classifier, device=c.device
        )
        self.relevance = RelevanceScorer(self.embeddings)
        log.info(
            "detectors ready on %s: embeddings=%s toxicity=%s redaction=%s",
            self.embeddings.device, self.embeddings.name, self.toxicity_model, c.redaction,
        )  # fmt: skip

    @property
    def embedding_model(self) -> str:
        return self.embeddings.name

    @property
    def toxicity_model(self) -> str:
        return self.toxicity.model_name

    def _timed(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[name] += time.perf_counter() - started

    def score(self, batch: TextBatch, chosen: Sequence[bool] | None = None) -> list[TextScores]:
        """Every detector over ``batch``; with ``chosen``, the models only over the chosen
        events and the cheap detectors (PII, injection rule signals) over the others."""
        if chosen is None or all(chosen):
            return self._score(batch)
        picked = [i for i, c in enumerate(chosen) if c]
        others = [i for i, c in enumerate(chosen) if not c]
        full = iter(self._score(batch.subset(picked)) if picked else [])
        rest = batch.subset(others)
        pii = iter(self._timed("pii", self.pii.score, rest))
        signals = iter(self._timed("injection", self.injection.signals, rest.inputs))
        return [
            next(full) if c else TextScores(None, None, next(pii), next(signals), None, None)
            for c in chosen
        ]

    def _score(self, batch: TextBatch) -> list[TextScores]:
        if not len(batch):
            return []
        # One model pass per text: the outputs go through the tone model's pass (which
        # also gives their vectors), then one encode for the rest (inputs, the
        # hallucination check's sentences and chunk sentences, and the whole chunks
        # relevance reads); every detector reads the cache.
        self._timed("embeddings", self.toxicity.prepare, batch.outputs)
        # split once, for the encode and the check
        claims = self._timed("hallucination", self.hallucination.parse, batch)
        also = [*self.hallucination.texts(claims), *chunk_texts(batch)]
        batch = self._timed("embeddings", self.embedder.embed, batch, also)
        toxicity = self._timed("toxicity", self.toxicity.score, batch)
        grounded = self._timed("hallucination", self.hallucination.score, batch, claims)
        pii = self._timed("pii", self.pii.score, batch)
        injection = self._timed("injection", self.injection.score, batch)
        relevance = self._timed("relevance", self.relevance.score, batch)
        assert batch.input_vectors is not None and batch.output_vectors is not None
        return [
            TextScores(*parts)
            for parts in zip(
                toxicity, grounded, pii, injection, batch.input_vectors, batch.output_vectors,
                relevance, strict=True,
            )
        ]  # fmt: skip
