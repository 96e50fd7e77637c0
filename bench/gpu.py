"""The GPU path in one script: models-only speed on CUDA, agreement with the CPU, and
publish → stored on a real worker.

1. **models-only**: the default detectors (``DetectorSuite``) on CUDA at the precision
   ``auto`` picks there (fp16), over the realistic mix of ``bench/throughput.py``
   (half RAG answers with their chunks, half chat turns), in micro-batches;
2. **agreement**: the same detectors on the CPU at fp32 against CUDA, on a sample: the
   minimum vector cosine, and per detector the largest score difference and how many
   events change side of the 0.5 threshold, against the tolerances below;
3. **pipeline**: ``bench/pipeline.py`` with ``LLMPULSE_DEVICE`` set to the device, a
   real worker (Tansu, Faust, chdb) timed from publish to stored.

The keep-up issue's target is 5,000 events/s on one H100 with the default detectors.
No test depends on this script or on a GPU. ``--device cpu`` with small counts runs
the same code on any machine (a smoke test, not a GPU figure).

Usage (GPU): ``HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py``
Smoke (CPU): ``HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py --device cpu --events 500
--sample 100 --pipeline-events 0``
Writes ``bench/results/gpu.json`` (or ``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from throughput import batches, realistic_events  # noqa: E402

from detectors.suite import DetectorSuite, SuiteConfig  # noqa: E402

COSINE_MIN = 0.999  # vectors: fp16 on CUDA against fp32 on the CPU
SCORE_DIFF_MAX = 0.05  # any detector's score
FLIPS_MAX = 0.01  # share of events changing side of 0.5, per detector


def scores_of(results: list[Any]) -> dict[str, list[float | None]]:
    return {
        "toxicity": [r.toxicity.scores["toxicity"] for r in results],
        "hallucination": [r.hallucination.score for r in results],
        "injection": [r.injection.score for r in results],
    }


def agreement(cpu: list[Any], dev: list[Any]) -> dict[str, Any]:
    a = np.stack([r.output_vector for r in cpu] + [r.input_vector for r in cpu])
    b = np.stack([r.output_vector for r in dev] + [r.input_vector for r in dev])
    cosine = (a * b).sum(axis=1)
    out: dict[str, Any] = {"cosine_min": round(float(cosine.min()), 6)}
    ok = bool(cosine.min() >= COSINE_MIN)
    cpu_scores, dev_scores = scores_of(cpu), scores_of(dev)
    for name, xs in cpu_scores.items():
        ys = dev_scores[name]
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
        diff = max((abs(x - y) for x, y in pairs), default=0.0)
        flips = sum((x >= 0.5) != (y >= 0.5) for x, y in pairs)
        out[name] = {"events": len(pairs), "max_abs_diff": round(diff, 5), "flipped": flips}
        ok = ok and diff <= SCORE_DIFF_MAX and flips <= FLIPS_MAX * max(1, len(pairs))
    out["within_tolerance"] = ok
    return out


def pipeline(device: str, events: int) -> dict[str, Any] | None:
    if events <= 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline.json"
        env = {**os.environ, "LLMPULSE_DEVICE": device}
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--events", str(events),
             "--out", str(out)],
            env=env, check=True,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2000, help="micro-batch size")
    parser.add_argument("--sample", type=int, default=500, help="events checked against CPU")
    parser.add_argument("--pipeline-events", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/gpu.json")
    args = parser.parse_args()

    events = realistic_events(args.events)
    parts = batches(events, args.batch)
    dev = DetectorSuite(SuiteConfig(device=args.device, precision="auto"))
    dev.score(parts[0])  # warm-up: kernels, allocations
    dev.embeddings.clear_cache()
    started = time.perf_counter()
    for part in parts:
        dev.score(part)
    models_s = time.perf_counter() - started

    sample = batches(events[: args.sample], args.batch)
    cpu = DetectorSuite(SuiteConfig(device="cpu", precision="fp32"))
    dev.embeddings.clear_cache()
    cpu_results = [r for b in sample for r in cpu.score(b)]
    dev_results = [r for b in sample for r in dev.score(b)]
    agree = agreement(cpu_results, dev_results)

    piped = pipeline(args.device, args.pipeline_events)
    result = {
        "what": "default detectors on a GPU: models-only, agreement with CPU fp32, pipeline",
        "device": dev.embeddings.device, "precision": dev.embeddings.precision,
        "gpu": _gpu_name(), "events": args.events, "batch": args.batch,
        "models_only_events_per_s": round(args.events / models_s, 1),
        "seconds_per_detector": {k: round(v, 2) for k, v in dev.seconds.items()},
        "agreement": agree,
        "tolerances": {"cosine_min": COSINE_MIN, "score_diff_max": SCORE_DIFF_MAX,
                       "flipped_share_max": FLIPS_MAX},
        "pipeline": piped,
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value |\n|---|---|")
    print(f"| device, precision | {result['device']} ({result['gpu']}), {result['precision']} |")
    print(f"| models-only, {args.events:,} events | {result['models_only_events_per_s']:,} /s |")
    print(f"| vector cosine to CPU fp32 (min) | {agree['cosine_min']} |")
    for name in ("toxicity", "hallucination", "injection"):
        a = agree[name]
        print(f"| {name}: max diff, flipped of {a['events']} | {a['max_abs_diff']}, "
              f"{a['flipped']} |")  # fmt: skip
    print(f"| within tolerance | {agree['within_tolerance']} |")
    if piped:
        print(f"| pipeline, publish -> stored | {piped['pipeline_events_per_s']:,} /s |")
    print(f"wrote {args.out}")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


if __name__ == "__main__":
    main()
