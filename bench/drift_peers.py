"""The peer drift tests for ``bench/drift.py``: alibi-detect's MMDDrift and Evidently.

Runs in its own virtualenv (``bench/.venv-drift-peers``, made by ``bench/drift.py``)
because alibi-detect pins numpy<2 and transformers<5 and is BSL-licensed: it must
never constrain, or ship with, the project. So this file imports no project code.

Input, in DIR (written by ``bench/drift.py``):

* ``pool.npy``: every embedding once, float32 (n, d);
* ``trials.npz``: ``ref_idx`` (T, n_ref) and ``cur_idx`` (T, n_cur) rows of the pool,
  ``seed`` (T,) per trial;
* ``config.json``: ``alpha``, ``threads``.

``drift_peers.py DIR`` runs every trial and writes ``DIR/peers.json``.
``drift_peers.py DIR --serve`` reads one trial index per stdin line and answers one
JSON line each, so the caller can interleave the peers with its own test trial by
trial: this machine's speed drifts by ±30 % between minutes, and two long separate
phases would time the drift rather than the methods.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")  # alibi and evidently warn at import; none bears on results


class Peers:
    """Both peer tests, configured as their defaults, on the rows of one shared pool."""

    def __init__(self, folder: Path) -> None:
        import torch

        config = json.loads((folder / "config.json").read_text())
        self.alpha = float(config["alpha"])
        self.threads = int(config["threads"])
        torch.set_num_threads(self.threads)  # the same count as our test, for a fair clock
        self.pool = np.load(folder / "pool.npy")
        trials = np.load(folder / "trials.npz")
        self.ref_idx, self.cur_idx, self.seeds = (
            trials["ref_idx"],
            trials["cur_idx"],
            trials["seed"],
        )
        self.columns = [f"e{i}" for i in range(self.pool.shape[1])]

    def versions(self) -> dict[str, Any]:
        import alibi_detect
        import evidently
        import sklearn
        import torch

        return {
            "torch": torch.__version__,
            "alibi_detect": alibi_detect.__version__,
            "evidently": evidently.__version__,
            "numpy": np.__version__,
            "scikit_learn": sklearn.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        }

    def trial(self, i: int) -> dict[str, Any]:
        ref, cur = self.pool[self.ref_idx[i]], self.pool[self.cur_idx[i]]
        return {
            "i": i,
            "alibi": self.alibi(ref, cur, int(self.seeds[i])),
            "evidently": self.evidently(ref, cur),
        }

    def alibi(self, ref: np.ndarray, cur: np.ndarray, seed: int) -> dict[str, Any]:
        """``MMDDrift`` as documented: pytorch backend, every other argument its default.

        Construction is timed too: it infers the kernel bandwidth and the ref-ref kernel
        matrix, which a pipeline redoes whenever its reference window moves.
        ``device='cpu'`` is the default's choice on a CPU machine, and keeps the peers
        on CPU when a GPU is lent for our test.
        """
        import torch
        from alibi_detect.cd import MMDDrift

        torch.manual_seed(seed)  # its permutations draw from torch's global generator
        t0 = time.perf_counter()
        detector = MMDDrift(ref, backend="pytorch", p_val=self.alpha, device="cpu")
        t1 = time.perf_counter()
        data = detector.predict(cur)["data"]
        t2 = time.perf_counter()
        permutations = int(detector._detector.n_permutations)
        # its p-value is mean(permuted >= observed), without the +1 correction
        exceed = round(float(data["p_val"]) * permutations)
        return {
            "p_value": float(data["p_val"]),
            "p_value_plus1": (exceed + 1) / (permutations + 1),
            "statistic": float(data["distance"]),  # MMD^2
            "distance_threshold": float(data["distance_threshold"]),
            "drifted": bool(data["is_drift"]),
            "permutations": permutations,
            "construct_s": t1 - t0,
            "predict_s": t2 - t1,
            "seconds": t2 - t0,
        }

    def evidently(self, ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
        """Evidently's default embedding-drift method, called as its metric calls it.

        ``EmbeddingsDriftMetric`` uses ``model(bootstrap=n_ref < 1000)``: a domain
        classifier (SGD logistic regression, half the rows held out) whose ROC-AUC over
        0.55 means drift. The metric (and the ``Report`` around it) also fits a t-SNE of
        both sets for its plot, tens of seconds on 2 cores and no part of the test, so
        the method is timed alone; its score is the metric's ``drift_score``.
        """
        import pandas as pd
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

        t0 = time.perf_counter()
        method = model(bootstrap=ref.shape[0] < 1000)
        score, drifted, _ = method(
            pd.DataFrame(cur, columns=self.columns), pd.DataFrame(ref, columns=self.columns)
        )
        seconds = time.perf_counter() - t0
        return {
            "roc_auc": float(score),
            "drifted": bool(drifted),
            "seconds": seconds,
            "bootstrap": bool(method.bootstrap),
            "threshold": method.threshold,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--serve", action="store_true", help="one trial per stdin line")
    args = parser.parse_args()
    if args.serve:
        # Answers go to the real stdout; anything the libraries print goes to stderr.
        answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    peers = Peers(args.folder)
    peers.trial(0)  # warm-up: imports, first allocations, numba compilation
    if args.serve:
        answers.write(json.dumps({"versions": peers.versions()}) + "\n")
        for line in sys.stdin:
            answers.write(json.dumps(peers.trial(int(line))) + "\n")
        return
    results = []
    for i in range(len(peers.seeds)):
        results.append(peers.trial(i))
        print(f"peers: trial {i + 1}/{len(peers.seeds)}", file=sys.stderr)
    out = args.folder / "peers.json"
    out.write_text(json.dumps({"versions": peers.versions(), "trials": results}) + "\n")


if __name__ == "__main__":
    main()
