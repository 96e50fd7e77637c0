"""Fuzz event validation: a generated malformed corpus, then coverage-guided atheris.

1. **Corpus**: N payloads (default 100,000) made by breaking valid events: byte flips,
   truncation, junk spliced in, fields replaced by wrong types, deep nesting, oversize
   values, invalid UTF-8, lone-surrogate escapes. Every one goes through
   ``parse_event``; no exception may escape, every rejection must name a field and a
   rule. Reports events/s on malformed input and the rejection fields.
2. **atheris** (libFuzzer, coverage-guided) runs ``parse_event`` on N inputs in a child
   process; any exception is a crash and fails the run.

Usage::

    .venv/bin/python -m pip install -r bench/requirements-fuzz.txt
    .venv/bin/python bench/fuzz_events.py [--runs 100000] [--atheris-runs 100000]

Writes ``bench/results/fuzz_events.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.schema import LIMITS, Event, Rejection, parse_event  # noqa: E402
from ingest.synthetic import synthetic_events  # noqa: E402

console = Console(width=120)
RESULTS = ROOT / "bench" / "results" / "fuzz_events.json"
WRONG = [None, True, -1, 1e308, "", "x" * 300, [], {}, [1, [2, [3]]], {"a": {"b": 1}}]


def broken(rng: random.Random, base: list[dict]) -> bytes:
    event = dict(rng.choice(base))
    raw = json.dumps(event).encode()
    kind = rng.randrange(9)
    if kind == 0:  # flip bytes
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 1:  # truncate
        return raw[: rng.randrange(len(raw))]
    if kind == 2:  # splice junk
        at = rng.randrange(len(raw))
        return raw[:at] + rng.randbytes(rng.randint(1, 64)) + raw[at:]
    if kind == 3:  # a field of the wrong type
        event[rng.choice(sorted(event))] = rng.choice(WRONG)
        return json.dumps(event).encode()
    if kind == 4:  # deep nesting
        depth = rng.choice((LIMITS.json_depth + 1, 500, 5_000, 50_000))
        return b'{"tags": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 5:  # oversize value
        event[rng.choice(("input", "output", "event_id", "app"))] = "x" * rng.choice(
            (LIMITS.text_chars + 1, 2 * LIMITS.payload_bytes)
        )
        return json.dumps(event).encode()
    if kind == 6:  # invalid UTF-8
        return raw.replace(b"a", b"\xc3\x28", 1)
    if kind == 7:  # lone surrogate escape
        return raw.replace(b'"output": "', b'"output": "\\udc80', 1)
    return rng.randbytes(rng.randint(0, 256))  # noise


def corpus_run(n: int, seed: int) -> dict:
    """Generate and check one payload at a time (oversize ones are megabytes each);
    only ``parse_event`` is timed."""
    rng = random.Random(seed)
    base = list(synthetic_events(200, seed=seed))
    fields: Counter[str] = Counter()
    accepted = escaped = unnamed = size = 0
    seconds = 0.0
    for _ in range(n):
        p = broken(rng, base)
        size += len(p)
        t0 = time.perf_counter()
        try:
            result = parse_event(p)
        except Exception:  # the property under test: never happens
            seconds += time.perf_counter() - t0
            escaped += 1
            continue
        seconds += time.perf_counter() - t0
        if isinstance(result, Event):
            accepted += 1
        elif isinstance(result, Rejection) and result.field and result.rule:
            fields[result.field.split(".")[0]] += 1
        else:
            unnamed += 1
    return {
        "inputs": n, "bytes": size, "seconds": round(seconds, 2),
        "events_per_s": round(n / seconds),
        "accepted": accepted, "rejected": n - accepted - escaped - unnamed,
        "exceptions": escaped, "rejections_without_reason": unnamed,
        "top_fields": fields.most_common(8),
    }  # fmt: skip


ATHERIS = r"""
import sys, atheris
with atheris.instrument_imports():
    from ingest.schema import Event, Rejection, parse_event

def one(data: bytes) -> None:
    result = parse_event(data)
    if not isinstance(result, (Event, Rejection)) or (
        isinstance(result, Rejection) and not (result.field and result.rule)
    ):
        raise AssertionError(f"bad answer {result!r}")

atheris.Setup([sys.argv[0], f"-runs={sys.argv[1]}", "-max_len=8192", "-seed=1"], one)
atheris.Fuzz()
"""


def atheris_run(runs: int) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", ATHERIS, str(runs)], cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    return {
        "runs": int(done.group(1)) if done else None,
        "seconds": round(seconds, 1),
        "exit_code": proc.returncode,
        "coverage_edges": int(cov[-1]) if cov else None,
        "crash": None if proc.returncode == 0 else proc.stderr[-2000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--atheris-runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # atheris first: a child forked from a parent that held big payloads would inherit
    # its peak RSS, and libFuzzer's memory limit would trip on that.
    console.print(f"atheris: {args.atheris_runs:,} coverage-guided inputs…")
    fuzz = atheris_run(args.atheris_runs)
    console.print(f"corpus: {args.runs:,} broken events through parse_event…")
    corpus = corpus_run(args.runs, args.seed)
    table = Table(title="event validation under malformed input (one process, one core)")
    for col in ("run", "inputs", "seconds", "events/s", "exceptions", "no reason", "note"):
        table.add_column(col, justify="right" if col != "note" else "left")
    table.add_row(
        "corpus", f"{corpus['inputs']:,}", str(corpus["seconds"]),
        f"{corpus['events_per_s']:,}", str(corpus["exceptions"]),
        str(corpus["rejections_without_reason"]),
        f"accepted {corpus['accepted']} (a break that left a valid event)",
    )  # fmt: skip
    table.add_row(
        "atheris", f"{fuzz['runs'] or 0:,}", str(fuzz["seconds"]),
        f"{round((fuzz['runs'] or 0) / fuzz['seconds']):,}",
        "0" if fuzz["exit_code"] == 0 else "CRASH", "—",
        f"exit {fuzz['exit_code']}, {fuzz['coverage_edges']} edges (instrumented, slower)",
    )  # fmt: skip
    console.print(table)
    console.print(f"rejections by field: {corpus['top_fields']}")
    result = {
        "benchmark": "fuzz_events", "corpus": corpus, "atheris": fuzz,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if corpus["exceptions"] or corpus["rejections_without_reason"] or fuzz["exit_code"] != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
