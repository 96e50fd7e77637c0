"""Baseline rules against absolute rules: false alarms per 100 deploys and detection delay.

Seeded simulation of the rules' decisions, not of the pipeline (the SQL and the
delivery run on real parts in tests/integration/test_baseline_sql.py and
tests/integration/test_baseline_alerting.py). The decision is the one the evaluator
makes (``alerting.significance.proportion_test``, vectorised here and checked against
it at start). Traffic is one event a second for each serving version, and the rule
looks every 5 seconds once both samples hold 100 events. The detector flags 10 % of
good answers and 25 % of bad ones, as the detector-quality issue measured on
realistic traffic; the baseline version answers 10 % badly.

- **A/A**: the new version answers as badly as the baseline; any alert is false.
  Run over a 1-hour and a 6-hour horizon (the rule's ``window``: how long a version
  is judged from its first event), and for rare rates (1 %, 0.1 % flagged).
- **Shift**: the new version answers 40 % (or 25 %) badly. The delay is the number of
  the new version's events when the rule first fires.

Baseline rules run against a ``concurrent`` baseline (it keeps serving beside the
candidate, as in a canary) and a ``stored`` one (it stopped), as the evaluator samples
them: the baseline's last ``window`` before the candidate (3,600 events for a 1-hour
window, 21,600 for 6 hours), plus what it serves since when it keeps serving. The
absolute rule is "flagged share over the last 10 minutes > T, for 1 minute, at least
100 events", with T tuned on separate A/A deploys to the baseline rule's false-alarm
rate over the same hour: generous to it, since a real absolute rule is set without
knowing each app's own flagged share.

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
from scipy.special import log_ndtr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerting.significance import MIN_EXPECTED, RATE_TAU, proportion_test  # noqa: E402

HOUR, LOOK_EVERY, MIN_EVENTS, WINDOW, FOR_LOOKS = 3600, 5, 100, 600, 12
FPR, TPR, BASE_BAD, ALPHA = 0.10, 0.25, 0.10, 0.05
CHUNK = 100  # deploys simulated at once (memory)


def flagged_share(bad: float) -> float:
    return bad * TPR + (1 - bad) * FPR


def p_values(nb: np.ndarray, kb: np.ndarray, nc: np.ndarray, kc: np.ndarray) -> np.ndarray:
    """``proportion_test(nb, kb, nc, kc).p_value`` over arrays."""
    pooled = (kb + kc) / (nb + nc)
    estimate = kc / nc - kb / nb
    v = pooled * (1 - pooled) * (1 / nb + 1 / nc)
    t2 = RATE_TAU * RATE_TAU
    with np.errstate(all="ignore"):
        log_lambda = (
            np.log(2.0) + 0.5 * np.log(v / (v + t2)) + estimate**2 * t2 / (2 * v * (v + t2))
            + log_ndtr(estimate * RATE_TAU / np.sqrt(v * (v + t2)))
        )  # fmt: skip
        p = np.minimum(1.0, np.exp(-log_lambda))
    judged = np.minimum(nb, nc) * np.minimum(pooled, 1 - pooled) >= MIN_EXPECTED
    return np.where(judged & (estimate > 0) & (v > 0), p, 1.0)


def check_against_library(rng: np.random.Generator) -> None:
    nb = rng.integers(30, 5000, 2000).astype(float)
    nc = rng.integers(30, 5000, 2000).astype(float)
    kb, kc = np.floor(nb * rng.random(2000) * 0.3), np.floor(nc * rng.random(2000) * 0.3)
    ours = p_values(nb, kb, nc, kc)
    lib = [proportion_test(int(a), int(b), int(c), int(d)).p_value
           for a, b, c, d in zip(nb, kb, nc, kc, strict=True)]  # fmt: skip
    assert np.allclose(ours, lib, rtol=1e-9, atol=1e-12), "vectorised test drifted from it"


def baseline_rule(
    rng: np.random.Generator, deploys: int, p_base: float, p_cand: float, mode: str, hours: int
) -> list[int]:
    """The candidate's events when the baseline rule first fires per deploy; 0: never."""
    horizon = HOUR * hours  # the rule's window: how long the candidate is judged
    looks = np.arange(LOOK_EVERY, horizon + 1, LOOK_EVERY)
    looks = looks[looks >= MIN_EVENTS]
    out: list[int] = []
    for start in range(0, deploys, CHUNK):
        d = min(CHUNK, deploys - start)
        cand = np.cumsum(rng.random((d, horizon)) < p_cand, axis=1)[:, looks - 1]
        nc = np.broadcast_to(looks, cand.shape).astype(float)
        # its last window before the candidate (one event a second), and what it serves since
        before = (rng.random((d, horizon)) < p_base).sum(axis=1)[:, None]
        if mode == "concurrent":
            since = np.cumsum(rng.random((d, horizon)) < p_base, axis=1)[:, looks - 1]
            kb, nb = before + since, horizon + nc
        else:
            kb = np.broadcast_to(before, cand.shape)
            nb = np.full(cand.shape, float(horizon))
        hit = p_values(nb, kb.astype(float), nc, cand.astype(float)) <= ALPHA
        out.extend(np.where(hit.any(axis=1), looks[hit.argmax(axis=1)], 0).tolist())
    return out


