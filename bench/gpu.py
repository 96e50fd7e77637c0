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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from throughput import batches, compare_scores, realistic_events, score_all, timed  # noqa: E402

from detectors.suite import DetectorSuite, SuiteConfig  # noqa: E402

COSINE_MIN = 0.999  # vectors: fp16 on CUDA against fp32 on the CPU
SCORE_DIFF_MAX = 0.05  # any detector's score
FLIPS_MAX = 0.01  # share of events changing side of 0.5, per detector


def agreement(cpu: list[Any], dev: list[Any]) -> dict[str, Any]:
    """``compare_scores`` of the device against the CPU, judged by the tolerances."""
    out = compare_scores(cpu, dev)
    ok = out["cosine_min"] >= COSINE_MIN
    for s in out["scores"].values():
        ok = ok and s["max_abs_diff"] <= SCORE_DIFF_MAX
        ok = ok and s["flagged_changed"] <= FLIPS_MAX * max(1, s["events"])
    out["within_tolerance"] = bool(ok)
    return out


def pipeline(device: str, events: int) -> dict[str, Any] | None:
    if events <= 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline.json"
        env = {**os.environ, "LLMPULSE_DEVICE": device}
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--events", str(events),
             "--cheap-events", "0", "--out", str(out)],  # models on the device only
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
    models_s = timed(lambda: score_all(dev, parts))

    sample = batches(events[: args.sample], args.batch)
    cpu = DetectorSuite(SuiteConfig(device="cpu", precision="fp32"))
    agree = agreement(score_all(cpu, sample), score_all(dev, sample))

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
        a = agree["scores"][name]
        print(f"| {name}: max diff, flipped of {a['events']} | {a['max_abs_diff']}, "
              f"{a['flagged_changed']} |")  # fmt: skip
    print(f"| within tolerance | {agree['within_tolerance']} |")
    if piped:
        print(f"| pipeline, publish -> stored | {piped['pipeline_events_per_s']:,} /s |")
    print(f"wrote {args.out}")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


if __name__ == "__main__":
    main()
