"""PII detector quality and speed: the hand-written dev set first, then Presidio's.

``bench/devsets/pii.jsonl`` holds 100 texts written by hand the way users and
LLM replies write them (support messages, pasted logs, several countries' phone
formats, obfuscated emails) with hard negatives that look like PII (versions,
order and tracking numbers, prices, dates, coordinates). Its figure is micro F1
over (text, kind) pairs for the covered kinds, with a bootstrap 95 % interval.

The Presidio synthetic set follows. The rules have no learned parameters, so every
row is test data; but the phone cue words and card prefixes were chosen while
looking at that file, so treat its figures as optimistic for text unlike its
templates.

Usage: ``.venv/bin/python bench/quality_pii.py [--devset PATH] [--data PATH] [--out JSON]``.
``bench/quality.py`` calls :func:`evaluate_pii_devset` and :func:`evaluate_pii`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intervals import bootstrap  # noqa: E402
from detectors.pii import _resolve, find_pii  # noqa: E402

__all__ = ["GOLD_TO_KIND", "evaluate_pii", "evaluate_pii_devset"]

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "pii_presidio_synth.jsonl"
DEFAULT_DEVSET = ROOT / "bench" / "devsets" / "pii.jsonl"
GOLD_TO_KIND = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip_address",
    "US_SSN": "us_ssn",
}
# The dataset's "direct" types that no pattern here attempts.
UNCOVERED_DIRECT = ("PERSON", "STREET_ADDRESS", "US_DRIVER_LICENSE")


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _speed(texts: list[str], repeat: int = 5) -> dict[str, float]:
    """Texts/s for uncached detection (the cache would otherwise answer repeats)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            _resolve(t)
        best = min(best, time.perf_counter() - t0)
    chars = sum(map(len, texts))
    return {"texts_per_s": round(len(texts) / best), "mb_per_s": round(chars / best / 1e6, 2)}


def _micro(pairs: list[tuple[set[str], set[str]]]) -> dict[str, float | None]:
    tp = sum(len(g & p) for g, p in pairs)
    fp = sum(len(p - g) for g, p in pairs)
    fn = sum(len(g - p) for g, p in pairs)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "f1": f1}


def evaluate_pii_devset(
    path: str | Path = DEFAULT_DEVSET, found: dict[int, set[str]] | None = None
) -> dict[str, Any]:
    """Micro precision/recall/F1 over (text, kind) pairs, covered kinds only, with
    bootstrap 95 % intervals. ``found`` (row index -> kinds) comes from ``llmpulse
    score`` when given; else the detector runs here on each text."""
    rows = [json.loads(line) for line in Path(path).read_text().split("\n") if line.strip()]
    covered = set(GOLD_TO_KIND.values())
    pairs = []
    errors: list[str] = []
    for i, row in enumerate(rows):
        gold = set(row["kinds"]) & covered
        pred = found[i] if found is not None else {m.kind for m in find_pii(row["text"])}
        pred = pred & covered
        pairs.append((gold, pred))
        if gold != pred:
            errors.append(f"{sorted(gold)} got {sorted(pred)}: {row['text']}")
    point = _micro(pairs)
    figures = {
        name: bootstrap(pairs, lambda ps, name=name: _micro(list(ps))[name])
        for name in ("precision", "recall", "f1")
    }
    per_kind = {
        kind: _micro([({kind} & g, {kind} & p) for g, p in pairs]) for kind in sorted(covered)
    }
    return {
        "dataset": Path(path).name,
        "rows": len(rows),
        "rows_with_pii": sum(bool(g) for g, _ in pairs),
        **figures,
        "per_kind": {
            k: {m: None if v is None else round(v, 4) for m, v in f.items()}
            for k, f in per_kind.items()
        },
        "point": {k: None if v is None else round(v, 4) for k, v in point.items()},
        "errors": errors,
    }


