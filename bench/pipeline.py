"""End-to-end throughput: publish → stored, against the broker-only and scorer-only rates.

Two runs, each on its own embedded broker with its own worker, each with the rates it
is compared with measured in the same run, on the same events, so the ratios hold
even on a noisy machine:

* **full** (``--events``, default 5,000): every detector on every event (no load
  shedding), one event per Kafka message;
  - pipeline: a real ``llmpulse worker`` (Faust + chdb) drains the topic, timed from
    the first publish until the last row is visible in ``llm_events``;
  - broker-only: an aiokafka consumer reads the same topic, no processing;
  - scorer-only: validation + every detector + row building, in-process, no I/O.
* **cheap** (``--cheap-events``, default 200,000): the cheap path, a worker with
  ``LLMPULSE_MODELS=off`` fed envelopes of ``--envelope-events`` events (the SDK's
  ``envelopes=True`` default), timed the same way; beside it, on the same broker:
  - broker-only, one event per message: the same events published one per message
    to a second topic and read back by an aiokafka consumer (the rate the issue
    compares with);
  - broker-only, envelopes: the consumer reads the envelope topic and splits the
    envelopes into events;
  - scorer-only: validation + the cheap detectors + row building, no I/O.

Usage: ``.venv/bin/python bench/pipeline.py [--events 5000] [--cheap-events 200000]``
(``0`` skips a run). Writes ``bench/results/pipeline.json`` and prints a table.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.settings import load_settings  # noqa: E402
from ingest.envelope import ENVELOPE_HEADER, ENVELOPE_VERSION, encode_envelope  # noqa: E402
from ingest.producer import EventProducer  # noqa: E402
from ingest.schema import Event, event_to_json, parse_event  # noqa: E402
from ingest.synthetic import synthetic_events  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from processors.batch import Record, build_scorer  # noqa: E402

console = Console(width=120)
Message = tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]  # key, value, headers
WARM = 1000


async def publish(bootstrap: str, messages: list[Message], topic: str = "llm.events") -> float:
    t0 = time.perf_counter()
    async with EventProducer(bootstrap, topic) as producer:
        for key, value, headers in messages:
            await producer.send_raw(key, value, headers)
    return time.perf_counter() - t0


async def consume_all(bootstrap: str, topic: str, n_events: int) -> tuple[float, int]:
    """Read ``topic`` from the start until ``n_events`` events are in hand (an
    envelope's lines counted, as a worker would split them); seconds and messages."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-broker-only-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    try:
        events = messages = 0
        t0 = time.perf_counter()
        while events < n_events:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for r in records:
                    messages += 1
                    events += len(r.value.split(b"\n")) if r.headers else 1
        elapsed = time.perf_counter() - t0
        await consumer.commit()
        return elapsed, messages
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, topic: str) -> None:
    """With as many partitions as the worker gives llm.events."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = load_settings({}).partitions
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


def scorer_only(
    warmup: list[bytes], payloads: list[bytes], models: bool, batch: int = 2000
) -> float:
    """Seconds to score ``payloads`` in-process, after ``warmup`` as the worker had it
    (the embedding cache then holds what the worker's held)."""
    env = {} if models else {"LLMPULSE_MODELS": "off"}
    scorer = build_scorer(load_settings(env))
    scorer.score([Record("llm.events", 0, i, None, v) for i, v in enumerate(warmup)])
    records = [Record("llm.events", 0, i, None, v) for i, v in enumerate(payloads)]
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


@contextmanager
def worker_on(
    broker: EmbeddedBroker, home: Path, env_extra: dict[str, str], py_spy: Path | None
) -> Iterator[str]:
    """A real ``llmpulse worker`` on ``broker``; yields its SQL endpoint's URL."""
    sql_port = free_port()
    env = {
        **os.environ,
        "LLMPULSE_HOME": str(home),
        "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LLMPULSE_SQL_PORT": str(sql_port),
        **env_extra,
    }
    command = [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"]
    if py_spy:
        command = ["py-spy", "record", "-o", str(py_spy), "-f", "raw", "-r", "50",
                   "--threads", "--", *command]  # fmt: skip
    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield f"http://127.0.0.1:{sql_port}/sql/"
    finally:
        worker.send_signal(signal.SIGINT if py_spy else signal.SIGTERM)
        worker.wait(120)


def timed_pipeline(
    broker: EmbeddedBroker, url: str, warmup: list[Message], measured: list[Message], n: int
) -> tuple[float, float, int]:
    """Warm the worker up, then publish ``measured`` (``n`` events) while it drains
    them: (publish → stored seconds, publish seconds, rows after dedup)."""
    console.print("  warming up the worker (group join, first batch)…")
    asyncio.run(publish(broker.bootstrap, warmup))
    wait_count(url, WARM, timeout=180)
    console.print(f"  publishing {n:,} events while the worker drains them…")
    t0 = time.perf_counter()
    publish_s = asyncio.run(publish(broker.bootstrap, measured))
    t_end = wait_count(url, WARM + n, timeout=1800)
    return t_end - t0, publish_s, sql_count(url, "SELECT count() FROM llm_events FINAL")


def full_run(n: int, tmp: Path, py_spy: Path | None) -> dict[str, Any]:
    """Every detector, one event per message (the figure this script always gave)."""
    events = list(synthetic_events(n + WARM, seed=42))
    messages: list[Message] = [(e["event_id"].encode(), json.dumps(e).encode(), None)
                               for e in events]  # fmt: skip
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "logs-full") as broker:
        console.print(f"full: every detector, {n:,} events, one per message")
        # No load shedding: behind by more than LLMPULSE_MAX_LAG_S the models would
        # score a sample, and this run measures every detector on every event.
        env = {"LLMPULSE_MAX_LAG_S": "0"}
        with worker_on(broker, tmp / "home-full", env, py_spy) as url:
            pipeline_s, publish_s, stored = timed_pipeline(
                broker, url, messages[:WARM], messages[WARM:], n
            )
        console.print("  broker-only: one aiokafka consumer reads the same topic…")
        broker_s, _ = asyncio.run(consume_all(broker.bootstrap, "llm.events", WARM + n))
    console.print("  scorer-only: validation + detectors + rows, no I/O…")
    values = [v for _, v, _ in messages]
    scorer_s = scorer_only(values[:WARM], values[WARM:], models=True)
    rates = {
        "pipeline_events_per_s": n / pipeline_s,
        "broker_only_consume_per_s": (WARM + n) / broker_s,
        "scorer_only_per_s": n / scorer_s,
        "publish_per_s": n / publish_s,
    }
    return {
        "events": n,
        "stored_after_dedup": stored,
        "expected_rows": WARM + n,
        **{k: round(v, 1) for k, v in rates.items()},
        "pipeline_over_broker_only": round(rates["pipeline_events_per_s"]
                                           / rates["broker_only_consume_per_s"], 4),
        "pipeline_over_scorer_only": round(rates["pipeline_events_per_s"]
                                           / rates["scorer_only_per_s"], 4),
    }  # fmt: skip


def envelopes_of(lines: list[bytes], size: int) -> list[Message]:
    header = [(ENVELOPE_HEADER, ENVELOPE_VERSION)]
    return [(None, encode_envelope(lines[i : i + size]), header)
            for i in range(0, len(lines), size)]  # fmt: skip


def cheap_run(n: int, per_envelope: int, tmp: Path, py_spy: Path | None) -> dict[str, Any]:
    """Models off, envelopes on: the cheap path, beside the broker-only rates."""
    events = list(synthetic_events(n + WARM, seed=43))
    # The SDK's wire form: validated, canonical compact JSON, one event per line.
    lines = []
    for e in events:
        parsed = parse_event(json.dumps(e))
        assert isinstance(parsed, Event), parsed
        lines.append(event_to_json(parsed))
    warmup = envelopes_of(lines[:WARM], per_envelope)
    measured = envelopes_of(lines[WARM:], per_envelope)
    singles: list[Message] = [(None, line, None) for line in lines]
    env = {"LLMPULSE_MODELS": "off"}
    with EmbeddedBroker("127.0.0.1", free_port(), tmp / "logs-cheap") as broker:
        console.print(
            f"cheap: models off, {n:,} events in envelopes of {per_envelope} "
            f"({len(measured):,} messages)"
        )
        with worker_on(broker, tmp / "home-cheap", env, py_spy) as url:
            pipeline_s, publish_s, stored = timed_pipeline(broker, url, warmup, measured, n)
        console.print("  broker-only, envelopes: aiokafka reads the same topic…")
        env_s, env_messages = asyncio.run(consume_all(broker.bootstrap, "llm.events", WARM + n))
        console.print("  broker-only, one event per message: the same events, another topic…")
        asyncio.run(create_topic(broker.bootstrap, "bench.singles"))
        asyncio.run(publish(broker.bootstrap, singles, topic="bench.singles"))
        single_s, _ = asyncio.run(consume_all(broker.bootstrap, "bench.singles", WARM + n))
    console.print("  scorer-only: validation + cheap detectors + rows, no I/O…")
    scorer_s = scorer_only(lines[:WARM], lines[WARM:], models=False)
    rates = {
        "pipeline_events_per_s": n / pipeline_s,
        "broker_only_consume_per_s": (WARM + n) / single_s,
        "broker_only_envelopes_events_per_s": (WARM + n) / env_s,
        "broker_only_envelopes_messages_per_s": env_messages / env_s,
        "scorer_only_per_s": n / scorer_s,
        "publish_per_s": n / publish_s,
    }
    return {
        "events": n,
        "events_per_envelope": per_envelope,
        "messages": len(measured),
        "stored_after_dedup": stored,
        "expected_rows": WARM + n,
        **{k: round(v, 1) for k, v in rates.items()},
        "pipeline_over_broker_only": round(rates["pipeline_events_per_s"]
                                           / rates["broker_only_consume_per_s"], 4),
        "pipeline_over_broker_only_envelopes": round(
            rates["pipeline_events_per_s"] / rates["broker_only_envelopes_events_per_s"], 4),
        "pipeline_over_scorer_only": round(rates["pipeline_events_per_s"]
                                           / rates["scorer_only_per_s"], 4),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=5_000,
        help="events of the full run (every detector); 0 skips it",
    )  # fmt: skip
    parser.add_argument(
        "--cheap-events", type=int, default=200_000,
        help="events of the cheap run (models off, envelopes); 0 skips it",
    )  # fmt: skip
    parser.add_argument(
        "--envelope-events", type=int, default=100,
        help="events per envelope in the cheap run (the SDK's default)",
    )  # fmt: skip
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="Record the workers with py-spy (raw format) into NAME.full/NAME.cheap.",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()

    def spy(run: str) -> Path | None:
        return args.py_spy.with_name(f"{args.py_spy.name}.{run}") if args.py_spy else None

    result: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        if args.events > 0:
            result.update(full_run(args.events, Path(tmp), spy("full")))
        if args.cheap_events > 0:
            result["cheap"] = cheap_run(
                args.cheap_events, args.envelope_events, Path(tmp), spy("cheap")
            )
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform(),
                         # other work on the machine skews every rate: say how busy it was
                         "load_avg_1m_before_after": [round(load_before, 2),
                                                      round(os.getloadavg()[0], 2)]}  # fmt: skip
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    table = Table("run", "measure", "events/s", title="llmpulse pipeline")
    if "events" in result:
        r = result
        what = f"full, {r['events']:,} events"
        table.add_row(what, "pipeline (publish → stored), every detector",
                      f"{r['pipeline_events_per_s']:,.0f}")  # fmt: skip
        table.add_row("", "broker-only consume", f"{r['broker_only_consume_per_s']:,.0f}")
        table.add_row("", "scorer-only (no I/O)", f"{r['scorer_only_per_s']:,.0f}")
        table.add_row("", "publish (SDK)", f"{r['publish_per_s']:,.0f}")
        table.add_row("", "pipeline ÷ broker-only", f"{r['pipeline_over_broker_only']:.3f}")
        table.add_row("", "pipeline ÷ scorer-only", f"{r['pipeline_over_scorer_only']:.3f}")
    if "cheap" in result:
        c = result["cheap"]
        what = f"cheap, {c['events']:,} events, {c['events_per_envelope']} per envelope"
        table.add_row(what, "pipeline (publish → stored), models off, envelopes",
                      f"{c['pipeline_events_per_s']:,.0f}")  # fmt: skip
        table.add_row("", "broker-only consume, one event per message",
                      f"{c['broker_only_consume_per_s']:,.0f}")  # fmt: skip
        table.add_row("", "broker-only consume, envelopes (events)",
                      f"{c['broker_only_envelopes_events_per_s']:,.0f}")  # fmt: skip
        table.add_row("", "scorer-only, cheap detectors (no I/O)",
                      f"{c['scorer_only_per_s']:,.0f}")  # fmt: skip
        table.add_row("", "publish (SDK, envelopes)", f"{c['publish_per_s']:,.0f}")
        table.add_row("", "pipeline ÷ broker-only (one per message)",
                      f"{c['pipeline_over_broker_only']:.3f}")  # fmt: skip
        table.add_row("", "pipeline ÷ broker-only (envelopes)",
                      f"{c['pipeline_over_broker_only_envelopes']:.3f}")  # fmt: skip
        table.add_row("", "pipeline ÷ scorer-only", f"{c['pipeline_over_scorer_only']:.3f}")
    console.print(table)
    wrong = [(name, r["stored_after_dedup"], r["expected_rows"])
             for name, r in (("full", result), ("cheap", result.get("cheap", {})))
             if "expected_rows" in r and r["stored_after_dedup"] != r["expected_rows"]]  # fmt: skip
    for name, got, want in wrong:
        console.print(f"[red]{name}: stored {got} rows, expected {want}[/]")
    if wrong:
        sys.exit(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
