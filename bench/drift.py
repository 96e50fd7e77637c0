"""Drift tests side by side: ours, alibi-detect's MMDDrift and Evidently's embedding drift.

One run, the same embeddings and the same ref/cur arrays for every method in every
trial:

* texts: a "base" pool of real user prompts (HaluEval QA and TruthfulQA questions,
  Alpaca instructions) and a "new topic" pool (jailbreak, role-play and
  system-prompt-extraction prompts), from ``../shared/datasets``, embedded once with
  our all-MiniLM-L6-v2 (cached in ``bench/.cache``);
* null trials: ref and cur drawn disjointly from the base pool; their drift calls are
  false alarms. Shift trials: a share of cur (5 %, 10 %, 30 %) from the new topic;
* ours: ``detectors.drift.MMDDriftTest`` in-process; the peers: ``bench/drift_peers.py``
  in its own virtualenv (made here on first use; alibi-detect pins numpy<2 and is
  BSL-licensed), fed trial by trial so both see the same minutes of this machine.

Reported: false alarms at the nominal alpha, detection per shift level, detection at a
matched false-alarm rate (each method's threshold set on its own null trials), and
seconds per test. Ratios within the run are the headline.

Usage: ``.venv/bin/python bench/drift.py [--quick] [--device cuda]``
Writes ``bench/results/drift.json`` (``drift-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# a log file gets 120 columns: the tables wrap at rich's default 80
console = Console(width=None if sys.stdout.isatty() else 120)
BENCH = ROOT / "bench"
PEERS_SCRIPT = BENCH / "drift_peers.py"
PEERS_REQUIREMENTS = BENCH / "requirements-drift-peers.txt"
PEERS_TORCH = "torch==2.13.0"  # first and alone: an unpinned torch pulls a CUDA build
METHODS = ("ours", "alibi", "evidently")
KEY = (
    "ours: MMDDriftTest, {perm} permutations, +1 correction; alibi: alibi-detect MMDDrift, "
    "pytorch, {alibi_perm} permutations; evidently: domain classifier, ROC-AUC > 0.55"
)


# --- data -------------------------------------------------------------------------------


def _rows(folder: Path, name: str) -> list[dict[str, Any]]:
    with open(folder / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_pools(folder: Path) -> tuple[list[str], list[str]]:
    """The base prompts and the new-topic prompts, each deduplicated and in file order.

    Base: what users of a general assistant ask (factual questions, Alpaca
    instructions). New topic: jailbreaks, "act as ..." role-play and system-prompt
    extraction. A campaign of those is a drift a monitor should catch, and it is
    still prompts, not another kind of text (tweets, news), so the shift is a change
    of topic, not of genre. The injection file's own Alpaca rows are base prompts.
    """
    base: dict[str, None] = {}
    for name in ("halueval_qa", "halueval_general", "truthfulqa"):
        base.update((row["question"], None) for row in _rows(folder, name))
    new: dict[str, None] = {}
    for row in _rows(folder, "injection_jailbreak"):
        (base if row["group"] == "alpaca_instruction" else new)[row["text"]] = None
    overlap = base.keys() & new.keys()
    return [t for t in base if t not in overlap], [t for t in new if t not in overlap]


def embed(texts: list[str], cache_dir: Path) -> np.ndarray:
    """MiniLM vectors of ``texts``, on CPU so that cached vectors match on every machine."""
    from detectors.embeddings import EmbeddingModel, default_model_path

    digest = hashlib.sha256(default_model_path().name.encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = cache_dir / f"drift-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    console.print(f"embedding {len(texts):,} texts once (cached in {cache_dir})…")
    vectors = EmbeddingModel(device="cpu", cache_size=0).encode(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / ".gitignore").write_text("*\n")
    np.save(path, vectors)
    return vectors


@dataclass(frozen=True)
class Trials:
    """Row indices into the pool (base rows first, then new-topic rows), per trial."""

    condition: list[str]
    share: np.ndarray
    seed: np.ndarray
    ref_idx: np.ndarray
    cur_idx: np.ndarray


def condition_name(share: float) -> str:
    return "null" if share == 0 else f"shift {share:.0%}"


def make_trials(n_base: int, n_new: int, args: argparse.Namespace) -> Trials:
    """Seeded trials: ref and cur disjoint, without replacement, cur shuffled."""
    if args.n_ref + args.n_cur > n_base:
        raise SystemExit(f"n_ref + n_cur = {args.n_ref + args.n_cur} > base pool {n_base}")
    names, shares, seeds, refs, curs = [], [], [], [], []
    for c, share in enumerate([0.0, *args.shifts]):
        k = round(share * args.n_cur)
        if k > n_new:
            raise SystemExit(f"a {share:.0%} shift needs {k} new-topic texts; the pool has {n_new}")
        for t in range(args.null_trials if share == 0 else args.shift_trials):
            rng = np.random.default_rng([args.seed, c, t])
            perm = rng.permutation(n_base)
            cur = np.concatenate(
                [
                    perm[args.n_ref : args.n_ref + args.n_cur - k],
                    n_base + rng.choice(n_new, k, replace=False),
                ]
            )
            rng.shuffle(cur)
            names.append(condition_name(share))
            shares.append(share)
            seeds.append(int(rng.integers(2**31 - 1)))
            refs.append(perm[: args.n_ref])
            curs.append(cur)
    return Trials(
        names,
        np.array(shares),
        np.array(seeds, dtype=np.int64),
        np.stack(refs).astype(np.int32),
        np.stack(curs).astype(np.int32),
    )


# --- the methods ------------------------------------------------------------------------


def run_ours(ref: np.ndarray, cur: np.ndarray, seed: int, args: argparse.Namespace) -> dict:
    """Construct and test, both timed: a pipeline makes a test per window."""
    from detectors.drift import MMDDriftTest

    t0 = time.perf_counter()
    test = MMDDriftTest(
        alpha=args.alpha, permutations=args.permutations, seed=seed, device=args.device
    )
    r = test.test(ref, cur)
    seconds = time.perf_counter() - t0
    out = {
        "p_value": float(r.p_value),
        "statistic": float(r.statistic),
        "threshold": float(r.threshold),
        "drifted": bool(r.drifted),
        "distance": float(r.distance),
        "method": str(r.method),
        "seconds": seconds,
    }
    # further numeric fields (bandwidth, its own clock, any time split) are kept as they are
    if dataclasses.is_dataclass(r):
        for f in dataclasses.fields(r):
            value = getattr(r, f.name)
            if isinstance(value, int | float) and f.name not in ("n_ref", "n_cur", "threshold"):
                out.setdefault(f.name if f.name != "seconds" else "own_seconds", value)
    return out


def ensure_peers_venv(venv: Path) -> Path:
    """The peers' own virtualenv, made (or brought up to the requirements) on first use."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = PEERS_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    console.print(f"installing the peers into {venv} (a few minutes, once)…")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (venv / ".gitignore").write_text("*\n")  # gigabytes that must never be committed
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, PEERS_TORCH], check=True)
    subprocess.run([*pip, PEERS_TORCH, "-r", str(PEERS_REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


class PeerProcess:
    """``drift_peers.py --serve``: one trial index in, one JSON line out."""

    def __init__(self, python: Path, folder: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(
            [str(python), str(PEERS_SCRIPT), str(folder), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.versions: dict[str, Any] = self._read()["versions"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"drift_peers.py exited with {self.proc.wait()}; see its stderr")
        return json.loads(line)

    def trial(self, i: int) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(f"{i}\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(60)


# --- summaries --------------------------------------------------------------------------


def _rate(hits: np.ndarray) -> dict[str, Any]:
    k, n = int(hits.sum()), len(hits)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None}


def _score(method: str, rows: list[dict[str, Any]]) -> np.ndarray:
    """Larger means more drift: ranks by (1 - p, statistic) for the permutation tests,
    so ties between coarse p-values (alibi has 100 permutations) break by the statistic;
    ROC-AUC for Evidently."""
    if method == "evidently":
        return np.array([r["roc_auc"] for r in rows])
    p = np.array([r["p_value"] for r in rows])
    stat = np.array([r["statistic"] for r in rows])
    ranks = np.empty(len(rows))
    ranks[np.lexsort((stat, -p))] = np.arange(len(rows))
    return ranks


def summarize(raw: list[dict[str, Any]], conditions: list[str], alpha: float) -> dict[str, Any]:
    conds = np.array([r["condition"] for r in raw])
    null = conds == "null"
    summary: dict[str, Any] = {}
    for m in METHODS:
        rows = [r[m] for r in raw]
        drifted = np.array([r["drifted"] for r in rows])
        far = _rate(drifted[null])
        ci = binomtest(far["k"], far["n"]).proportion_ci(0.99, method="exact")
        far["ci99"] = [round(ci.low, 4), round(ci.high, 4)]
        score = _score(m, rows)
        threshold = np.quantile(score[null], 1 - alpha, method="higher")
        matched = score > threshold
        seconds = np.array([r["seconds"] for r in rows])
        summary[m] = {
            "false_alarms": far,
            "detection": {c: _rate(drifted[conds == c]) for c in conditions if c != "null"},
            "matched": {
                "false_alarms": _rate(matched[null]),
                "detection": {c: _rate(matched[conds == c]) for c in conditions if c != "null"},
            },
            "seconds_per_test": {
                "median": float(np.median(seconds)),
                "p10": float(np.quantile(seconds, 0.1)),
                "p90": float(np.quantile(seconds, 0.9)),
            },
        }
    alibi_predict = np.array([r["alibi"]["predict_s"] for r in raw])
    alibi_s = np.array([r["alibi"]["seconds"] for r in raw])
    summary["alibi"]["predict_only_seconds_median"] = float(np.median(alibi_predict))
    ours_s = summary["ours"]["seconds_per_test"]["median"]
    paired = alibi_s / np.array([r["ours"]["seconds"] for r in raw])
    summary["ratios"] = {
        # per trial, both timed within seconds of each other: robust to the machine's drift
        "alibi_over_ours_time_paired_median": round(float(np.median(paired)), 2),
        "alibi_over_ours_time": round(summary["alibi"]["seconds_per_test"]["median"] / ours_s, 2),
        "alibi_predict_only_over_ours_time": round(float(np.median(alibi_predict)) / ours_s, 2),
        "evidently_over_ours_time": round(
            summary["evidently"]["seconds_per_test"]["median"] / ours_s, 2
        ),
        "matched_detection_ours_minus": {
            peer: {
                c: round(
                    summary["ours"]["matched"]["detection"][c]["rate"]
                    - summary[peer]["matched"]["detection"][c]["rate"],
                    4,
                )
                for c in conditions
                if c != "null"
            }
            for peer in ("alibi", "evidently")
        },
    }
    return summary


def _kn(r: dict[str, Any]) -> str:
    return f"{r['k']}/{r['n']} ({r['rate']:.0%})"


def print_tables(
    summary: dict[str, Any], conditions: list[str], alpha: float, n: str, key: str
) -> None:
    shifts = [c for c in conditions if c != "null"]
    table = Table(
        "method",
        "false alarms (99% CI)",
        *shifts,
        title=f"drift calls at alpha={alpha}, {n}",
        caption=key,
    )
    for m in METHODS:
        s = summary[m]
        far = s["false_alarms"]
        table.add_row(
            m,
            f"{_kn(far)} [{far['ci99'][0]:.2f}, {far['ci99'][1]:.2f}]",
            *[_kn(s["detection"][c]) for c in shifts],
        )
    console.print(table)
    table = Table(
        "method",
        "false alarms",
        *shifts,
        title="detection at a matched false-alarm rate",
        caption=f"threshold: each method's own {1 - alpha:.0%} quantile of its null scores",
    )
    for m in METHODS:
        s = summary[m]["matched"]
        table.add_row(m, _kn(s["false_alarms"]), *[_kn(s["detection"][c]) for c in shifts])
    for peer, diff in summary["ratios"]["matched_detection_ours_minus"].items():
        table.add_row(f"ours - {peer}", "", *[f"{diff[c]:+.0%}" for c in shifts])
    console.print(table)
    ours_s = summary["ours"]["seconds_per_test"]["median"]
    table = Table("method", "median s per test", "p10-p90", "÷ ours", title="time per test")
    rows = [(m, summary[m]["seconds_per_test"]) for m in METHODS]
    for label, t in rows:
        table.add_row(
            label,
            f"{t['median']:.3f}",
            f"{t['p10']:.3f}-{t['p90']:.3f}",
            f"{t['median'] / ours_s:.1f}x",
        )
    predict = summary["alibi"]["predict_only_seconds_median"]
    table.add_row("alibi predict() only", f"{predict:.3f}", "", f"{predict / ours_s:.1f}x")
    paired = summary["ratios"]["alibi_over_ours_time_paired_median"]
    table.add_row("alibi ÷ ours, per trial", "", "", f"{paired:.1f}x (median)")
    console.print(table)


# --- main -------------------------------------------------------------------------------


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 null, 10 per shift")
    parser.add_argument("--null-trials", type=int, default=None, help="default 200 (20 quick)")
    parser.add_argument("--shift-trials", type=int, default=None, help="default 50 (10 quick)")
    parser.add_argument(
        "--shifts",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.05, 0.10, 0.30],
        help="new-topic shares of cur",
    )
    parser.add_argument("--n-ref", type=int, default=1000)
    parser.add_argument("--n-cur", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--permutations", type=int, default=1000, help="ours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="ours only; the peers stay on CPU")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads, ours and the peers alike",
    )
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=BENCH / ".cache")
    parser.add_argument("--peers-venv", type=Path, default=BENCH / ".venv-drift-peers")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.null_trials = args.null_trials or (20 if args.quick else 200)
    args.shift_trials = args.shift_trials or (10 if args.quick else 50)
    out = args.out or BENCH / "results" / ("drift-quick.json" if args.quick else "drift.json")
    torch.set_num_threads(args.threads)

    base_texts, new_texts = load_pools(args.datasets)
    vectors = embed(base_texts + new_texts, args.cache)
    base, new = vectors[: len(base_texts)], vectors[len(base_texts) :]
    console.print(
        f"pools: {len(base):,} base prompts, {len(new):,} new-topic prompts, {base.shape[1]}-d"
    )
    trials = make_trials(len(base), len(new), args)
    conditions = list(dict.fromkeys(trials.condition))
    python = ensure_peers_venv(args.peers_venv)
    pool = np.concatenate([base, new]).astype(np.float32)

    raw: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        np.save(tmp / "pool.npy", pool)
        np.savez(
            tmp / "trials.npz", ref_idx=trials.ref_idx, cur_idx=trials.cur_idx, seed=trials.seed
        )
        (tmp / "config.json").write_text(json.dumps({"alpha": args.alpha, "threads": args.threads}))
        console.print("starting the peers (imports and a warm-up trial)…")
        console.print("progress per condition: drift calls and median s, ours/alibi/evidently")
        peers = PeerProcess(python, tmp)
        run_ours(pool[trials.ref_idx[0]], pool[trials.cur_idx[0]], 0, args)  # warm-up
        try:
            for i, cond in enumerate(trials.condition):
                ref, cur = pool[trials.ref_idx[i]], pool[trials.cur_idx[i]]
                seed = int(trials.seed[i])
                # alternate who goes first, so neither always runs on a warm cache
                if i % 2:
                    peer = peers.trial(i)
                    ours = run_ours(ref, cur, seed, args)
                else:
                    ours = run_ours(ref, cur, seed, args)
                    peer = peers.trial(i)
                raw.append(
                    {
                        "condition": cond,
                        "share": float(trials.share[i]),
                        "seed": seed,
                        "ours": ours,
                        "alibi": peer["alibi"],
                        "evidently": peer["evidently"],
                    }
                )
                _progress(
                    raw, cond, i + 1 == len(trials.condition) or trials.condition[i + 1] != cond
                )
        finally:
            peers.close()

    summary = summarize(raw, conditions, args.alpha)
    n_desc = f"n_ref={args.n_ref}, n_cur={args.n_cur}, {pool.shape[1]}-d"
    key = KEY.format(perm=args.permutations, alibi_perm=raw[0]["alibi"]["permutations"])
    print_tables(summary, conditions, args.alpha, n_desc, key)
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "pools": {
            "base": len(base),
            "new_topic": len(new),
            "base_sources": [
                "halueval_qa questions",
                "halueval_general queries",
                "truthfulqa questions",
                "injection_jailbreak alpaca_instruction",
            ],
            "new_topic_sources": [
                "injection_jailbreak inthewild_jailbreak",
                "sysprompt_extraction",
                "roleplay_prompt",
            ],
            "embedding": "all-MiniLM-L6-v2 (detectors.embeddings), CPU",
        },
        "methods": {
            "ours": {
                "call": "MMDDriftTest(alpha, permutations, seed=trial_seed, device).test",
                "permutations": args.permutations,
                "device": args.device,
                "timed": "construct + test",
            },
            "alibi": {
                "call": "MMDDrift(x_ref, backend='pytorch', p_val=alpha, device='cpu').predict(x)",
                "permutations": raw[0]["alibi"]["permutations"],
                "p_value": "mean(permuted >= observed), no +1 correction",
                "timed": "construct + predict (predict alone in predict_s)",
            },
            "evidently": {
                "call": "model(bootstrap=n_ref < 1000)(cur_df, ref_df), as "
                "EmbeddingsDriftMetric calls it",
                "bootstrap": raw[0]["evidently"]["bootstrap"],
                "threshold": raw[0]["evidently"]["threshold"],
                "timed": "the drift method alone; the Report's t-SNE plot excluded",
            },
        },
        "summary": summary,
        "versions": {
            "ours": {
                "torch": torch.__version__,
                "numpy": np.__version__,
                "torch_threads": torch.get_num_threads(),
                "device": _device_name(args.device),
            },
            "peers": peers.versions,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trials": raw,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    console.print(f"wrote {out}")


def _progress(raw: list[dict[str, Any]], cond: str, last: bool) -> None:
    """A line every 25 trials of a condition and at its end."""
    rows = [r for r in raw if r["condition"] == cond]
    if not last and len(rows) % 25:
        return
    counts = "/".join(str(sum(r[m]["drifted"] for r in rows)) for m in METHODS)
    times = "/".join(f"{np.median([r[m]['seconds'] for r in rows]):.2f}" for m in METHODS)
    console.print(f"{cond:>9}: {len(rows):>3} trials, drifted {counts}, median s {times}")


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({_cpu_model()})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
