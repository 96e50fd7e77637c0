"""End-to-end throughput: publish → stored, against the broker-only and scorer-only rates.

All three run in one process tree, in one run, on the same events, so the ratios
hold even on a noisy machine:

* broker-only: an aiokafka consumer reads the topic, no processing;
* scorer-only: validation + every detector + row building, in-process, no I/O;
* pipeline: a real ``llmpulse worker`` (Faust + chdb) drains the topic; timed from
  the first publish until the last row is visible in ``llm_events``.

Usage: ``.venv/bin/python bench/pipeline.py [--events 5000]``
Writes ``bench/results/pipeline.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import load_settings  # noqa: E402
from ingest.producer import EventProducer  # noqa: E402
from ingest.synthetic import synthetic_events  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from processors.batch import Record, build_scorer  # noqa: E402

console = Console()


async def publish(bootstrap: str, payloads: list[tuple[bytes, bytes]]) -> float:
    t0 = time.perf_counter()
    async with EventProducer(bootstrap) as producer:
        for key, value in payloads:
            await producer.send_raw(key, value)
    return time.perf_counter() - t0


async def consume_all(bootstrap: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        "llm.events",
        bootstrap_servers=bootstrap,
        group_id="bench-broker-only",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    try:
        got, t0 = 0, time.perf_counter()
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            got += sum(len(v) for v in batch.values())
        elapsed = time.perf_counter() - t0
        await consumer.commit()
        return elapsed
    finally:
        await consumer.stop()


def scorer_only(payloads: list[tuple[bytes, bytes]], batch: int = 2000) -> float:
    scorer = build_scorer(load_settings())
    records = [Record("llm.events", 0, i, k, v) for i, (k, v) in enumerate(payloads)]
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        scorer.score(records[i : i + batch])
    return time.perf_counter() - t0


def sql_count(url: str, query: str) -> int:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return int(json.loads(resp.read())["rows"][0][0])


def wait_count(url: str, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sql_count(url, "SELECT count() FROM llm_events") >= expected:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {expected} rows after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="Record the worker with py-spy into this file (raw format).",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    n, warm = args.events, 1000

    events = list(synthetic_events(n + warm, seed=42))
    payloads = [(e["event_id"].encode(), json.dumps(e).encode()) for e in events]
    warmup, measured = payloads[:warm], payloads[warm:]

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "logs") as broker,
    ):
        sql_port = free_port()
        env = {
            **os.environ,
            "LLMPULSE_HOME": f"{tmp}/home",
            "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LLMPULSE_SQL_PORT": str(sql_port),
        }
        url = f"http://127.0.0.1:{sql_port}/sql/"
        command = [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"]
        if args.py_spy:
            command = ["py-spy", "record", "-o", str(args.py_spy), "-f", "raw", "-r", "50",
                       "--threads", "--", *command]  # fmt: skip
        worker = subprocess.Popen(
            command,
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            console.print("warming up the worker (group join, first batch)…")
            asyncio.run(publish(broker.bootstrap, warmup))
            wait_count(url, warm, timeout=120)

            console.print(f"pipeline: publishing {n:,} events while the worker drains them…")
            t0 = time.perf_counter()
            publish_s = asyncio.run(publish(broker.bootstrap, measured))
            t_end = wait_count(url, warm + n, timeout=1200)
            pipeline_s = t_end - t0
            stored = sql_count(url, "SELECT count() FROM llm_events FINAL")
        finally:
            worker.send_signal(signal.SIGINT if args.py_spy else signal.SIGTERM)
            worker.wait(120)

        console.print("broker-only: one aiokafka consumer reads the same topic…")
        broker_s = asyncio.run(consume_all(broker.bootstrap, warm + n))

    console.print("scorer-only: validation + detectors + rows, no I/O…")
    scorer_s = scorer_only(measured)

    rates = {
        "pipeline_events_per_s": n / pipeline_s,
        "broker_only_consume_per_s": (warm + n) / broker_s,
        "scorer_only_per_s": n / scorer_s,
        "publish_per_s": n / publish_s,
    }
    result = {
        "events": n,
        "stored_after_dedup": stored,
        **{k: round(v, 1) for k, v in rates.items()},
        "pipeline_over_broker_only": round(rates["pipeline_events_per_s"]
                                           / rates["broker_only_consume_per_s"], 4),
        "pipeline_over_scorer_only": round(rates["pipeline_events_per_s"]
                                           / rates["scorer_only_per_s"], 4),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    table = Table("measure", "events/s", title=f"llmpulse pipeline, {n:,} events")
    table.add_row("pipeline (publish → stored)", f"{rates['pipeline_events_per_s']:,.0f}")
    table.add_row("broker-only consume", f"{rates['broker_only_consume_per_s']:,.0f}")
    table.add_row("scorer-only (no I/O)", f"{rates['scorer_only_per_s']:,.0f}")
    table.add_row("publish (SDK)", f"{rates['publish_per_s']:,.0f}")
    table.add_row("pipeline ÷ broker-only", f"{result['pipeline_over_broker_only']:.3f}")
    table.add_row("pipeline ÷ scorer-only", f"{result['pipeline_over_scorer_only']:.3f}")
    console.print(table)
    if stored != warm + n:
        console.print(f"[red]stored {stored} rows, expected {warm + n}[/]")
        sys.exit(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
