"""Small learned heads shipped as JSON: standardise features, then a logistic layer.

Training scripts in ``scripts/`` fit them on ``../shared/datasets`` and write
``detectors/models/*.json``; inference is a dot product in NumPy, no pickle and
no training library at run time. The file records what it was trained on and the
score it reached on held-out data, so a number in a report can be traced back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import DetectorError

__all__ = ["HOLDOUT_SHARE", "MODELS_DIR", "LogisticHead", "is_holdout"]

MODELS_DIR = Path(__file__).resolve().parent / "models"
HOLDOUT_SHARE = 0.3


def is_holdout(dataset: str, key: str) -> bool:
    """Whether a dataset row is kept out of training, so it can measure the head.

    A hash, not a random draw: training scripts and ``bench/quality.py`` agree on
    the split without sharing state. Rows that belong together (a question's
    grounded and hallucinated answer) must pass the same ``key``.
    """
    digest = hashlib.sha256(f"{dataset}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HOLDOUT_SHARE


@dataclass(frozen=True)
class LogisticHead:
    name: str
    features: list[str]  # names of the columns, in order
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if not len(self.mean) == len(self.scale) == len(self.weights) == n:
            raise DetectorError(f"head {self.name!r}: feature, mean, scale, weights differ in size")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row of ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"head {self.name!r} expects {len(self.features)} features per row")
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights)
        return 1.0 / (1.0 + np.exp(-(z + self.bias)))

    @classmethod
    def fit(
        cls,
        name: str,
        features: Sequence[str],
        x: np.ndarray,
        y: np.ndarray,
        c: float = 1.0,
        meta: dict[str, Any] | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> LogisticHead:
        """Fit with scikit-learn (a training-time dependency only)."""
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        # Near-constant columns (some MiniLM dimensions vary by ~1e-8) get weight 0:
        # standardising them would turn float noise, or fp16 rounding on a GPU,
        # into large inputs.
        used = scale >= 1e-6
        scale[~used] = 1.0
        model = LogisticRegression(C=c, max_iter=5000)
        model.fit(((x - mean) / scale)[:, used], y, sample_weight=sample_weight)
        weights = np.zeros(x.shape[1])
        weights[used] = model.coef_[0]
        return cls(
            name, list(features), mean.tolist(), scale.tolist(),
            weights.tolist(), float(model.intercept_[0]), dict(meta or {}),
        )  # fmt: skip

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LogisticHead:
        path = Path(path)
        if not path.is_absolute() and not path.exists():
            path = MODELS_DIR / path
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise DetectorError(f"no model file at {path}") from None
        except (TypeError, ValueError) as exc:
            raise DetectorError(f"{path} is not a llmpulse head file: {exc}") from None
