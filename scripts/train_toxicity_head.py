"""Train the bundled toxicity head: a logistic layer on all-MiniLM-L6-v2 embeddings.

Trains on the Davidson and ToxiGen-seed rows that ``is_holdout`` keeps for training and
on benign assistant replies (so that support language is not toxic language), picks
the regularisation strength by cross-validation on the training rows alone, and
reports AUROC on the held-out rows, which never influence the model. Reproducible:
the split is a hash, the embeddings are deterministic on CPU and the folds are seeded.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_toxicity_head.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.embeddings import EmbeddingModel  # noqa: E402
from detectors.heads import HOLDOUT_SHARE, MODELS_DIR, LogisticHead, is_holdout  # noqa: E402
from scripts.toxicity_synthetic import synthetic_rows  # noqa: E402
from scripts.train_toxicity_tone import FILES as REPLY_FILES  # noqa: E402
from scripts.train_toxicity_tone import load_replies  # noqa: E402

__all__ = ["main"]

DATASETS = ("toxicity_davidson", "toxicity_toxigen_seeds")
SEED = 1234
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FOLDS = 5
REPLY_WEIGHT = 3.0
DIGITS = 6  # significant digits kept in the JSON; changes scores by ~1e-6


def benign_replies() -> list[dict]:
    rows = [r for r in synthetic_rows(SEED) if int(r["label"]) == 0]  # type: ignore[call-overload]
    return rows + [r for r in load_replies()[0] if not r["label"]]


def load_rows(directory: Path, name: str) -> tuple[list[dict], str]:
    path = directory / f"{name}.jsonl"
    data = path.read_bytes()
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return rows, hashlib.sha256(data).hexdigest()


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 4)


def choose_c(x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    """Best C by stratified K-fold AUROC on the training rows only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    scores = {}
    for c in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        scores[str(c)] = round(float(cross_val_score(model, x, y, cv=folds, scoring="roc_auc")
                                     .mean()), 4)  # fmt: skip
    best = max(C_GRID, key=lambda c: scores[str(c)])
    return best, scores


def rounded(head: LogisticHead) -> LogisticHead:
    def r(values: list[float]) -> list[float]:
        return [float(f"{v:.{DIGITS}g}") for v in values]

    return replace(
        head, mean=r(head.mean), scale=r(head.scale), weights=r(head.weights),
        bias=float(f"{head.bias:.{DIGITS}g}"),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "toxicity_head.json")
    parser.add_argument("--no-replies", action="store_true", help="train on the public sets alone")
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    embedder = EmbeddingModel(device="cpu")

    texts: list[str] = []
    labels: list[int] = []
    held: list[bool] = []
    names: list[str] = []
    sources: dict[str, dict] = {}
    for name in DATASETS:
        rows, digest = load_rows(args.datasets, name)
        flags = [is_holdout(name, str(row["id"])) for row in rows]
        texts += [row["text"] for row in rows]
        labels += [int(row["label"]) for row in rows]
        held += flags
        names += [name] * len(rows)
        sources[name] = {
            "file": f"{name}.jsonl",
            "sha256": digest,
            "train": flags.count(False),
            "train_toxic": sum(int(r["label"]) for r, h in zip(rows, flags, strict=True) if not h),
            "holdout": flags.count(True),
        }

    # Benign assistant replies (hand-written, scripts/data/, and the label-0 templates of
    # scripts/toxicity_synthetic.py), weighted REPLY_WEIGHT: support language, "kill the
    # process", medicine and quoted insults are not toxic language. Rude tone without
    # toxic words is the tone model's (detectors/tone.py), so no rude reply is used here.
    replies = [] if args.no_replies else benign_replies()
    texts += [str(r["text"]) for r in replies]
    labels += [0] * len(replies)
    held += [False] * len(replies)
    names += ["replies"] * len(replies)
    if replies:
        sources["replies"] = {"files": [f"scripts/data/{f}" for f in REPLY_FILES],
                              "synthetic_seed": SEED, "train": len(replies), "train_toxic": 0,
                              "weight": REPLY_WEIGHT}  # fmt: skip

    x = embedder.encode(texts).astype(np.float64)
    y = np.asarray(labels)
    hold = np.asarray(held)
    which = np.asarray(names)
    train = ~hold

    c, cv = choose_c(x[train], y[train])
    meta = {
        "task": "toxicity of the LLM response (label 1 = toxic)",
        "datasets": sources,
        "holdout_share": HOLDOUT_SHARE,
        "split": "detectors.heads.is_holdout(<file stem>, row id)",
        "seed": SEED,
        "embedding_model": embedder.name,
        "c_grid_cv_auroc": cv,
        "c": c,
        "trained_by": "scripts/train_toxicity_head.py",
    }
    features = [f"minilm_{i}" for i in range(x.shape[1])]
    weight = np.where(which == "replies", REPLY_WEIGHT, 1.0)
    head = rounded(LogisticHead.fit("toxicity", features, x[train], y[train], c=c, meta=meta,
                                    sample_weight=weight[train]))  # fmt: skip

    p = head.predict(x)
    holdout_auroc = {name: auroc(y[hold & (which == name)], p[hold & (which == name)])
                     for name in DATASETS}  # fmt: skip
    holdout_auroc["overall"] = auroc(y[hold], p[hold])
    metrics = {"train_auroc": auroc(y[train], p[train]), "holdout_auroc": holdout_auroc}
    head = replace(head, meta={**meta, **metrics})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    head.save(args.out)

    print(f"C={c} (CV AUROC on train: {cv[str(c)]}); wrote {args.out}")
    print(f"{'dataset':<24} {'train':>6} {'holdout':>8} {'holdout AUROC':>14}")
    for name in DATASETS:
        s = sources[name]
        print(f"{name:<24} {s['train']:>6} {s['holdout']:>8} {holdout_auroc[name]:>14.4f}")
    n_train, n_hold = int(train.sum()), int(hold.sum())
    print(f"{'overall':<24} {n_train:>6} {n_hold:>8} {holdout_auroc['overall']:>14.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
