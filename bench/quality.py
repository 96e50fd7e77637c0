"""Detector quality: the hand-written dev sets in ``bench/devsets`` first, then the
labelled public datasets in ``../shared/datasets``.

Dev sets (written by hand to look like production traffic, with bootstrap 95 %
intervals): PII, ``pii.jsonl`` (rules were tuned on it) and ``pii_heldout.jsonl``
(written after; measured with the old rules and once with the new, no change
prompted by it); hallucination,
``rag.jsonl``: 150 answers over 30 retrieved contexts of 3-4 chunks, 81 grounded
(paraphrase, combining chunks, arithmetic on context figures, "the context does
not say", distractor chunks) and 69 not (wrong scope, a figure moved to another
item, a number reused for the wrong thing, invented policies and entities, added
details, acknowledgement reported as completion), and ``rag_heldout.jsonl``: 80
answers over 16 other domains (40 grounded, 40 not, the same kinds), written by a
second author who never saw the detector. It was first measured after the claim
checks were tuned on ``rag.jsonl``; then the errors on its domains 01-08 were
read and prompted generic fixes (cents and pence, clock times, percentage points,
figures computed across sentences), so domains 09-16 are reported apart as the
part nothing was tuned on; injection, ``injection.jsonl``:
75 attacks (direct and paraphrased overrides, fake authority, role-play,
system-prompt exfiltration, indirect injections in pasted emails, CVs, contracts,
reviews and web copy, base64/hex/ROT13/reversed/leetspeak/spelled/split
obfuscation, seven languages) and 75 benign inputs that use the same trigger words,
and ``injection_heldout.jsonl`` (30 and 30, written after the rules and the head's
synthetic training rows were, in other words);
toxicity, ``toxicity.jsonl``: 40 rude or condescending support replies, mostly
without a swear word, and 40 polite or neutral ones that say "kill", "abort",
"murder", medicine, history, fiction and summaries of angry emails, and
``toxicity_heldout.jsonl`` (20 and 20, written after the head's synthetic rows), and
``toxicity_blind.jsonl`` (40 and 40, by a second author who read neither the
detector nor the other sets; scored once, after the condescension rules), and
``toxicity_blind2.jsonl`` (50 and 50, by a third author who saw nothing of the
detector, its training replies or the other sets; scored once, after the tone model
was trained), ``toxicity_blind3.jsonl`` (120 polite and 60 rude, by a fourth author
who saw nothing of the detector, its data or the other sets; scored once, after the
polite-flagging work), and all five pooled. The first four are tuning data now: their
errors were read to write ``scripts/data/toxicity_replies_3.jsonl``.

The datasets become ordinary llmpulse events, are scored by ``llmpulse score``
(the same detectors the worker runs), and are measured on the rows no head was
trained on (``detectors.heads.is_holdout``):

* hallucination: AUROC on the sets with context (HaluEval QA, FRANK), and the
  coverage (NULL share) on the context-free sets, where the contract says NULL;
* prompt injection: AUROC overall and per sub-source;
* toxicity: AUROC of the shipped model (the MiniLM head unless a Detoxify
  checkpoint is configured);
* PII: event-level precision/recall, and per-kind span figures.

Usage: ``.venv/bin/python bench/quality.py [--datasets DIR]``
Writes ``bench/results/quality.json`` and prints a table.
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
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intervals import bootstrap  # noqa: E402
from bench.quality_hallucination import evaluate_hallucination  # noqa: E402
from bench.quality_pii import evaluate_pii, evaluate_pii_devset  # noqa: E402
from core.thresholds import FLAG_AT, flagged  # noqa: E402
from detectors.heads import is_holdout  # noqa: E402

console = Console()
TS = "2026-11-01T00:00:00Z"
HALLUCINATION_SETS = ("halueval_qa", "frank_summaries", "halueval_general", "truthfulqa")
TOXICITY_DEVSETS = (
    "toxicity",
    "toxicity_heldout",
    "toxicity_blind",
    "toxicity_blind2",
    "toxicity_blind3",
)
TOXICITY_SETS = ("toxicity_davidson", "toxicity_toxigen_seeds")
DEVSETS = ROOT / "bench" / "devsets"
PII_DEVSETS = ("pii", "pii_heldout")


def _rows(folder: Path, name: str) -> Iterator[dict[str, Any]]:
    with open(folder / f"{name}.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _event(dataset: str, row: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{dataset}:{row['id']}", "ts": TS, "app": f"eval-{dataset}",
            "model": "gpt-4o-mini", "input": "", "output": "", **fields}  # fmt: skip


def build_events(folder: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every dataset row as an event, and the row behind each event id."""
    events, rows = [], {}
    for name in HALLUCINATION_SETS:
        for row in _rows(folder, name):
            context = [row["context"]] if row["context"] else None
            question = row["question"]  # FRANK has none, as in training
            events.append(_event(name, row, input=question, output=row["answer"],
                                 **({"context": context} if context else {})))  # fmt: skip
            rows[events[-1]["event_id"]] = {**row, "dataset": name}
    for name in TOXICITY_SETS:
        for row in _rows(folder, name):
            events.append(_event(name, row, output=row["text"]))
            rows[events[-1]["event_id"]] = {**row, "dataset": name}
    for name, field in (("injection_jailbreak", "input"), ("pii_presidio_synth", "input")):
        for row in _rows(folder, name):
            events.append(_event(name, row, **{field: row["text"]}))
            rows[events[-1]["event_id"]] = {**row, "dataset": name}
    for name in ("injection", "injection_heldout"):
        for row in _rows(DEVSETS, name):
            events.append(_event(f"dev-{name}", row, input=row["text"]))
            rows[events[-1]["event_id"]] = {**row, "dataset": f"dev-{name}"}
    for name in TOXICITY_DEVSETS:
        for row in _rows(DEVSETS, name):
            events.append(_event(f"dev-{name}", row, output=row["text"]))
            rows[events[-1]["event_id"]] = {**row, "dataset": f"dev-{name}"}
    for name in ("rag", "rag_heldout"):
        for row in _rows(DEVSETS, name):
            events.append(_event(f"dev-{name}", row, input=row["question"],
                                 output=row["answer"], context=row["context"]))  # fmt: skip
            rows[events[-1]["event_id"]] = {**row, "dataset": f"dev-{name}"}
    for name in PII_DEVSETS:
        for i, row in enumerate(_rows(DEVSETS, name)):
            events.append(_event(f"dev-{name}", {"id": i}, input=row["text"]))
            rows[events[-1]["event_id"]] = {**row, "dataset": f"dev-{name}", "index": i}
    return events, rows


