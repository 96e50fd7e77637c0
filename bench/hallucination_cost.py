"""What the claim checks cost: the hallucination detector with and without them.

One run, the same events, alternating rounds (this machine drifts by ±30 % between
minutes, so only the ratio within a round means much): RAG answers from the
hand-written dev sets and HaluEval QA rows with their context, in micro-batches.
"Without" replaces the claim checks by nothing, leaving the alignment (one encode
of sentences and chunks per batch) and the features; the embedding cache is off, so
every round pays for its vectors.

Usage: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/hallucination_cost.py [--rounds 3]``
Writes ``bench/results/hallucination_cost.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _events(datasets: Path) -> list[tuple[str, str, list[str]]]:
    out = []
    for name in ("rag", "rag_heldout"):
        for line in (ROOT / "bench" / "devsets" / f"{name}.jsonl").read_text().splitlines():
            row = json.loads(line)
            out.append((row["question"], row["answer"], row["context"]))
    with (datasets / "halueval_qa.jsonl").open() as fh:
        for line in list(fh)[:300]:
            row = json.loads(line)
            out.append((row["question"], row["answer"], [row["context"]]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/hallucination_cost.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console
    from rich.table import Table

    from detectors import hallucination
    from detectors.base import TextBatch
    from detectors.embeddings import EmbeddingModel

    events = _events(args.datasets)
    model = EmbeddingModel(device="cpu", cache_size=0)
    detector = hallucination.HallucinationDetector(model)

    def run() -> float:
        started = time.perf_counter()
        for i in range(0, len(events), args.batch):
            part = events[i : i + args.batch]
            batch = TextBatch.of([q for q, _, _ in part], [a for _, a, _ in part],
                                 [c for _, _, c in part])  # fmt: skip
            detector.score(batch)
        return len(events) / (time.perf_counter() - started)

    run()  # warm-up: model load, caches of the regexes
    rounds: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        with_checks = run()
        with mock.patch.object(hallucination, "_claims", lambda event, sims: ()):
            without = run()
        rounds.append({"with_claims": round(with_checks, 1), "without": round(without, 1),
                       "ratio": round(with_checks / without, 3)})  # fmt: skip
    ratios = sorted(r["ratio"] for r in rounds)
    result = {
        "events": len(events), "batch": args.batch, "rounds": rounds,
        "median_ratio": ratios[len(ratios) // 2],
        "machine": f"{platform.machine()} {os.cpu_count()} cpus", "when": time.strftime("%FT%TZ"),
    }  # fmt: skip
    table = Table("round", "with claim checks (events/s)", "without (events/s)", "ratio",
                  title="hallucination detector, CPU")  # fmt: skip
    for i, r in enumerate(rounds, 1):
        table.add_row(str(i), str(r["with_claims"]), str(r["without"]), str(r["ratio"]))
    Console().print(table)
    Console().print(f"median ratio {result['median_ratio']} over {len(events)} events")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
