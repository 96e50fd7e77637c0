"""Detector throughput: each model alone, all of them, and the full streaming worker.

One run, one machine, the same events (a seeded mix of the public datasets in
``../shared/datasets``: RAG answers with context, summaries of news articles,
open questions, jailbreak prompts, tweets):

* models-only: ``DetectorSuite.score`` in-process on micro-batches of the worker's
  size; per-model seconds come from the same calls;
* pipeline: a real ``llmpulse worker`` (Tansu → Faust → detectors → chdb) with the
  same settings, timed from publishing a chunk until its last row is stored;

the two alternate in rounds over chunks of the events, because this machine
drifts by ±30 % between minutes and a ratio of two long phases measured the drift;
* baseline: Detoxify's own ``predict()`` called once per event, which is what a
  user without llmpulse would write.

Toxicity uses a Detoxify checkpoint of the real "original" size (bert-base, 110M
parameters) with random weights, since real weights cannot be downloaded here; the
time per text is what real weights cost. ``--toxicity head`` times the bundled head.

Usage: ``.venv/bin/python bench/detectors.py [--events 1000] [--toxicity base|head]``
Writes ``bench/results/detectors[-head].json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import publish, sql_count, wait_count  # noqa: E402
from bench.quality import build_events  # noqa: E402
from detectors.base import TextBatch  # noqa: E402
from detectors.suite import DetectorSuite, SuiteConfig  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from tests.fixtures.tiny_detoxify import BERT_BASE_DIMS, build_tiny_checkpoint  # noqa: E402

console = Console()


def sample_events(n: int, seed: int, datasets: Path) -> list[dict[str, Any]]:
    events, _ = build_events(datasets)
    rng = random.Random(seed)
    chosen = rng.sample(events, min(n, len(events)))
    return [{**e, "event_id": f"bench-{i}-{e['event_id']}"} for i, e in enumerate(chosen)]


def models_only(suite: DetectorSuite, events: list[dict[str, Any]], batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        part = events[i : i + batch]
        suite.score(TextBatch([e["input"] for e in part], [e["output"] for e in part],
                              [e.get("context") for e in part]))  # fmt: skip
    return time.perf_counter() - t0


def detoxify_baseline(checkpoint: Path, config: Path, texts: list[str]) -> tuple[float, float]:
    """Seconds for ``predict()`` once per text, and for our batched scorer, on the same texts."""
    from detoxify import Detoxify

    from detectors.toxicity import DetoxifyToxicity

    model = Detoxify(checkpoint=str(checkpoint), huggingface_config_path=str(config))
    model.predict(texts[0])
    t0 = time.perf_counter()
    for text in texts:
        model.predict(text)
    one_by_one = time.perf_counter() - t0
    del model
    ours = DetoxifyToxicity(checkpoint, config)
    ours.predict(texts[:2])
    t0 = time.perf_counter()
    ours.score(TextBatch.of([""] * len(texts), texts))
    return one_by_one, time.perf_counter() - t0


def interleaved(
    env: dict[str, str],
    suite: DetectorSuite,
    events: list[dict[str, Any]],
    warm: int,
    rounds: int,
    batch: int,
    tmp: Path,
) -> tuple[list[float], list[float]]:
    """Per round: a chunk through the models in-process, then the same chunk through
    a live worker. This machine drifts by ±30 % from minute to minute; alternating
    short rounds exposes both measures to the same drift."""  # fmt: skip
    measured = events[warm:]
    size = -(-len(measured) // rounds)
    chunks = [measured[k : k + size] for k in range(0, len(measured), size)]
    models_s, pipe_s = [], []
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "logs") as broker:
        sql_port = free_port()
        env = {**env, "LLMPULSE_HOME": str(tmp / "home"), "LLMPULSE_SQL_PORT": str(sql_port),
               "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap}  # fmt: skip
        url = f"http://127.0.0.1:{sql_port}/sql/"
        worker = subprocess.Popen(
            [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(publish(broker.bootstrap, _payloads(events[:warm])))
            stored = warm
            wait_count(url, stored, timeout=600)
            for r, chunk in enumerate(chunks, start=1):
                console.print(f"round {r}/{len(chunks)}: {len(chunk)} events, models then worker")
                models_s.append(models_only(suite, chunk, batch))
                t0 = time.perf_counter()
                asyncio.run(publish(broker.bootstrap, _payloads(chunk)))
                stored += len(chunk)
                pipe_s.append(wait_count(url, stored, timeout=3600) - t0)
            final = sql_count(url, "SELECT count() FROM llm_events FINAL")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
    if final != len(events):
        raise SystemExit(f"stored {final} rows, expected {len(events)}")
    return models_s, pipe_s


def _payloads(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(e["event_id"].encode(), json.dumps(e).encode()) for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    # 250 = 1000 events / 4 rounds: each round's chunk fills whole batches, so the
    # worker never waits out LLMPULSE_BATCH_WITHIN_S for a partial one at a chunk's end.
    parser.add_argument("--batch", type=int, default=250, help="worker micro-batch size")
    parser.add_argument("--toxicity", choices=["base", "head"], default="base")
    parser.add_argument("--baseline-texts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="models/worker alternations")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "bench" / "results" / (
        "detectors.json" if args.toxicity == "base" else "detectors-head.json")  # fmt: skip
    warm = 64
    events = sample_events(args.events + warm, seed=7, datasets=args.datasets)
    measured = events[warm:]

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMPULSE_BATCH_MAX": str(args.batch),
               "LLMPULSE_BATCH_WITHIN_S": "0.5"}  # fmt: skip
        config = SuiteConfig()
        checkpoint = hf_config = None
        if args.toxicity == "base":
            console.print("building a bert-base-sized Detoxify checkpoint (random weights)…")
            checkpoint, hf_config = build_tiny_checkpoint(tmp / "detoxify", BERT_BASE_DIMS)
            config = SuiteConfig(toxicity_checkpoint=str(checkpoint),
                                 toxicity_config=str(hf_config))  # fmt: skip
            env |= {"LLMPULSE_TOXICITY_CHECKPOINT": str(checkpoint),
                    "LLMPULSE_TOXICITY_CONFIG": str(hf_config)}  # fmt: skip

        suite = DetectorSuite(config)
        device = suite.embeddings.device
        models_only(suite, events[:warm], args.batch)  # warm-up: first calls allocate
        suite.seconds.clear()

        baseline: dict[str, Any] = {}
        if checkpoint and hf_config:
            texts = [e["output"] for e in measured[: args.baseline_texts]]
            console.print(f"baseline: Detoxify.predict() one event at a time, {len(texts)}…")
            one_s, ours_s = detoxify_baseline(checkpoint, hf_config, texts)
            baseline = {"texts": len(texts), "texts_per_s": round(len(texts) / one_s, 2),
                        "batched_texts_per_s": round(len(texts) / ours_s, 2)}  # fmt: skip

        models_rounds, pipe_rounds = interleaved(
            env, suite, events, warm, args.rounds, args.batch, tmp
        )
        per_model = dict(suite.seconds)
        models_s, pipe_s = sum(models_rounds), sum(pipe_rounds)

    n = len(measured)
    rates = {name: round(n / s, 2) for name, s in per_model.items()}
    result = {
        "events": n,
        "batch": args.batch,
        "device": device,
        "toxicity_model": "detoxify bert-base shape, random weights"
        if args.toxicity == "base" else "bundled MiniLM head",
        "per_model_events_per_s": rates,
        "models_only_events_per_s": round(n / models_s, 2),
        "rounds": [{"events": round(n / len(models_rounds)),
                    "models_only_s": round(m, 2), "pipeline_s": round(p, 2),
                    "ratio": round(m / p, 3)} for m, p in zip(models_rounds, pipe_rounds,
                                                              strict=True)],
        "pipeline_events_per_s": round(n / pipe_s, 2),
        "pipeline_over_models_only": round(models_s / pipe_s, 4),
        "detoxify_predict_one_by_one": baseline,
        # on the same texts: our batched scorer over predict() called once per event
        "batched_toxicity_over_one_by_one": round(
            baseline["batched_texts_per_s"] / baseline["texts_per_s"], 2) if baseline else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    table = Table("measure", "events/s", title=f"llmpulse detectors, {n:,} events on {device}")
    for name, rate in rates.items():
        table.add_row(f"{name} alone", f"{rate:,.1f}")
    table.add_row("all models (models-only)", f"{result['models_only_events_per_s']:,.1f}")
    table.add_row("pipeline (publish → stored)", f"{result['pipeline_events_per_s']:,.1f}")
    table.add_row("pipeline ÷ models-only", f"{result['pipeline_over_models_only']:.3f}")
    if baseline:
        table.add_row(f"Detoxify.predict() one by one ({baseline['texts']} texts)",
                      f"{baseline['texts_per_s']:,.1f}")  # fmt: skip
        table.add_row("our batched toxicity, same texts", f"{baseline['batched_texts_per_s']:,.1f}")
        table.add_row("batched toxicity ÷ one by one",
                      f"{result['batched_toxicity_over_one_by_one']:.2f}")  # fmt: skip
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
