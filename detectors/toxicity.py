"""Toxicity of the LLM's response: Detoxify when weights are configured, else a small head.

Either model's ``toxicity`` is combined with the condescension rules of
:mod:`detectors.toxicity_rules` (insults aimed at the reader, "stop asking", "did
you even read the manual"), which neither model learns from tweets.

Detoxify weights are several hundred MB and are not shipped, so the default is a
logistic head on the MiniLM embedding the worker computes anyway (trained by
``scripts/train_toxicity_head.py``). Configured Detoxify weights load through
Detoxify's own loader, so any ``.ckpt`` it can read works here, and the batched
scorer returns the same numbers as ``Detoxify.predict``.

Offline, Detoxify's loader still calls ``from_pretrained(<base model>)`` for the base
model named inside the checkpoint (``bert-base-uncased`` for ``original``), so that
name must resolve from the Hugging Face cache (``HF_HOME``; ``hf download
bert-base-uncased config.json`` once is enough). ``LLMPULSE_TOXICITY_CONFIG`` is
Detoxify's ``huggingface_config_path``: a directory with the classifier's
``config.json`` (one label per class) and tokenizer files, e.g. written once with
``d.model.config.save_pretrained(dir); d.tokenizer.save_pretrained(dir)``. On CUDA
the model runs under fp16 autocast: close to the CPU scores, not equal to them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import DetectorError, TextBatch
from detectors.device import resolve_device
from detectors.embeddings import EmbeddingModel
from detectors.heads import LogisticHead
from detectors.tone import TONE_FILE, ToneModel
from detectors.toxicity_rules import rule_score

__all__ = [
    "DetoxifyToxicity",
    "HeadToxicity",
    "Toxicity",
    "combined",
    "load_tone",
    "load_toxicity",
    "with_rules",
]

logger = logging.getLogger(__name__)

CHECKPOINT_SETTING = "LLMPULSE_TOXICITY_CHECKPOINT"
CONFIG_SETTING = "LLMPULSE_TOXICITY_CONFIG"


@dataclass(frozen=True)
class Toxicity:
    # Class name -> probability, names standardised like Detoxify's (``toxicity``,
    # ``severe_toxicity``, ``identity_attack`` ...). The head only gives ``toxicity``.
    scores: dict[str, float]
    model: str


class DetoxifyToxicity:
    """A Detoxify checkpoint scoring ``batch.outputs`` in length-sorted batches.

    Sorting by token length before batching keeps padding short, which is most of
    the cost for a mix of one-line and page-long responses; the attention mask
    makes padding invisible, so scores match ``Detoxify.predict`` on the same texts.
    """

    name = "toxicity"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        huggingface_config_path: str | Path | None = None,
        model_type: str = "original",
        device: str = "auto",
        batch_size: int = 32,
        max_length: int = 512,
        tone: ToneModel | None = None,
    ) -> None:
        self.tone = tone
        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.detoxify = _load_detoxify(checkpoint, huggingface_config_path, model_type, self.device)
        self.model: Any = self.detoxify.model.eval()
        self.tokenizer: Any = self.detoxify.tokenizer
        self.class_names: list[str] = list(self.detoxify.class_names)
        self.model_name = f"detoxify:{Path(checkpoint).name if checkpoint else model_type}"

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, one row per text and one column per ``class_names`` entry."""
        import torch

        texts = list(texts)
        probs = np.zeros((len(texts), len(self.class_names)), dtype=np.float32)
        if not texts:
            return probs
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        keys = list(encoded.keys())
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.device.startswith("cuda")
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                features = self.tokenizer.pad(
                    {k: [encoded[k][i] for i in rows] for k in keys}, return_tensors="pt"
                ).to(self.model.device)
                logits = self.model(**features)[0]
                probs[rows] = torch.sigmoid(logits.float()).cpu().numpy()
        return probs

    def prepare(self, outputs: Sequence[str]) -> None:
        if self.tone is not None:
            self.tone.prepare(outputs)

    def score(self, batch: TextBatch) -> list[Toxicity]:
        probs = self.predict(batch.outputs)
        tones = _tones(self.tone, batch.outputs)
        out = []
        for text, row, tone in zip(batch.outputs, probs, tones, strict=True):
            scores = dict(zip(self.class_names, map(float, row), strict=True))
            if "toxicity" in scores:
                scores["toxicity"] = combined(scores["toxicity"], tone, text)
            if tone is not None:
                scores["rude_tone"] = tone
            out.append(Toxicity(scores, self.model_name))
        return out