def binary_devset(
    rows: dict,
    scored: dict,
    dataset: str | tuple[str, ...],
    score: Callable[[dict], float | None],
    where: Callable[[dict], bool] = lambda r: True,
) -> dict[str, Any]:
    """AUROC on a hand-written dev set (or several, pooled) and the share of each class
    flagged at the default threshold (FLAG_AT), with bootstrap 95 % intervals, and the
    mean score by kind."""
    names = (dataset,) if isinstance(dataset, str) else dataset
    picked = [(r["label"], score(scored[eid]), r.get("kind", "")) for eid, r in rows.items()
              if r["dataset"] in names and where(r)]  # fmt: skip
    pairs = [(y, s) for y, s, _ in picked if s is not None]

    def share_flagged(label: int) -> Callable[[Sequence[tuple[int, float]]], float | None]:
        def share(ps: Sequence[tuple[int, float]]) -> float | None:
            of_label = [s for y, s in ps if y == label]
            return sum(flagged(s) for s in of_label) / len(of_label) if of_label else None

        return share

    by_kind: dict[str, list[float]] = defaultdict(list)
    for _y, s, kind in picked:
        if kind and s is not None:
            by_kind[kind].append(s)
    return {
        "rows": len(picked),
        "null_scores": len(picked) - len(pairs),
        "calibration": _calibration(pairs),
        "auroc": bootstrap(pairs, lambda ps: _auroc([y for y, _ in ps], [s for _, s in ps])),
        "negatives_flagged": bootstrap(pairs, share_flagged(0)),
        "positives_flagged": bootstrap(pairs, share_flagged(1)),
        "mean_score_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())},
    }


def _calibration(pairs: Sequence[tuple[int, float]]) -> list[dict[str, Any]]:
    """Per score band, the mean score next to the share that is truly positive: where
    0.5 is meant to read as even odds, the two should be close."""
    bands = []
    for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01)):
        inside = [(y, s) for y, s in pairs if lo <= s < hi]
        if inside:
            bands.append({
                "band": f"[{lo}, {hi})" if hi <= 1 else f"[{lo}, 1.0]", "n": len(inside),
                "mean_score": round(sum(s for _, s in inside) / len(inside), 3),
                "positive_share": round(sum(y for y, _ in inside) / len(inside), 3),
            })  # fmt: skip
    return bands


def _unread(row: dict) -> bool:
    return int(str(row["id"]).split("-")[1]) >= 9


