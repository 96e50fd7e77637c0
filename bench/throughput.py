"""Models-only throughput beside the embedding floor, at fp32, bf16 and int8, in one run.

The events are the realistic mix the keep-up issue describes: half RAG answers with
their retrieved chunks (the hand-written dev sets, 2-4 chunks of 30-100 words), half
chat turns without context (the toxicity and injection dev sets as replies and
prompts), 1,000 in all; each RAG question and answer carries the event's number, so
no two events are the same text, while chunks repeat as retrieval repeats them.

* **suite**: ``DetectorSuite.score`` (the default detectors: MiniLM embeddings, the
  toxicity head, claim checks, PII, injection) on micro-batches of the worker's size;
* **floor**: MiniLM encoding each distinct input, output and chunk of the same
  events once, the least any embedding-based scorer must do.

Rounds time the six (suite and floor at fp32, bf16 autocast and int8 on ONNX Runtime)
over the same events, each round in a rotated order, because this machine drifts by
+-30 % between minutes: the ratios within a round are the figures. The vector cache is
cleared before every timing. The quality check compares bf16 and int8 with fp32 on
the same events: vector cosine, and how many events change side of the 0.5 threshold
per detector. int8 needs the ``[int8]`` extra (``--precisions fp32,bf16`` skips it).

Usage: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/throughput.py [--rounds 3]``
Writes ``bench/results/throughput.json`` and prints a table.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from detectors.base import TextBatch  # noqa: E402
from detectors.suite import DetectorSuite, SuiteConfig  # noqa: E402

DEVSETS = ROOT / "bench" / "devsets"


def realistic_events(n: int) -> list[tuple[str, str, list[str] | None]]:
    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (DEVSETS / f"{name}.jsonl").read_text().splitlines()]

    rag = rows("rag") + rows("rag_heldout")
    replies = [r["text"] for r in rows("toxicity") + rows("toxicity_heldout")]
    prompts = [r["text"] for r in rows("injection") + rows("injection_heldout")]
    events: list[tuple[str, str, list[str] | None]] = []
    for i in range(n):
        if i % 2 == 0:
            r = rag[(i // 2) % len(rag)]
            events.append((f"{r['question']} (#{i})", f"{r['answer']} (#{i})", r["context"]))
        else:
            j = i // 2
            events.append((prompts[j % len(prompts)], replies[j % len(replies)], None))
    return events


def batches(events: list, size: int) -> list[TextBatch]:
    return [
        TextBatch([e[0] for e in chunk], [e[1] for e in chunk], [e[2] for e in chunk])
        for chunk in (events[i : i + size] for i in range(0, len(events), size))
    ]


def distinct_texts(events: list) -> list[str]:
    texts = [t for e in events for t in (e[0], e[1], *(e[2] or []))]
    return list(dict.fromkeys(texts))


def score_all(suite: DetectorSuite, parts: list[TextBatch]) -> list[Any]:
    """Every event's scores, with the vector cache cleared first (time the models)."""
    suite.embeddings.clear_cache()
    return [scores for part in parts for scores in suite.score(part)]


def compare_scores(reference: list[Any], other: list[Any]) -> dict[str, Any]:
    """How far ``other`` is from ``reference`` (the same events): the cosine of their
    input and output vectors, and per detector the largest score difference and how
    many events change side of 0.5."""
    a = np.stack([r.output_vector for r in reference] + [r.input_vector for r in reference])
    b = np.stack([r.output_vector for r in other] + [r.input_vector for r in other])
    cosine = (a * b).sum(axis=1)
    getters = {
        "toxicity": lambda s: s.toxicity.scores["toxicity"],
        "hallucination": lambda s: s.hallucination.score,
        "injection": lambda s: s.injection.score,
    }
    scores = {}
    for name, get in getters.items():
        pairs = [(get(x), get(y)) for x, y in zip(reference, other, strict=True)]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        scores[name] = {
            "events": len(pairs),
            "flagged_changed": sum((x >= 0.5) != (y >= 0.5) for x, y in pairs),
            "max_abs_diff": round(max((abs(x - y) for x, y in pairs), default=0.0), 5),
        }
    return {"cosine_min": round(float(cosine.min()), 6),
            "cosine_mean": round(float(cosine.mean()), 6), "scores": scores}  # fmt: skip


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250, help="worker micro-batch size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16,int8", help="fp32 first")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/throughput.json")
    args = parser.parse_args()
    events = realistic_events(args.events)
    parts = batches(events, args.batch)
    texts = distinct_texts(events)
    precisions = args.precisions.split(",")
    suites = {p: DetectorSuite(SuiteConfig(device="cpu", precision=p)) for p in precisions}
    for suite in suites.values():  # warm-up: first calls allocate and JIT
        suite.score(parts[0])
        suite.embeddings.encode(texts[:64])

    def run_floor(p: str) -> None:
        suites[p].embeddings.clear_cache()
        suites[p].embeddings.encode(texts)

    rounds = []
    for r in range(args.rounds):
        row = {}
        for p in precisions[r % len(precisions) :] + precisions[: r % len(precisions)]:
            row[f"suite_{p}"] = args.events / timed(lambda p=p: score_all(suites[p], parts))
            row[f"floor_{p}"] = args.events / timed(lambda p=p: run_floor(p))
        row["suite_vs_floor_fp32"] = row["suite_fp32"] / row["floor_fp32"]
        for p in precisions[1:]:
            row[f"{p}_speedup"] = row[f"suite_{p}"] / row["suite_fp32"]
            row[f"suite_{p}_vs_floor_fp32"] = row[f"suite_{p}"] / row["floor_fp32"]
        rounds.append({k: round(v, 3) for k, v in row.items()})
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rounds[-1].items()))

    reference = score_all(suites["fp32"], parts)
    agreement = {f"{p}_vs_fp32": compare_scores(reference, score_all(suites[p], parts))
                 for p in precisions[1:]}  # fmt: skip
    median = {k: round(float(np.median([r[k] for r in rounds])), 3) for k in rounds[0]}
    result = {
        "what": "models-only events/s beside the embedding floor: fp32, bf16 autocast, "
                "int8 (ONNX Runtime)",
        "events": args.events, "batch": args.batch, "distinct_texts": len(texts),
        "rounds": rounds, "median": median,
        **agreement,
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| measure (median of rounds) | value |\n|---|---|")
    for k, v in median.items():
        print(f"| {k} | {v} |")
    for key, a in agreement.items():
        p = key.split("_")[0]
        print(
            f"| {p} vs fp32 vector cosine (min / mean) | {a['cosine_min']} / {a['cosine_mean']} |"
        )
        for name, f in a["scores"].items():
            print(f"| {p} {name}: events changing side of 0.5 (of {f['events']}) | "
                  f"{f['flagged_changed']} (max diff {f['max_abs_diff']}) |")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
