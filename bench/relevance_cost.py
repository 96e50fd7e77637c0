"""What relevance costs: the suite with and without whole chunks in its one encode call.

Answer relevance reuses the question and answer vectors; context relevance needs a
vector per whole chunk, which joins the encode call beside the hallucination check's
sentences (a one-sentence chunk is already there). Two measures, on the realistic mix
of ``bench/throughput.py`` (half RAG events whose chunks repeat as retrieval repeats
them) and on the same events with every chunk sentence made unique (a long-tail corpus,
the worst case):

* **work**: the distinct texts the model reads, and their word pieces (at most 256 per
  text, what MiniLM reads), counted without running the model: deterministic;
* **time**: ``DetectorSuite.score`` over the events, with and without whole chunks (and
  the relevance step), alternating, the vector cache cleared before each pass; process
  CPU seconds beside wall seconds, because on a shared machine the wall clock swings.

Usage: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/relevance_cost.py [--events 500]``
Writes ``bench/results/relevance_cost.json`` and prints it.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import detectors.suite as suite_module  # noqa: E402
from bench.throughput import batches, realistic_events  # noqa: E402
from detectors.hallucination import HallucinationDetector  # noqa: E402
from detectors.relevance import chunk_texts  # noqa: E402
from detectors.suite import DetectorSuite, SuiteConfig  # noqa: E402
from detectors.text import split_sentences  # noqa: E402

Events = list[tuple[str, str, list[str] | None]]


def unique_chunks(events: Events) -> Events:
    """The same events with a tag on every chunk sentence: no chunk text repeats."""
    out: Events = []
    for i, (q, a, context) in enumerate(events):
        if context is not None:
            context = [
                " ".join(f"{s} [{i}.{j}.{k}]" for k, s in enumerate(split_sentences(c)))
                for j, c in enumerate(context)
            ]
        out.append((q, a, context))
    return out


def work(suite: DetectorSuite, events: Events, batch: int, with_chunks: bool) -> dict[str, int]:
    """Distinct texts the model reads over the run (the cache outlives batches) and their
    word pieces, as the suite assembles them: outputs, inputs, the hallucination
    check's sentences and chunk sentences, and (with relevance) the whole chunks."""
    tokenizer = suite.embeddings.model.tokenizer
    seen: dict[str, None] = {}
    for part in batches(events, batch):
        claims = HallucinationDetector.parse(part)
        texts = [*part.outputs, *part.inputs, *HallucinationDetector.texts(claims)]
        texts += chunk_texts(part) if with_chunks else []
        seen.update(dict.fromkeys(texts))
    pieces = sum(min(256, len(tokenizer(t)["input_ids"])) for t in seen)
    return {"texts": len(seen), "word_pieces": pieces}


def timed(suite: DetectorSuite, events: Events, batch: int, with_chunks: bool) -> list[float]:
    """(CPU s, wall s) of one pass; without chunks the relevance step is left out too."""
    real_chunks, real_score = chunk_texts, suite.relevance.score
    if not with_chunks:
        suite_module.chunk_texts = lambda batch: []  # type: ignore[assignment]
        suite.relevance.score = lambda batch: [None] * len(batch)  # type: ignore[method-assign]
    try:
        suite.embeddings.clear_cache()
        cpu, wall = time.process_time(), time.perf_counter()
        for part in batches(events, batch):
            suite.score(part)
        return [round(time.process_time() - cpu, 2), round(time.perf_counter() - wall, 2)]
    finally:
        suite_module.chunk_texts = real_chunks  # type: ignore[assignment]
        suite.relevance.score = real_score  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--batch", type=int, default=250, help="worker micro-batch size")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/relevance_cost.json")
    args = parser.parse_args()
    suite = DetectorSuite(SuiteConfig(device="cpu", precision="fp32"))
    realistic = realistic_events(args.events)
    mixes = {"realistic": realistic, "unique_chunks": unique_chunks(realistic)}
    suite.score(batches(realistic, args.batch)[0])  # warm-up: first calls allocate
    result: dict[str, Any] = {
        "events": args.events, "batch": args.batch, "precision": "fp32",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
    }  # fmt: skip
    for name, events in mixes.items():
        without = work(suite, events, args.batch, False)
        with_ = work(suite, events, args.batch, True)
        rounds = [
            {"without": timed(suite, events, args.batch, False),
             "with": timed(suite, events, args.batch, True)}
            for _ in range(args.rounds)
        ]  # fmt: skip
        cpu = [r["with"][0] / r["without"][0] for r in rounds]
        result[name] = {
            "work_without": without, "work_with": with_,
            "word_pieces_ratio": round(with_["word_pieces"] / without["word_pieces"], 3),
            "cpu_wall_s": rounds, "cpu_ratio_per_round": [round(c, 3) for c in cpu],
        }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
