"""Train the prompt-injection head and record how it does on held-out rows.

Features per input: the MiniLM embedding, the rule features of detectors/injection_rules.py
and a bounded log length. Training uses the rows that ``is_holdout`` keeps in; C is
chosen by 5-fold CV on those rows only. The held-out AUROC is reported overall and
per group (each group against all held-out rows of the other label), next to the
rules alone and length alone: in this dataset jailbreaks are long and benign
instructions short, so length by itself looks good, and the table shows by how much.

Usage: ``HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_injection_head.py``
(writes detectors/models/injection_head.json; about a minute on CPU).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.embeddings import EmbeddingModel  # noqa: E402
from detectors.heads import MODELS_DIR, LogisticHead, is_holdout  # noqa: E402
from detectors.injection_rules import (  # noqa: E402
    SIGNALS,
    feature_names,
    length_feature,
    rule_features,
)
from scripts.injection_synthetic import synthetic_rows  # noqa: E402

DATASET = "injection_jailbreak"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / f"{DATASET}.jsonl"
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, score)), 4)


def by_group(y: np.ndarray, groups: list[str], score: np.ndarray) -> dict[str, float]:
    """Overall AUROC, then each group against every row of the other label."""
    out = {"overall": auroc(y, score)}
    for g in sorted(set(groups)):
        in_g = np.array([x == g for x in groups])
        label = y[in_g][0]
        keep = in_g | (y != label)
        out[g] = auroc(y[keep], score[keep])
    return out


def cross_validate(
    x: np.ndarray, y: np.ndarray, strata: list[str], seed: int
) -> dict[float, float]:
    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(x, strata))
    names = [str(i) for i in range(x.shape[1])]
    result = {}
    for c in C_GRID:
        scores = []
        for fit, val in folds:
            head = LogisticHead.fit("cv", names, x[fit], y[fit], c=c)
            scores.append(auroc(y[val], head.predict(x[val])))
        result[c] = round(float(np.mean(scores)), 4)
    return result


def at_half(y: np.ndarray, groups: list[str], score: np.ndarray) -> dict[str, float]:
    """Share of each group flagged at score >= 0.5 (recall for attacks, FPR for benign)."""
    flagged = score >= 0.5
    return {
        g: round(float(flagged[[x == g for x in groups]].mean()), 4) for g in sorted(set(groups))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "injection_head.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="embedding device (cpu is reproducible)")
    parser.add_argument("--no-synthetic", action="store_true", help="train on the public set alone")
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    import torch

    torch.manual_seed(args.seed)

    rows = [json.loads(line) for line in args.data.read_text().split("\n") if line.strip()]
    # Programmatic rows for what the public set lacks (see scripts/injection_synthetic.py):
    # training only, so the public held-out rows measure the head as before.
    synthetic = [] if args.no_synthetic else synthetic_rows(args.seed)
    rows += synthetic
    texts = [r["text"] for r in rows]
    y = np.array([int(r["label"]) for r in rows])
    groups = [str(r["group"]).split("/")[0] for r in rows]
    held = np.array(["id" in r and is_holdout(DATASET, r["id"]) for r in rows])
    train = ~held

    model = EmbeddingModel(device=args.device)
    emb = model.encode(texts).astype(np.float64)
    # MiniLM has dimensions that are ~1e-8 for every text; standardising them would blow
    # float noise up to unit scale (and fp16 on GPU rounds them to 0). Zeroed here, they
    # get scale 1 and weight 0, so they cannot move the score.
    dead = np.flatnonzero(emb.std(axis=0) < 1e-6)
    emb[:, dead] = 0.0
    rules = rule_features(texts)
    length = length_feature(texts)
    x = np.hstack([emb, rules, length])
    names = feature_names(model.dim)
    assert x.shape[1] == len(names)

    train_groups = [g for g, t in zip(groups, train, strict=True) if t]
    held_groups = [g for g, h in zip(groups, held, strict=True) if h]
    cv = cross_validate(x[train], y[train], train_groups, args.seed)
    best_c = max(cv, key=lambda c: (cv[c], -c))  # ties go to the stronger regularisation
    no_length = LogisticHead.fit("no_length", names[:-1], x[train][:, :-1], y[train], c=best_c)
    keep = [i for i, n in enumerate(names) if not n.startswith("rule_")]  # embedding + length
    no_rules = LogisticHead.fit("no_rules", [names[i] for i in keep], x[train][:, keep],
                                y[train], c=best_c)  # fmt: skip

    yh = y[held]
    results: dict[str, dict[str, float]] = {}
    meta: dict[str, Any] = {
        "dataset": args.data.name,
        "synthetic_rows": dict(sorted(Counter(str(r["group"]) for r in synthetic).items())),
        "split": f"train = not is_holdout({DATASET!r}, id); held out = the rest",
        "counts": {
            "train": dict(sorted(Counter(train_groups).items())),
            "held_out": dict(sorted(Counter(held_groups).items())),
        },
        "seed": args.seed,
        "embedding_model": model.name,
        "features": f"{model.dim} embedding dims, rules {list(SIGNALS)}, log_length",
        "zeroed_dims": [int(i) for i in dead],
        "c": best_c,
        "cv_auroc_by_c": {str(c): v for c, v in cv.items()},
        "script": "scripts/train_injection_head.py",
    }
    head = LogisticHead.fit("injection", names, x[train], y[train], c=best_c, meta=meta)
    results["head"] = by_group(yh, held_groups, head.predict(x[held]))
    results["head_without_length"] = by_group(yh, held_groups, no_length.predict(x[held][:, :-1]))
    results["head_without_rules"] = by_group(yh, held_groups, no_rules.predict(x[held][:, keep]))
    results["rules_only"] = by_group(yh, held_groups, rules[held].max(axis=1))
    results["length_only"] = by_group(yh, held_groups, length[held][:, 0])
    meta["held_out_auroc"] = results
    meta["held_out_flagged_at_0.5"] = at_half(yh, held_groups, head.predict(x[held]))
    meta["held_out_flagged_at_0.5_without_rules"] = at_half(
        yh, held_groups, no_rules.predict(x[held][:, keep])
    )
    head.save(args.out)

    cols = ["overall", *sorted(set(held_groups))]
    print(f"held-out AUROC (n={int(held.sum())}; C={best_c}; CV {cv[best_c]})")
    print(f"{'score':<22}" + "".join(f"{c[:20]:>22}" for c in cols))
    for name, res in results.items():
        print(f"{name:<22}" + "".join(f"{res[c]:>22.4f}" for c in cols))
    print("flagged at 0.5:", meta["held_out_flagged_at_0.5"])
    print("flagged at 0.5 without rules:", meta["held_out_flagged_at_0.5_without_rules"])
    print("held-out counts:", meta["counts"]["held_out"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