class HeadToxicity:
    """The bundled default: a logistic head on the MiniLM embedding of the response."""

    name = "toxicity"

    def __init__(
        self,
        embeddings: EmbeddingModel,
        head_path: str | Path = "toxicity_head.json",
        tone: ToneModel | None = None,
    ) -> None:
        self.embeddings = embeddings
        self.tone = tone
        self.head = LogisticHead.load(head_path)
        if len(self.head.features) != embeddings.dim:
            raise DetectorError(
                f"toxicity head {head_path} expects {len(self.head.features)}-d embeddings but "
                f"the embedding model gives {embeddings.dim}; unset LLMPULSE_EMBEDDING_MODEL "
                f"or set {CHECKPOINT_SETTING} to Detoxify weights"
            )
        trained_on = self.head.meta.get("embedding_model")
        if trained_on and trained_on != embeddings.name:
            logger.warning(
                "toxicity head was trained on %s embeddings, the worker uses %s",
                trained_on,
                embeddings.name,
            )
        self.model_name = f"minilm-head:{Path(head_path).name}"

    def score(self, batch: TextBatch) -> list[Toxicity]:
        vectors = batch.output_vectors
        if vectors is None:
            vectors = self.embeddings.encode(batch.outputs)
        if len(vectors) == 0:
            return []
        # An empty reply says nothing; the head would still map its embedding to ~0.3.
        probs = np.where([not t.strip() for t in batch.outputs], 0.0, self.head.predict(vectors))
        tones = _tones(self.tone, batch.outputs)
        out = []
        for p, tone, text in zip(probs, tones, batch.outputs, strict=True):
            scores = {"toxicity": combined(float(p), tone, text)}
            if tone is not None:
                scores |= {"toxic_language": float(p), "rude_tone": tone}
            out.append(Toxicity(scores, self.model_name))
        return out

    def prepare(self, outputs: Sequence[str]) -> None:
        """Run the tone model (and with it the outputs' embedding pass) before the batch's
        encode, which then finds the outputs' vectors in the cache."""
        if self.tone is not None:
            self.tone.prepare(outputs)


def _tones(tone: ToneModel | None, outputs: Sequence[str]) -> list[float | None]:
    if tone is None:
        return [None] * len(outputs)
    return [float(p) for p in tone.predict(outputs)]


def combined(probability: float, tone: float | None, text: str) -> float:
    """The toxicity score: the language model's probability, the tone model's and the
    rules', by noisy-or: toxic words, a rude tone or a named insult each suffice."""
    if tone is not None:
        probability = 1.0 - (1.0 - probability) * (1.0 - tone)
    return with_rules(probability, text)


def with_rules(probability: float, text: str) -> float:
    """The model's probability combined with the condescension rules by noisy-or: a
    reply that calls the reader names is rude whatever the model saw in its words."""
    return 1.0 - (1.0 - probability) * (1.0 - rule_score(text))


def load_toxicity(
    checkpoint: str | Path | None,
    config_path: str | Path | None,
    device: str,
    embeddings: EmbeddingModel,
) -> DetoxifyToxicity | HeadToxicity:
    """Detoxify when a checkpoint is configured (a broken one is an error), else the head;
    either with the tone model when the embedding model is the one it was trained on."""
    tone = load_tone(embeddings)
    if checkpoint:
        detector = DetoxifyToxicity(checkpoint, config_path, device=device, tone=tone)
        logger.info(
            "toxicity: Detoxify checkpoint %s on %s, classes %s",
            checkpoint,
            detector.device,
            ", ".join(detector.class_names),
        )
        return detector
    if config_path:
        raise DetectorError(
            f"{CONFIG_SETTING} is set but {CHECKPOINT_SETTING} is not; set the checkpoint "
            f"too, or unset {CONFIG_SETTING} to use the bundled head"
        )
    detector = HeadToxicity(embeddings, tone=tone)
    logger.info("toxicity: bundled %s (no %s set)", detector.model_name, CHECKPOINT_SETTING)
    return detector


def load_tone(embeddings: EmbeddingModel) -> ToneModel | None:
    """The bundled tone model, or None (logged) for an embedding model it does not fit."""
    if embeddings.name != "all-MiniLM-L6-v2" or not TONE_FILE.is_file():
        logger.warning(
            "toxicity: no tone model for %s embeddings; rude replies without toxic words are "
            "caught by the rules only", embeddings.name,
        )  # fmt: skip
        return None
    tone = ToneModel(embeddings)
    logger.info("toxicity: tone model %s on the top %d layers", tone.name, tone.top)
    return tone


def _load_detoxify(
    checkpoint: str | Path | None,
    config_path: str | Path | None,
    model_type: str,
    device: str,
) -> Any:
    """``detoxify.Detoxify`` as configured, every failure a DetectorError naming the setting."""
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise DetectorError(
            f"{CHECKPOINT_SETTING}={checkpoint}: no such file; point it at a Detoxify .ckpt "
            "or unset it to use the bundled head"
        )
    if config_path is not None and not (Path(config_path) / "config.json").is_file():
        raise DetectorError(
            f"{CONFIG_SETTING}={config_path}: no config.json there; point it at a directory "
            "with the classifier's config.json and tokenizer files"
        )
    from detoxify import Detoxify
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per model load is noise in worker logs
    try:
        return Detoxify(
            model_type,
            checkpoint=None if checkpoint is None else str(checkpoint),
            device=device,
            huggingface_config_path=None if config_path is None else str(config_path),
        )
    except Exception as exc:
        raise DetectorError(
            f"Detoxify could not load {CHECKPOINT_SETTING}={checkpoint} with "
            f"{CONFIG_SETTING}={config_path}: {type(exc).__name__}: {exc}. Offline, the "
            "checkpoint's base model must be in the Hugging Face cache and the config "
            "directory must hold the classifier's config.json (one label per class) and "
            "tokenizer files"
        ) from exc