def evaluate_pii(path: str | Path = DEFAULT_DATA) -> dict[str, Any]:
    """Event- and span-level precision/recall of :func:`find_pii`, plus its speed."""
    rows = [json.loads(line) for line in Path(path).read_text().split("\n") if line.strip()]
    tp = fp = fn = tn = 0
    flagged_label1 = label1 = flagged_label0 = 0
    covered_label1 = flagged_covered_label1 = 0
    per_kind = {k: Counter() for k in GOLD_TO_KIND.values()}
    examples: dict[str, list[str]] = {"false_positive": [], "false_negative": []}
    for row in rows:
        text = row["text"]
        found = find_pii(text)
        gold = [
            (GOLD_TO_KIND[s["type"]], (s["start"], s["end"]))
            for s in row["spans"]
            if s["type"] in GOLD_TO_KIND
        ]
        hit, truth = bool(found), bool(gold)
        tp += hit and truth
        fp += hit and not truth
        fn += truth and not hit
        tn += not hit and not truth
        if row["label"] == 1:
            label1 += 1
            flagged_label1 += hit
            covered_label1 += truth
            flagged_covered_label1 += hit and truth
        else:
            flagged_label0 += hit
        for m in found:  # span precision: a prediction is right if it overlaps gold of its kind
            ok = any(k == m.kind and _overlaps((m.start, m.end), g) for k, g in gold)
            per_kind.setdefault(m.kind, Counter())["pred"] += 1
            per_kind[m.kind]["pred_ok"] += ok
            if not ok and len(examples["false_positive"]) < 10:
                examples["false_positive"].append(f"{m.kind}: {text[m.start : m.end]!r}")
        for kind, g in gold:  # span recall: gold is found if a same-kind prediction overlaps
            ok = any(m.kind == kind and _overlaps((m.start, m.end), g) for m in found)
            exact = any(m.kind == kind and (m.start, m.end) == g for m in found)
            per_kind[kind]["gold"] += 1
            per_kind[kind]["gold_found"] += ok
            per_kind[kind]["gold_exact"] += exact
            if not ok and len(examples["false_negative"]) < 10:
                examples["false_negative"].append(f"{kind}: {text[g[0] : g[1]]!r}")
    kinds = {
        kind: {
            "gold": c["gold"],
            "predicted": c["pred"],
            "precision": _ratio(c["pred_ok"], c["pred"]),
            "recall": _ratio(c["gold_found"], c["gold"]),
            "exact_span_recall": _ratio(c["gold_exact"], c["gold"]),
        }
        for kind, c in per_kind.items()
    }
    gold_types = Counter(s["type"] for row in rows for s in row["spans"])
    return {
        "dataset": Path(path).name,
        "rows": len(rows),
        "event": {
            "definition": "row has a gold span of a covered type (" + ", ".join(GOLD_TO_KIND) + ")",
            "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
        },
        "label1": {
            "rows": label1,
            "recall_all_direct": _ratio(flagged_label1, label1),
            "rows_with_covered_types": covered_label1,
            "recall_covered_only": _ratio(flagged_covered_label1, covered_label1),
            "label0_flagged": flagged_label0,
        },
        "span": kinds,
        "uncovered_gold_types": {
            t: n for t, n in gold_types.most_common() if t not in GOLD_TO_KIND
        },
        "uncovered_direct_types": list(UNCOVERED_DIRECT),
        "examples": examples,
        "speed": _speed([row["text"] for row in rows]),
        # the same text in ~1.3k-char prompts, closer to what the worker sees
        "speed_joined_16": _speed(
            ["\n".join(r["text"] for r in rows[i : i + 16]) for i in range(0, len(rows), 16)]
        ),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devset", type=Path, default=DEFAULT_DEVSET)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dev = evaluate_pii_devset(args.devset)
    print(f"{dev['dataset']} (hand-written, {dev['rows']} texts, {dev['rows_with_pii']} with PII):")
    for name in ("precision", "recall", "f1"):
        f = dev[name]
        print(f"  {name:<9} {f['value']}  95% CI {f['ci95'][0]}-{f['ci95'][1]}")
    print(f"{'  kind':<14} {'prec':>7} {'recall':>7} {'f1':>7}")
    for kind, f in dev["per_kind"].items():
        print(f"  {kind:<12} {f['precision']!s:>7} {f['recall']!s:>7} {f['f1']!s:>7}")
    for err in dev["errors"]:
        print(f"  wrong: {err}")
    result = evaluate_pii(args.data)
    ev, l1 = result["event"], result["label1"]
    print(f"{result['dataset']}: {result['rows']} rows")
    print(f"event  precision {ev['precision']}  recall {ev['recall']}  "
          f"(tp {ev['tp']} fp {ev['fp']} fn {ev['fn']} tn {ev['tn']})")  # fmt: skip
    print(f"label=1 recall: all direct types {l1['recall_all_direct']} "
          f"({l1['rows']} rows); covered types only {l1['recall_covered_only']} "
          f"({l1['rows_with_covered_types']} rows)")  # fmt: skip
    print(f"{'kind':<12} {'gold':>5} {'pred':>5} {'prec':>7} {'recall':>7} {'exact':>7}")
    for kind, s in result["span"].items():
        print(f"{kind:<12} {s['gold']:>5} {s['predicted']:>5} {s['precision']!s:>7} "
              f"{s['recall']!s:>7} {s['exact_span_recall']!s:>7}")  # fmt: skip
    print("not covered:", result["uncovered_gold_types"])
    for name, items in result["examples"].items():
        for item in items:
            print(f"  {name}: {item}")
    sp = result["speed"]
    lg = result["speed_joined_16"]
    print(f"speed: {sp['texts_per_s']} texts/s, {sp['mb_per_s']} MB/s (one core, uncached); "
          f"16 rows joined: {lg['texts_per_s']} texts/s, {lg['mb_per_s']} MB/s")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"devset": dev, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