def absolute_peaks(rng: np.random.Generator, deploys: int, p: float) -> np.ndarray:
    """Per deploy and look, the share over the last 10 minutes held for 1 minute (the
    lowest over the last FOR_LOOKS looks): the rule fires once it exceeds T."""
    looks = np.arange(LOOK_EVERY, HOUR + 1, LOOK_EVERY)
    looks = looks[looks >= MIN_EVENTS]
    rows = []
    for start in range(0, deploys, CHUNK):
        d = min(CHUNK, deploys - start)
        flags = np.concatenate([np.zeros((d, 1)), np.cumsum(rng.random((d, HOUR)) < p, axis=1)], 1)
        starts = np.maximum(looks - WINDOW, 0)
        share = (flags[:, looks] - flags[:, starts]) / (looks - starts)
        held = np.full_like(share, -1.0)
        for i in range(FOR_LOOKS - 1, share.shape[1]):
            held[:, i] = share[:, i - FOR_LOOKS + 1 : i + 1].min(axis=1)
        rows.append(held)
    return np.concatenate(rows)


def absolute_delays(held: np.ndarray, threshold: float) -> list[int]:
    looks = np.arange(LOOK_EVERY, HOUR + 1, LOOK_EVERY)
    looks = looks[looks >= MIN_EVENTS]
    hit = held > threshold
    return np.where(hit.any(axis=1), looks[hit.argmax(axis=1)], 0).tolist()


def summary(delays: list[int]) -> dict[str, Any]:
    caught = [x for x in delays if x]
    n, share = len(delays), len(caught) / len(delays)
    half = 1.96 * (share * (1 - share) / n) ** 0.5
    return {
        "fired_per_100": round(100 * share, 1),
        "fired_per_100_ci95": [round(100 * max(0.0, share - half), 1),
                               round(100 * min(1.0, share + half), 1)],
        "median_delay_events": float(np.median(caught)) if caught else None,
    }  # fmt: skip


def run(deploys: int, seed: int) -> dict[str, Any]:
    p0 = flagged_share(BASE_BAD)
    shifts = {"40% bad": flagged_share(0.40), "25% bad": flagged_share(0.25)}
    rows: dict[str, Any] = {}
    for i, mode in enumerate(("concurrent", "stored")):
        rng = np.random.default_rng([seed, i])
        row = {f"aa_{h}h": summary(baseline_rule(rng, deploys, p0, p0, mode, h)) for h in (1, 6)}
        for rate in (0.01, 0.001):
            row[f"aa_rare_{rate:g}"] = summary(baseline_rule(rng, deploys, rate, rate, mode, 1))
            row[f"doubled_{rate:g}"] = summary(baseline_rule(rng, deploys, rate, 2 * rate, mode, 1))
        for name, p1 in shifts.items():
            row[name] = summary(baseline_rule(rng, deploys, p0, p1, mode, 1))
        rows[f"baseline rule, {mode} baseline"] = row
    target = rows["baseline rule, concurrent baseline"]["aa_1h"]["fired_per_100"] / 100
    peaks = absolute_peaks(np.random.default_rng([seed, 9]), deploys, p0).max(axis=1)
    threshold = float(np.quantile(peaks, 1 - target))
    rng = np.random.default_rng([seed, 10])
    row = {
        "threshold": round(threshold, 4),
        "aa_1h": summary(absolute_delays(absolute_peaks(rng, deploys, p0), threshold)),
    }
    for name, p1 in shifts.items():
        row[name] = summary(absolute_delays(absolute_peaks(rng, deploys, p1), threshold))
    rows["absolute rule, share over 10 min > T for 1 min"] = row
    return rows


def table(rows: dict[str, Any]) -> str:
    head = ("rule", "A/A 1 h", "A/A 6 h", "A/A 1 %", "A/A 0.1 %", "40 % bad: caught, median",
            "25 % bad: caught, median", "1 % doubled", "0.1 % doubled")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]

    def aa(r: dict[str, Any], key: str) -> str:
        if key not in r:
            return "-"
        lo, hi = r[key]["fired_per_100_ci95"]
        return f"{r[key]['fired_per_100']} [{lo}, {hi}]"

    for name, r in rows.items():
        shift = [f"{r[k]['fired_per_100']}, {r[k]['median_delay_events']}" if k in r else "-"
                 for k in ("40% bad", "25% bad", "doubled_0.01", "doubled_0.001")]  # fmt: skip
        label = name + (f" (T={r['threshold']})" if "threshold" in r else "")
        lines.append(" | ".join([label, aa(r, "aa_1h"), aa(r, "aa_6h"), aa(r, "aa_rare_0.01"),
                                 aa(r, "aa_rare_0.001"), *shift]))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/regression_alerts.json")
    args = parser.parse_args()
    started = time.perf_counter()
    check_against_library(np.random.default_rng(args.seed))
    rows = run(args.deploys, args.seed)
    result = {
        "what": "alert rules on seeded traffic: false alarms per 100 deploys and delay",
        "setup": {"deploys": args.deploys, "seed": args.seed, "events_per_s": 1,
                  "look_every_s": LOOK_EVERY, "min_events": MIN_EVENTS, "alpha": ALPHA,
                  "detector_fpr": FPR, "detector_tpr": TPR, "baseline_bad_share": BASE_BAD,
                  "stored_baseline_events": HOUR},
        "rules": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": platform.platform(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("false alarms per 100 deploys [95% CI]; shifts: caught per 100, median events")
    print(table(rows))
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
