"""Prompt-injection and jailbreak score for each input, with the rule signals behind it.

Rules (:mod:`detectors.injection_rules`) find the structures attacks share: an
override verb aimed at earlier instructions, a persona declared free of rules, a
request for the hidden prompt, an encoded payload, a ban on refusing. Keyword lists
alone confuse "Write rules for a board game" or "act as a travel guide" with
attacks, so each pattern needs the override or rule-removal part, not just the
topic word.

The score is a logistic head (``scripts/train_injection_head.py``) over the MiniLM
input embedding the worker already computed, the rule features and a bounded log
length. Without embeddings it is the strongest rule weight, so the detector still
works; with ``classifier_path`` a local Hugging Face sequence classifier replaces
the head and the rules only explain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detectors.base import DetectorError, TextBatch
from detectors.embeddings import EmbeddingModel
from detectors.heads import LogisticHead
from detectors.injection_rules import (
    FIRES_AT,
    SIGNALS,
    feature_names,
    length_feature,
    rule_features,
)

__all__ = ["Injection", "InjectionDetector"]

_ATTACK_LABEL = re.compile(r"inject|jailbreak|attack|unsafe|malicious")


@dataclass(frozen=True)
class Injection:
    # probability that the input is an injection or jailbreak attempt; None when the
    # model did not run (load shedding), while the rule signals always do
    score: float | None
    signals: list[str]  # rule signals that fired, in SIGNALS order


class InjectionDetector:
    """Scores ``batch.inputs``: head over [embedding, rules, length], rules or a classifier."""

    name = "injection"

    def __init__(
        self,
        embeddings: EmbeddingModel | None = None,
        head_path: str | Path = "injection_head.json",
        classifier_path: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        self.embeddings = embeddings
        self.head: LogisticHead | None = None
        self.classifier: _Classifier | None = None
        if classifier_path is not None:
            self.classifier = _Classifier(Path(classifier_path), device, batch_size)
            self.method = f"classifier:{Path(classifier_path).name}"
        elif embeddings is not None:
            self.head = LogisticHead.load(head_path)
            expected = feature_names(embeddings.dim)
            if self.head.features != expected:
                raise DetectorError(
                    f"injection head {head_path} was trained on {len(self.head.features)} "
                    f"features, but embeddings {embeddings.name} give {len(expected)}; retrain "
                    "with scripts/train_injection_head.py or use the default embedding model"
                )
            self.method = "head"
        else:
            self.method = "rules"

    def score(self, batch: TextBatch) -> list[Injection]:
        texts = list(batch.inputs)
        if not texts:
            return []
        rules = rule_features(texts)
        if self.classifier is not None:
            scores = self.classifier.predict(texts)
        elif self.head is not None and self.embeddings is not None:
            vectors = batch.input_vectors
            if vectors is None:
                vectors = self.embeddings.encode(texts)
            x = np.hstack([np.asarray(vectors, dtype=np.float64), rules, length_feature(texts)])
            scores = self.head.predict(x)
        else:
            scores = rules.max(axis=1)
        return [Injection(float(s), _fired(row)) for s, row in zip(scores, rules, strict=True)]

    def signals(self, texts: Sequence[str]) -> list[Injection]:
        """The rule signals alone, score None: the cheap path for events the models skip."""
        return [Injection(None, _fired(row)) for row in rule_features(list(texts))] if texts else []


def _fired(row: np.ndarray) -> list[str]:
    return [n for n, v in zip(SIGNALS, row, strict=True) if v >= FIRES_AT]


class _Classifier:
    """A local Hugging Face sequence classifier; its attack-class probability is the score."""

    def __init__(self, path: Path, device: str, batch_size: int) -> None:
        if not (path / "config.json").exists():
            raise DetectorError(
                f"no Hugging Face model in {path}; set LLMPULSE_INJECTION_CLASSIFIER to a "
                "directory made by save_pretrained() (model and tokenizer)"
            )
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from detectors.device import resolve_device

        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(path), local_files_only=True
        ).to(self.device)
        self.model.eval()
        self.max_length = min(512, int(getattr(self.tokenizer, "model_max_length", 512)))
        labels = {i: str(v).lower() for i, v in self.model.config.id2label.items()}
        attack = [i for i, v in labels.items() if _ATTACK_LABEL.search(v)]
        self.positive = attack[0] if attack else len(labels) - 1

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out: list[np.ndarray] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + self.batch_size]),
                    padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)  # fmt: skip
                logits = self.model(**enc).logits.float()
                if logits.shape[-1] == 1:
                    probs = torch.sigmoid(logits[:, 0])
                else:
                    probs = torch.softmax(logits, dim=-1)[:, self.positive]
                out.append(probs.cpu().numpy())
        return np.concatenate(out).astype(np.float64)
