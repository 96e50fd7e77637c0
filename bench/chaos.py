"""Crash anywhere: SIGKILL the worker again and again during a 50,000-event run.

A real worker (Tansu + Faust + chdb, every detector) takes a steady stream of
``--rate`` payloads/s: background traffic, a calm ``chaos-bot v1``, a new version of
``chaos-bot`` per scripted incident (v2, v3, ...) whose answers are often toxic, and 2 %
broken payloads (bad JSON, invalid UTF-8, a missing field, a wrong type, an oversize
field, negative tokens), each known by the (partition, offset) the broker gave it. The
rule ``toxicity_rate > 20 %`` (30 s window, ``for`` 2 s, at least 30 events) pages
PagerDuty, posts to a webhook and calls a rollback service, all local HTTP servers.
The worker is SIGKILLed ``--kills`` times, spread over the run: at seeded random
moments from outside, and at the commit-order seams of ``tests/reliability/faults.py``
(before/after the store, before/after a notification). Each kill is followed by a
restart; after the last one a clean worker stores the rest. Traffic flows until the
last kill, so a slow machine publishes more than ``--events``.

Afterwards: every valid event is in ``llm_events FINAL`` exactly once, no invalid one;
``dead_letters FINAL`` and the ``llm.deadletter`` topic hold exactly the invalid
offsets with the right field and a reason; one firing episode and one resolve per bad
version, one ``delivered`` row per (notification, receiver), and every receiver saw
every notification (repeats only under the same dedup or idempotency key, counted).
The harness and the checks are ``tests/reliability/chaos.py`` and ``chaos_checks.py``,
shared with the CI-sized ``tests/reliability/test_chaos.py``.

Usage: ``.venv/bin/python bench/chaos.py [--events 50000] [--rate 100] [--kills 6]``
Writes ``bench/results/chaos.json``, prints tables, exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from tests.integration.conftest import Stack  # noqa: E402
from tests.integration.receivers import Receivers  # noqa: E402
from tests.reliability.chaos import ChaosConfig, ChaosRun  # noqa: E402
from tests.reliability.chaos_checks import verify  # noqa: E402

console = Console(width=140)
RESULTS = ROOT / "bench" / "results" / "chaos.json"
# Kills in order; notify seams start (or see out) an incident, the others land anywhere.
PLAN = (
    "external", "before_notify", "after_notify", "external", "before_notify",
    "after_store", "before_store", "after_notify",
)  # fmt: skip


def plan(kills: int) -> tuple[str, ...]:
    return tuple(PLAN[i % len(PLAN)] for i in range(kills))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=100.0, help="payloads per second")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument(
        "--incidents", type=int, help="bad deploys (default: one per notify-seam kill)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    kills = plan(args.kills)
    incidents = args.incidents or max(1, sum(k.endswith("_notify") for k in kills))
    cfg = ChaosConfig(
        events=args.events, rate=args.rate, plan=kills, incidents=incidents,
        seed=args.seed, spread_s=0.85 * args.events / args.rate, seam_timeout_s=300.0,
    )  # fmt: skip
    console.print(f"chaos: {cfg.events:,} payloads at {cfg.rate:g}/s, kills {list(cfg.plan)}")
    started = time.time()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "broker-logs") as broker,
        Receivers() as receivers,
    ):
        stack = Stack(Path(tmp) / "home", broker.bootstrap, free_port())
        run = ChaosRun(stack, receivers, cfg)
        run.run()
        total_s = time.time() - started
        checks, figures = verify(run)
    summary = run.summary()
    drained = summary["drained_s"]
    publish_per_s = summary["published"] / summary["publish_s"]
    stored_per_s = summary["valid"] / drained if drained else None
    figures.update({
        "run_s": round(total_s, 1),
        "kills": len(run.kills),
        "restarts": len(run.kills),  # each kill is followed by a start; the last start is clean
        "publish_per_s": round(publish_per_s, 1),
        # valid events stored per second, first publish to the last one stored
        "stored_per_s": None if stored_per_s is None else round(stored_per_s, 1),
        "stored_over_published_rate": None if stored_per_s is None
        else round(stored_per_s / (publish_per_s * (1 - cfg.invalid_share)), 3),
        "rows_before_final_over_final": round(
            figures["llm_events_rows_before_final"] / max(1, figures["llm_events_rows_final"]), 4
        ),
    })  # fmt: skip
    report(run, checks, figures)
    failed = [c.name for c in checks if not c.ok]
    result = {
        "benchmark": "chaos",
        "config": asdict(cfg),
        "summary": summary,
        "figures": figures,
        "checks": [asdict(c) | {"expected": str(c.expected), "got": str(c.got)} for c in checks],
        "failed": failed,
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if failed:
        console.print(f"[red]{len(failed)} checks failed: {failed}")
        raise SystemExit(1)


def report(run: ChaosRun, checks: list, figures: dict) -> None:
    kills = Table(title="kills (seconds since the run began)")
    for col in ("#", "planned", "died at", "started", "died", "rows stored", "traffic"):
        kills.add_column(col, justify="right")
    for k in run.kills:
        kills.add_row(
            str(k.n), k.planned, k.seam, f"{k.started_s:.1f}", f"{k.died_s:.1f}",
            f"{k.stored_before:,}", "flowing" if k.during_traffic else "done",
        )  # fmt: skip
    console.print(kills)
    incidents = Table(title="scripted incidents (bad chaos-bot versions), seconds since start")
    for col in ("version", "traffic from", "trigger at webhook", "traffic until", "resolve at"):
        incidents.add_column(col, justify="right")
    for inc in run.summary()["incidents"]:
        incidents.add_row(
            *(str(inc[k]) for k in ("version", "started", "fired", "ended", "resolved"))
        )
    console.print(incidents)
    table = Table(title="checks")
    for col in ("check", "expected", "got", "ok"):
        table.add_column(col)
    for c in checks:
        exp, got = (s if len(s) < 60 else s[:57] + "…" for s in (str(c.expected), str(c.got)))
        table.add_row(c.name, exp, got, "[green]yes" if c.ok else "[red]NO")
    console.print(table)
    figs = Table(title="figures")
    figs.add_column("figure")
    figs.add_column("value", justify="right")
    for k, v in figures.items():
        figs.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(figs)


if __name__ == "__main__":
    main()
