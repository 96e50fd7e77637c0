"""Train the groundedness head on HaluEval-QA and FRANK, and record its held-out scores.

Usage: ``HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_hallucination_head.py``
(``--cache /tmp/hallu_vectors.npz`` keeps embeddings between runs).

Rows where ``is_holdout(dataset, holdout_key(...))`` is true are never fitted on;
C is chosen by grouped cross-validation on the training rows alone. The head file
records held-out AUROC per dataset and pooled, next to the AUROC of the rule
score alone, of answer length alone, and of the same head given the form features
(length, overlap with the question) it is denied, so readers can see how much of
a figure is the datasets' answer format rather than grounding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.base import TextBatch  # noqa: E402
from detectors.embeddings import EmbeddingModel  # noqa: E402
from detectors.hallucination import HallucinationDetector, holdout_key  # noqa: E402
from detectors.hallucination_features import FEATURES, FORM_FEATURES  # noqa: E402
from detectors.heads import MODELS_DIR, LogisticHead, is_holdout  # noqa: E402

DATASETS = ("halueval_qa", "frank_summaries")
DATA_DIR = ROOT.parent / "shared" / "datasets"
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SEED = 1234
BATCH = 64


class CachedEncoder:
    """The embedding model behind a text -> vector cache saved as ``.npz``."""

    def __init__(self, model: EmbeddingModel, path: Path | None) -> None:
        self.model, self.path = model, path
        self.cache: dict[str, np.ndarray] = {}
        if path is not None and path.exists():
            data = np.load(path, allow_pickle=False)
            self.cache = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            self.cache.update(zip(new, self.model.encode(new), strict=True))
        if not texts:
            return np.zeros((0, self.model.dim), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])

    def save(self) -> None:
        if self.path is not None:
            texts = list(self.cache)
            vectors = np.stack([self.cache[t] for t in texts])
            np.savez(self.path, texts=np.array(texts), vectors=vectors)


def load_rows(name: str) -> list[dict]:
    with (DATA_DIR / f"{name}.jsonl").open() as fh:
        return [json.loads(line) for line in fh]


def batch_of(rows: Sequence[dict]) -> TextBatch:
    contexts = [[r["context"]] if r["context"] else None for r in rows]
    return TextBatch.of([r["question"] for r in rows], [r["answer"] for r in rows], contexts)


def featurise(detector: HallucinationDetector, rows: Sequence[dict]) -> np.ndarray:
    """One row per dataset row: FEATURES, then FORM_FEATURES."""
    x = []
    for start in range(0, len(rows), BATCH):
        for alignment in detector.align(batch_of(rows[start : start + BATCH]), with_form=True):
            assert alignment is not None, "every training row has a context and an answer"
            x.append(np.concatenate([alignment.features, alignment.form]))
    return np.vstack(x)


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, s)), 4)


def choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, dict[str, float]]:
    """Grouped 5-fold CV on training rows only; the C with the best mean AUROC."""
    from sklearn.model_selection import GroupKFold

    folds = list(GroupKFold(n_splits=5).split(x, y, groups))
    means = {}
    for c in C_GRID:
        scores = []
        for fit_idx, val_idx in folds:
            head = LogisticHead.fit("cv", FEATURES, x[fit_idx], y[fit_idx], c=c)
            scores.append(auroc(y[val_idx], head.predict(x[val_idx])))
        means[str(c)] = round(float(np.mean(scores)), 4)
    best = max(C_GRID, key=lambda c: means[str(c)])
    return best, means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache (.npz)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "hallucination_head.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    np.random.seed(SEED)

    encoder = CachedEncoder(EmbeddingModel(device="cpu"), args.cache)
    detector = HallucinationDetector(encoder, head_path=None)  # type: ignore[arg-type]
    xs, ys, names, groups, held, lengths = [], [], [], [], [], []
    for name in DATASETS:
        rows = load_rows(name)
        xs.append(featurise(detector, rows))
        ys += [r["label"] == "hallucinated" for r in rows]
        lengths += [len(r["answer"]) for r in rows]
        names += [name] * len(rows)
        keys = [holdout_key(name, r) for r in rows]
        groups += [f"{name}:{k}" for k in keys]
        held += [is_holdout(name, k) for k in keys]
    encoder.save()

    x_all, y = np.vstack(xs), np.asarray(ys, dtype=int)
    x = x_all[:, : len(FEATURES)]
    names_a, groups_a, held_a = np.asarray(names), np.asarray(groups), np.asarray(held)
    train = ~held_a
    c, cv = choose_c(x[train], y[train], groups_a[train])
    head = LogisticHead.fit("hallucination", FEATURES, x[train], y[train], c=c)
    # what the form features would add: the shortcut the shipped head is denied
    with_form = LogisticHead.fit("with_form", FEATURES + FORM_FEATURES, x_all[train], y[train], c=c)
    scores = {
        "head": head.predict(x),
        "head_plus_form_features": with_form.predict(x_all),
        "rule_unsupported_share": x[:, FEATURES.index("unsupported_share")],
        "length_chars": np.asarray(lengths, dtype=float),
    }
    holdout: dict[str, dict[str, float | int]] = {}
    for subset in (*DATASETS, "pooled"):
        mask = held_a & ((names_a == subset) if subset != "pooled" else True)
        holdout[subset] = {"n": int(mask.sum())}
        holdout[subset] |= {k: auroc(y[mask], s[mask]) for k, s in scores.items()}
    head = LogisticHead(
        head.name, head.features, head.mean, head.scale, head.weights, head.bias,
        {
            "target": "P(label == hallucinated) for an answer given its context",
            "trained_on": {n: int((train & (names_a == n)).sum()) for n in DATASETS},
            "split": "detectors.heads.is_holdout(dataset, detectors.hallucination.holdout_key)",
            "embedding_model": encoder.model.name,
            "rule_threshold": detector.threshold,
            "C": c,
            "not_used": {
                "features": list(FORM_FEATURES),
                "why": "HaluEval's right answers are spans and its hallucinations full "
                "sentences; with these a head flags any full-sentence answer",
            },
            "cv_auroc_by_C": cv,
            "holdout_auroc": holdout,
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_hallucination_head.py",
        },
    )  # fmt: skip
    head.save(args.out)
    print(json.dumps({"C": c, "cv": cv, "holdout_auroc": holdout}, indent=1))
    weights = sorted(zip(FEATURES, head.weights, strict=True), key=lambda t: -abs(t[1]))
    print("weights:", ", ".join(f"{f}={w:+.2f}" for f, w in weights))


if __name__ == "__main__":
    main()
