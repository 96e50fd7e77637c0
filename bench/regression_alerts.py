"""Baseline rules against absolute rules: false alarms per 100 deploys and detection delay.

Seeded simulation of the rules' decisions, not of the pipeline (the SQL and the
delivery are covered by tests/integration/test_baseline_sql.py and
tests/integration/test_baseline_alerting.py). Every deploy is an hour of traffic at one
event a second, and the rule looks every 5 seconds once it has 100 events (720 looks).
The detector flags 10 % of good answers and 25 % of bad ones, as the detector-quality
issue measured for realistic traffic. The baseline version answers 10 % badly.

- **A/A**: the new version answers as badly as the baseline. Any alert is false.
- **Shift**: the new version answers 40 % (or 25 %) badly. The delay is the number of
  the new version's events when the rule first fires.

Baseline rules run in both settings: ``concurrent`` (the baseline keeps serving, as in
a canary) and ``stored`` (the baseline stopped; its last hour, 3,600 events, is the
reference). The absolute rule is "flagged share over the last 10 minutes > T" (and a
variant over everything since the deploy). T is tuned on separate A/A deploys to the
baseline rule's false-alarm rate, which is generous to it: a real absolute rule is
set without knowing each app's own rate.

Usage: ``.venv/bin/python bench/regression_alerts.py [--deploys 1000] [--seed 1]``
Writes ``bench/results/regression_alerts.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerting.significance import proportion_test  # noqa: E402

HOUR, LOOK_EVERY, MIN_EVENTS, WINDOW = 3600, 5, 100, 600
FPR, TPR, BASE_BAD, ALPHA = 0.10, 0.25, 0.10, 0.05
LOOKS = np.arange(LOOK_EVERY, HOUR + 1, LOOK_EVERY)
LOOKS = LOOKS[LOOKS >= MIN_EVENTS]


def flagged_share(bad: float) -> float:
    return bad * TPR + (1 - bad) * FPR


def baseline_rule(rng: np.random.Generator, p_base: float, p_cand: float, mode: str) -> int:
    """The candidate's events when the baseline rule first fires; 0: never."""
    cand = np.cumsum(rng.random(HOUR) < p_cand)
    if mode == "concurrent":
        base = np.cumsum(rng.random(HOUR) < p_base)
    else:
        stored = int((rng.random(HOUR) < p_base).sum())
    for t in LOOKS:
        nb, kb = (int(t), int(base[t - 1])) if mode == "concurrent" else (HOUR, stored)
        if proportion_test(nb, kb, int(t), int(cand[t - 1])).p_value <= ALPHA:
            return int(t)
    return 0


def absolute_rates(rng: np.random.Generator, p: float, window: int | None) -> np.ndarray:
    """The flagged share the absolute rule sees at each look (sliding or cumulative)."""
    flags = np.concatenate([[0], np.cumsum(rng.random(HOUR) < p)])
    starts = np.zeros_like(LOOKS) if window is None else np.maximum(LOOKS - window, 0)
    return (flags[LOOKS] - flags[starts]) / (LOOKS - starts)


def absolute_delay(rates: np.ndarray, threshold: float) -> int:
    hits = np.nonzero(rates > threshold)[0]
    return int(LOOKS[hits[0]]) if hits.size else 0


def summary(delays: list[int]) -> dict[str, Any]:
    caught = [d for d in delays if d]
    n = len(delays)
    share = len(caught) / n
    half = 1.96 * (share * (1 - share) / n) ** 0.5
    return {
        "fired_per_100": round(100 * share, 1),
        "fired_per_100_ci95": [round(100 * max(0.0, share - half), 1),
                               round(100 * min(1.0, share + half), 1)],
        "median_delay_events": float(np.median(caught)) if caught else None,
        "delay_iqr_events": [float(x) for x in np.percentile(caught, [25, 75])] if caught else None,
    }  # fmt: skip


def run(deploys: int, seed: int) -> dict[str, Any]:
    p0 = flagged_share(BASE_BAD)
    shifts = {"10% -> 40% bad": flagged_share(0.40), "10% -> 25% bad": flagged_share(0.25)}
    rows: dict[str, Any] = {}
    for mode in ("concurrent", "stored"):
        rng = np.random.default_rng([seed, 1 if mode == "concurrent" else 2])
        aa = summary([baseline_rule(rng, p0, p0, mode) for _ in range(deploys)])
        row = {"aa": aa}
        for name, p1 in shifts.items():
            row[name] = summary([baseline_rule(rng, p0, p1, mode) for _ in range(deploys)])
        rows[f"baseline rule ({mode})"] = row
    target = rows["baseline rule (concurrent)"]["aa"]["fired_per_100"] / 100
    for label, window in (("10 min", WINDOW), ("since deploy", None)):
        tune = np.random.default_rng([seed, 3])
        peaks = [absolute_rates(tune, p0, window).max() for _ in range(deploys)]
        threshold = float(np.quantile(peaks, 1 - target))  # fires on `target` of A/A deploys
        rng = np.random.default_rng([seed, 4])
        aa = summary([absolute_delay(absolute_rates(rng, p0, window), threshold)
                      for _ in range(deploys)])  # fmt: skip
        row = {"threshold": round(threshold, 4), "aa": aa}
        for name, p1 in shifts.items():
            row[name] = summary(
                [absolute_delay(absolute_rates(rng, p1, window), threshold) for _ in range(deploys)]
            )
        rows[f"absolute rule, share over {label} > T"] = row
    return rows


def table(rows: dict[str, Any]) -> str:
    head = ("rule", "A/A alarms /100 [95% CI]", "40%: caught /100", "median events",
            "25%: caught /100", "median events")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, r in rows.items():
        a, s40, s25 = r["aa"], r["10% -> 40% bad"], r["10% -> 25% bad"]
        lo, hi = a["fired_per_100_ci95"]
        lines.append(" | ".join([
            name + (f" (T={r['threshold']})" if "threshold" in r else ""),
            f"{a['fired_per_100']} [{lo}, {hi}]",
            f"{s40['fired_per_100']}", f"{s40['median_delay_events']}",
            f"{s25['fired_per_100']}", f"{s25['median_delay_events']}",
        ]))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/regression_alerts.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.deploys, args.seed)
    result = {
        "what": "alert rules on seeded traffic: A/A false alarms and detection delay",
        "setup": {"deploys": args.deploys, "seed": args.seed, "hour_events": HOUR,
                  "look_every_s": LOOK_EVERY, "min_events": MIN_EVENTS, "alpha": ALPHA,
                  "detector_fpr": FPR, "detector_tpr": TPR, "baseline_bad_share": BASE_BAD},
        "rules": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": platform.platform(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