def devsets(rows: dict, scored: dict) -> dict[str, Any]:
    """Every hand-written dev set: positives are hallucinated answers, attacks and rude
    replies; negatives grounded answers, benign inputs and polite replies."""
    return {
        "hallucination": binary_devset(rows, scored, "dev-rag", lambda s: s["hallucination"]),
        "hallucination_heldout": binary_devset(
            rows, scored, "dev-rag_heldout", lambda s: s["hallucination"]
        ),
        # Domains 09-16 of the held-out set were never read while the checks changed.
        "hallucination_heldout_unread": binary_devset(
            rows, scored, "dev-rag_heldout", lambda s: s["hallucination"], _unread
        ),
        "injection": binary_devset(rows, scored, "dev-injection", lambda s: s["injection"]),
        "injection_heldout": binary_devset(
            rows, scored, "dev-injection_heldout", lambda s: s["injection"]
        ),
        "toxicity": binary_devset(
            rows, scored, "dev-toxicity", lambda s: s["toxicity"]["toxicity"]
        ),
        "toxicity_blind": binary_devset(
            rows, scored, "dev-toxicity_blind", lambda s: s["toxicity"]["toxicity"]
        ),
        "toxicity_heldout": binary_devset(
            rows, scored, "dev-toxicity_heldout", lambda s: s["toxicity"]["toxicity"]
        ),
        "toxicity_blind2": binary_devset(
            rows, scored, "dev-toxicity_blind2", lambda s: s["toxicity"]["toxicity"]
        ),
        # by a fourth author who saw nothing of the detector; scored once, after the
        # polite-flagging work (docs/detectors.md)
        "toxicity_blind3": binary_devset(
            rows, scored, "dev-toxicity_blind3", lambda s: s["toxicity"]["toxicity"]
        ),
        "toxicity_pooled": binary_devset(
            rows,
            scored,
            tuple(f"dev-{n}" for n in TOXICITY_DEVSETS),
            lambda s: s["toxicity"]["toxicity"],
        ),
        "pii": pii_devsets(rows, scored),
    }


def pii_devsets(rows: dict, scored: dict) -> dict[str, Any]:
    """Micro F1 over (text, kind) pairs as ``llmpulse score`` reports them."""
    out = {}
    for name in PII_DEVSETS:
        found = {r["index"]: set(scored[eid]["pii"]) for eid, r in rows.items()
                 if r["dataset"] == f"dev-{name}"}  # fmt: skip
        out[name] = evaluate_pii_devset(DEVSETS / f"{name}.jsonl", found)
    return out


def run_score(events: list[dict[str, Any]], workdir: Path) -> tuple[dict[str, dict], float]:
    src, dst = workdir / "events.jsonl", workdir / "scored.jsonl"
    src.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    # fp32 unless asked: the reference figures must not depend on the CPU's bf16 support.
    env = {"LLMPULSE_PRECISION": "fp32", **os.environ, "HF_HUB_OFFLINE": "1",
           "LLMPULSE_HOME": str(workdir / "home")}  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "llmpulse.cli", "score", str(src), "-o", str(dst)],
                   env=env, check=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    scored = {}
    # split on "\n" only: str.splitlines() also breaks at U+2028, which some rows hold
    for line in dst.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        obj = json.loads(line)
        scored[obj["event_id"]] = obj["scores"]
    return scored, elapsed


def _auroc(labels: list[int], scores: list[float]) -> float | None:
    return round(float(roc_auc_score(labels, scores)), 4) if len(set(labels)) == 2 else None


def injection_quality(rows: dict, scored: dict) -> dict[str, Any]:
    name = "injection_jailbreak"
    held = [(r, scored[eid]["injection"]) for eid, r in rows.items()
            if r["dataset"] == name and is_holdout(name, r["id"])]  # fmt: skip
    labels, scores = [r["label"] for r, _ in held], [s for _, s in held]
    per_group: dict[str, Any] = {}
    groups = defaultdict(list)
    for r, s in held:
        groups[r["group"].split("/")[0]].append((r["label"], s))
    for group, items in sorted(groups.items()):
        label = items[0][0]
        others = [(lb, s) for r, s in held for lb in [r["label"]] if lb != label]
        both = items + others
        per_group[group] = {"n": len(items), "label": label,
                            "auroc_vs_other_label": _auroc([lb for lb, _ in both],
                                                           [s for _, s in both])}  # fmt: skip
    return {"n_holdout": len(held), "auroc": _auroc(labels, scores), "per_group": per_group}


