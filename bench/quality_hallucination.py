"""Held-out quality of the groundedness detector, per dataset and pooled.

``evaluate_hallucination`` is what ``bench/quality.py`` calls with dataset rows and
the detector's results; run as a script, this file scores the held-out rows itself:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/quality_hallucination.py [--out FILE]

AUROC is measured on ``is_holdout`` rows only (the head never saw them), with
``hallucinated`` as the positive class. Next to it stands the AUROC of answer
length alone on the same rows: on HaluEval QA length nearly separates the classes,
so a high figure there says little about grounding. Sets without context are
reported as coverage only: the detector returns None there by contract.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intervals import bootstrap  # noqa: E402
from detectors.hallucination import Groundedness, holdout_key  # noqa: E402
from detectors.heads import is_holdout  # noqa: E402

__all__ = [
    "CONTEXT_FREE_SETS",
    "CONTEXT_SETS",
    "dataset_of",
    "evaluate_hallucination",
    "score_of",
]

CONTEXT_SETS = ("halueval_qa", "frank_summaries")
CONTEXT_FREE_SETS = ("halueval_general", "truthfulqa")
_BY_TASK = {
    "qa_with_context": "halueval_qa",
    "summarization": "frank_summaries",
    "open_instruction": "halueval_general",
    "open_domain_qa": "truthfulqa",
}
DATA_DIR = ROOT.parent / "shared" / "datasets"


def dataset_of(row: Mapping[str, Any]) -> str:
    """The dataset a row came from: its ``dataset`` field if set, else its ``task``."""
    return str(row.get("dataset") or _BY_TASK[row["task"]])


def _auroc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, scores)), 4)


Result = Groundedness | Mapping[str, Any] | float | None


def score_of(result: Result) -> float | None:
    """The score in a :class:`Groundedness`, an ``llmpulse score`` scores object, or bare."""
    if isinstance(result, Groundedness):
        return result.score
    if isinstance(result, Mapping):
        result = result["hallucination"]
    return None if result is None else float(result)


def evaluate_hallucination(
    scored_rows: Iterable[tuple[Mapping[str, Any], Result]],
) -> dict[str, Any]:
    """AUROC on held-out rows per context set and pooled; coverage on context-free sets.

    ``scored_rows`` pairs each dataset row (as in ``shared/datasets``, optionally
    with a ``dataset`` field) with the detector's result for it: a Groundedness,
    the ``scores`` object of ``llmpulse score`` output, or the score itself.
    Rows outside the holdout count for coverage only.
    """
    held: dict[str, list[tuple[int, float | None, int]]] = {}
    seen: dict[str, list[bool]] = {}
    for row, result in scored_rows:
        name, value = dataset_of(row), score_of(result)
        seen.setdefault(name, []).append(value is not None)
        if name in CONTEXT_SETS and is_holdout(name, holdout_key(name, row)):
            label = int(row["label"] == "hallucinated")
            held.setdefault(name, []).append((label, value, len(row["answer"])))
    report: dict[str, Any] = {"datasets": {}}
    pooled: list[tuple[int, float | None, int]] = []
    for name, items in held.items():
        report["datasets"][name] = _summary(items)
        pooled += items
    if pooled:
        report["pooled"] = _summary(pooled) | {"datasets": sorted(held)}
    for name, flags in seen.items():
        entry = report["datasets"].setdefault(name, {})
        entry["coverage"] = round(sum(flags) / len(flags), 4)
        entry["rows"] = len(flags)
    return report


def _summary(items: list[tuple[int, float | None, int]]) -> dict[str, Any]:
    scored = [(y, s, n) for y, s, n in items if s is not None]
    labels = [y for y, _, _ in scored]
    pairs = [(y, s) for y, s, _ in scored]
    interval = bootstrap(pairs, lambda ps: _auroc([y for y, _ in ps], [s for _, s in ps]))
    return {
        "n_holdout": len(items),
        "auroc": _auroc(labels, [s for _, s, _ in scored]),  # type: ignore[misc]
        "auroc_ci95": interval["ci95"],  # rows resampled; paired answers are not kept together
        "auroc_length_only": _auroc(labels, [float(n) for _, _, n in scored]),
    }


def _load(name: str) -> list[dict]:
    with (DATA_DIR / f"{name}.jsonl").open() as fh:
        return [json.loads(line) for line in fh]


def _devsets_head(detector: Any, batch_of: Any) -> dict[str, dict[str, float | None]]:
    """AUROC of the HaluEval/FRANK head on the hand-written RAG sets, its probability
    alone and as the opt-in method (findings on top): why it is not the default."""
    out = {}
    for name in ("rag", "rag_heldout"):
        path = ROOT / "bench" / "devsets" / f"{name}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        batch = batch_of([r["question"] for r in rows], [r["answer"] for r in rows],
                         [r["context"] for r in rows])  # fmt: skip
        labels = [int(r["label"]) for r in rows]
        features = [a.features for a in detector.align(batch)]
        probs = detector.head.predict(np.vstack(features)).tolist()
        scores = [g.score for g in detector.score(batch)]
        out[name] = {"alone": _auroc(labels, probs), "with_findings": _auroc(labels, scores)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench/results/quality_hallucination.json"
    )
    parser.add_argument("--batch", type=int, default=32, help="events per micro-batch")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rich.console import Console
    from rich.table import Table

    from detectors.base import TextBatch
    from detectors.embeddings import EmbeddingModel
    from detectors.hallucination import HallucinationDetector

    model = EmbeddingModel(device="cpu", cache_size=0)  # cold: every run pays for its vectors
    detectors = {
        "claims": HallucinationDetector(model),
        "head": HallucinationDetector(model, head_path="hallucination_head.json"),
    }
    rows: dict[str, list[dict]] = {}
    for name in CONTEXT_SETS:
        rows[name] = [r for r in _load(name) if is_holdout(name, holdout_key(name, r))]
    for name in CONTEXT_FREE_SETS:
        rows[name] = _load(name)
    reports, cpu = {}, {}
    for label, detector in detectors.items():
        scored: list[tuple[dict, Groundedness]] = []
        for name, part in rows.items():
            started = time.process_time()
            for i in range(0, len(part), args.batch):
                chunk = part[i : i + args.batch]
                contexts = [[r["context"]] if r["context"] else None for r in chunk]
                batch = TextBatch.of([r["question"] for r in chunk], [r["answer"] for r in chunk],
                                     contexts)  # fmt: skip
                scored += zip(chunk, detector.score(batch), strict=True)
            seconds = time.process_time() - started
            cpu.setdefault(name, {})[label] = round(seconds / len(part), 4)
        reports[label] = evaluate_hallucination(scored)
    report = {
        "claims": reports["claims"],
        "head": reports["head"],
        "devsets_head": _devsets_head(detectors["head"], TextBatch.of),
        "cpu_s_per_event": cpu,  # process time, all threads, embedding model included
        "batch": args.batch,
    }
    table = Table(title="groundedness, held-out AUROC (positive = hallucinated)")
    for col in ("dataset", "n", "claims (default)", "head", "length only", "coverage"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    names = [*CONTEXT_SETS, "pooled", *CONTEXT_FREE_SETS]
    for name in names:
        h = reports["claims"]["datasets"].get(name) or reports["claims"].get(name, {})
        r = reports["head"]["datasets"].get(name) or reports["head"].get(name, {})
        table.add_row(
            name, str(h.get("n_holdout", h.get("rows", ""))), str(h.get("auroc", "-")),
            str(r.get("auroc", "-")), str(h.get("auroc_length_only", "-")),
            str(h.get("coverage", "-")),
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(f"CPU seconds per event (process time, batch {args.batch}): {cpu}")
    console.print(f"the head on the realistic RAG dev sets, AUROC: {report['devsets_head']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