def toxicity_quality(rows: dict, scored: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pooled_l, pooled_s = [], []
    for name in TOXICITY_SETS:
        held = [(r["label"], scored[eid]["toxicity"]["toxicity"]) for eid, r in rows.items()
                if r["dataset"] == name and is_holdout(name, r["id"])]  # fmt: skip
        out[name] = {"n_holdout": len(held), "auroc": _auroc(*map(list, zip(*held, strict=True)))}
        pooled_l += [lb for lb, _ in held]
        pooled_s += [s for _, s in held]
    out["pooled"] = {"n_holdout": len(pooled_l), "auroc": _auroc(pooled_l, pooled_s)}
    return out


def pii_quality(rows: dict, scored: dict, folder: Path) -> dict[str, Any]:
    """Event-level figures from ``llmpulse score``; span-level from the detector itself."""
    tp = fp = fn = tn = 0
    for eid, r in rows.items():
        if r["dataset"] != "pii_presidio_synth":
            continue
        found = bool(scored[eid]["pii"])
        tp += found and r["label"] == 1
        fp += found and r["label"] == 0
        fn += (not found) and r["label"] == 1
        tn += (not found) and r["label"] == 0
    return {
        "event_level_all_rows": {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                                 "precision": round(tp / max(tp + fp, 1), 4),
                                 "recall": round(tp / max(tp + fn, 1), 4)},
        "detector": evaluate_pii(folder / "pii_presidio_synth.jsonl"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    args = parser.parse_args()
    events, rows = build_events(args.datasets)
    console.print(f"scoring {len(events):,} dataset rows with `llmpulse score`…")
    with tempfile.TemporaryDirectory() as tmp:
        scored, elapsed = run_score(events, Path(tmp))
    hallucination = evaluate_hallucination(
        [(r, scored[eid]) for eid, r in rows.items() if r["dataset"] in HALLUCINATION_SETS]
    )
    result = {
        "devsets": devsets(rows, scored),
        "hallucination": hallucination,
        "injection": injection_quality(rows, scored),
        "toxicity": toxicity_quality(rows, scored),
        "pii": pii_quality(rows, scored, args.datasets),
        "events_scored": len(scored),
        "score_seconds": round(elapsed, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


def _print(result: dict[str, Any]) -> None:
    table = Table("detector", "measure", "value", title="llmpulse detector quality (holdout)")
    names = {
        "hallucination": ("grounded", "hallucinated"),
        "hallucination_heldout": ("grounded", "hallucinated"),
        "hallucination_heldout_unread": ("grounded", "hallucinated"),
        "injection": ("benign", "attacks"),
        "injection_heldout": ("benign", "attacks"),
        "toxicity": ("polite", "rude"),
        "toxicity_heldout": ("polite", "rude"),
        "toxicity_blind": ("polite", "rude"),
        "toxicity_blind2": ("polite", "rude"),
        "toxicity_pooled": ("polite", "rude"),
    }
    for detector, (neg, pos) in names.items():
        dev = result["devsets"][detector]
        for key, label in (("auroc", "AUROC"),
                           ("negatives_flagged", f"{neg} flagged at {FLAG_AT}"),
                           ("positives_flagged", f"{pos} flagged at {FLAG_AT}")):  # fmt: skip
            f = dev[key]
            table.add_row(detector, f"dev set (n={dev['rows']}): {label}, 95% CI",
                          f"{f['value']} [{f['ci95'][0]}, {f['ci95'][1]}]")  # fmt: skip
    for name, dev in result["devsets"]["pii"].items():
        f1 = dev["f1"]
        table.add_row("pii", f"dev set {name} (n={dev['rows']}): F1, 95% CI",
                      f"{f1['value']} [{f1['ci95'][0]}, {f1['ci95'][1]}]")  # fmt: skip
    for key, value in sorted(_flatten(result["hallucination"], "hallucination").items()):
        table.add_row(*key.split(".", 1), str(value))
    inj = result["injection"]
    table.add_row("injection", "auroc", str(inj["auroc"]))
    for group, g in inj["per_group"].items():
        table.add_row("injection", f"auroc {group} (n={g['n']})", str(g["auroc_vs_other_label"]))
    for name, t in result["toxicity"].items():
        table.add_row("toxicity", f"auroc {name} (n={t['n_holdout']})", str(t["auroc"]))
    pii = result["pii"]["event_level_all_rows"]
    table.add_row("pii", "event precision / recall, all direct PII",
                  f"{pii['precision']} / {pii['recall']}")  # fmt: skip
    covered = result["pii"]["detector"]["event"]
    table.add_row("pii", "event precision / recall, covered kinds",
                  f"{covered['precision']} / {covered['recall']}")  # fmt: skip
    console.print(table)


def _flatten(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}.{k}"))
        elif not isinstance(v, list):
            flat[f"{prefix}.{k}"] = v
    return flat


if __name__ == "__main__":
    main()
