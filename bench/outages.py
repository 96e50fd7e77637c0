"""Outages at scale: storage down (the writer seam; a ClickHouse server whose port
refuses) and the embedded broker restarting under a running worker.

Storage, per kind: a real worker stores a warm-up, then storage is down for --outage
seconds while events keep arriving at --rate per second. Reported: how long consumption
paused, the failed attempts and the longest backoff delay, how long after storage came
back the backlog was stored and the lag was 0, and events lost or doubled (both 0).

Broker: (1) Tansu restarts while the worker runs and --events are published at once:
time from the broker being back to the first and the last of them stored, and to lag 0;
(2) with the worker stopped, --events wait unconsumed in the broker, which restarts:
they are lost with its memory (Apache Kafka keeps them); the events published after the
restart are all stored by the worker started again. (A worker frozen with SIGSTOP is no
way to hold events back: the kernel still receives the answer to its pending fetch.)

Usage: ``.venv/bin/python bench/outages.py [--outage 30] [--rate 10] [--events 300]``
Writes ``bench/results/outages.json`` and prints a table. ``bench/outages.py worker`` is
the worker itself with the fault hooks and a record of every backoff delay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ingest.producer import EventProducer  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from tests.integration.conftest import Stack, publish  # noqa: E402
from tests.reliability.chdb_http import ChdbHttpServer  # noqa: E402
from tests.reliability.conftest import lag, payloads  # noqa: E402

console = Console(width=120)
RESULTS = ROOT / "bench" / "results" / "outages.json"
RESUMED = re.compile(
    r"\[([\d-]+ [\d:,]+)\].*storage write succeeded after ([\d.]+)s of failures "
    r"\((\d+) failed attempts\)"
)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def worker_with_hooks() -> None:
    """``llmpulse worker`` with tests.reliability.faults and each backoff delay recorded."""
    from core.retry import Backoff
    from tests.reliability.faults import install

    install()
    record = Path(os.environ["BENCH_BACKOFF_LOG"])
    original = Backoff.delays

    def delays(self: Backoff) -> Callable[[], float]:
        step = original(self)

        def recorded() -> float:
            delay = step()
            with record.open("a") as f:
                f.write(f"{time.time():.3f} {self.first_s} {delay:.3f}\n")
            return delay

        return recorded

    Backoff.delays = delays  # type: ignore[method-assign]
    from llmpulse.cli import main as cli_main

    cli_main()


def log_times(log: Path, pattern: str, after: float) -> list[float]:
    """Wall times of the worker.log lines matching ``pattern``, written after ``after``."""
    times = []
    for line in log.read_text().splitlines():
        stamp = re.match(r"\[([\d-]+ [\d:,]+)\]", line)
        if stamp and re.search(pattern, line):
            at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= after:
                times.append(at)
    return times


def sql(stack: Stack, query: str) -> Any:
    body = json.dumps({"query": query}).encode()
    url = f"http://127.0.0.1:{stack.sql_port}/sql/"
    with _DIRECT.open(urllib.request.Request(url, data=body, method="POST"), timeout=60) as r:
        return json.loads(r.read())["rows"][0][0]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Monotonic time at which ``check`` first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic()
        except OSError:  # the endpoint answers errors while storage is down
            pass
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def steady(bootstrap: str, rate: int, seconds: float, seed: int) -> int:
    """Publish ``rate`` events per second for ``seconds``; return how many were sent."""
    events = payloads(int(rate * seconds), seed=seed)

    async def go() -> int:
        async with EventProducer(bootstrap) as producer:
            start = time.monotonic()
            for i in range(0, len(events), rate):
                for key, value in events[i : i + rate]:
                    await producer.send_raw(key, value)
                await producer.flush()
                await asyncio.sleep(max(0.0, start + (i // rate + 1) - time.monotonic()))
        return len(events)

    return asyncio.run(go())


def counts(stack: Stack, prefix: str) -> dict[str, int]:
    where = f"WHERE startsWith(event_id, '{prefix}-')"
    return {
        "final": int(sql(stack, f"SELECT count() FROM llm_events FINAL {where}")),
        "distinct": int(sql(stack, f"SELECT uniqExact(event_id) FROM llm_events {where}")),
        "raw": int(sql(stack, f"SELECT count() FROM llm_events {where}")),
    }


def storage_outage(kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    console.print(f"[bold]storage outage ({kind})[/]: {args.outage:g} s, {args.rate} events/s")
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp / "broker").start()
    stack = Stack(tmp / "home", broker.bootstrap, free_port(), worker_module="bench.outages")
    backoff_log = tmp / "backoff.log"
    stack.extra_env["BENCH_BACKOFF_LOG"] = str(backoff_log)
    server = None
    if kind == "seam":
        flag = tmp / "storage-down"
        stack.extra_env["LLMPULSE_FAULT_STORAGE_FILE"] = str(flag)
        down, up = flag.touch, flag.unlink
    else:
        server = ChdbHttpServer(tmp / "clickhouse", free_port()).start()
        stack.extra_env["LLMPULSE_CLICKHOUSE_DSN"] = server.dsn
        down, up = server.stop, server.start
    try:
        worker = stack.start_worker()
        publish(broker.bootstrap, payloads(args.warmup, seed=1))
        wait_until(
            lambda: sql(stack, "SELECT count() FROM llm_events") >= args.warmup, 300, "warm-up"
        )
        wait_until(lambda: lag(broker.bootstrap) == 0, 60, "warm-up commits")
        down()
        down_wall = time.time()
        sent = steady(broker.bootstrap, args.rate, args.outage, seed=2)
        lag_during = lag(broker.bootstrap)
        up()
        up_at, up_wall = time.monotonic(), time.time()
        alive = worker.poll() is None
        stored_at = wait_until(
            lambda: sql(stack, "SELECT uniqExact(event_id) FROM llm_events") >= args.warmup + sent,
            900, "the backlog",
        )  # fmt: skip
        lag_zero_at = wait_until(lambda: lag(broker.bootstrap) == 0, 120, "lag 0")
        found = counts(stack, "s2")
        stack.stop_worker(worker)
    finally:
        stack.kill_workers()
        broker.stop()
        if server is not None:
            server.stop()
    text = (stack.home / "logs" / "worker.log").read_text()
    resumed = RESUMED.findall(text)
    resumed_wall = datetime.strptime(resumed[0][0], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    delays = [
        float(line.split()[2])
        for line in backoff_log.read_text().splitlines()
        if float(line.split()[1]) == 0.5 and float(line.split()[0]) >= down_wall
    ]
    return {
        "scenario": f"storage: {kind}",
        "outage_s": round(up_wall - down_wall, 1),
        "events_during": sent,
        "lag_during": lag_during,
        "worker_alive": alive,
        "paused_s": float(resumed[0][1]),
        "failed_attempts": int(resumed[0][2]),
        "max_backoff_s": round(max(delays), 2),
        "resumed_after_up_s": round(resumed_wall - up_wall, 2),
        "stored_after_up_s": round(stored_at - up_at, 2),
        "lag_zero_after_up_s": round(lag_zero_at - up_at, 2),
        "lost": sent - found["distinct"],
        "doubled_final": found["final"] - found["distinct"],
        "raw_duplicates": found["raw"] - found["distinct"],
    }


def broker_restart(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    console.print(f"[bold]broker restart[/]: {args.events} events")
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp / "broker").start()
    stack = Stack(tmp / "home", broker.bootstrap, free_port())
    n = args.events
    stored = "SELECT uniqExact(event_id) FROM llm_events WHERE startsWith(event_id, '{}-')"
    try:
        worker = stack.start_worker()
        publish(broker.bootstrap, payloads(args.warmup, seed=1))
        wait_until(lambda: sql(stack, stored.format("s1")) >= args.warmup, 300, "warm-up")
        wait_until(lambda: lag(broker.bootstrap) == 0, 60, "warm-up commits")

        broker.stop()
        broker.start()
        back_at, back_wall = time.monotonic(), time.time()
        publish(broker.bootstrap, payloads(n, seed=2))
        all_at = wait_until(lambda: sql(stack, stored.format("s2")) >= n, 900, "events after")
        first = sql(
            stack,
            "SELECT toUnixTimestamp64Milli(min(ingested_at)) / 1000 FROM llm_events "
            "WHERE startsWith(event_id, 's2-')",
        )
        lag_at = wait_until(lambda: lag(broker.bootstrap) == 0, 120, "lag 0")
        running = counts(stack, "s2")
        log = stack.home / "logs" / "worker.log"
        detected = log_times(log, "came back as a new cluster", back_wall)
        rejoined = log_times(log, "Joined group", back_wall)
        rewinds = log_times(log, "assigned partitions from the start", back_wall)

        alive = worker.poll() is None
        stack.stop_worker(worker)  # a clean stop: every consumed offset committed
        publish(broker.bootstrap, payloads(n, seed=3))  # held by the broker, unconsumed
        broker.stop()
        broker.start()
        publish(broker.bootstrap, payloads(n, seed=4))
        worker = stack.start_worker()
        wait_until(lambda: sql(stack, stored.format("s4")) >= n, 900, "events after")
        time.sleep(10)  # room for any late arrival of the events that waited
        unconsumed, after = sql(stack, stored.format("s3")), counts(stack, "s4")
        stack.stop_worker(worker)
    finally:
        stack.kill_workers()
        broker.stop()
    return [
        {
            "scenario": "broker restart, worker running",
            "events_after": n,
            "worker_alive": alive,
            "detected_after_back_s": round(detected[0] - back_wall, 2),
            "rejoined_after_back_s": round(rejoined[0] - back_wall, 2),
            "rewinds": len(rewinds),
            "first_stored_after_back_s": round(float(first) - back_wall, 2),
            "all_stored_after_back_s": round(all_at - back_at, 2),
            "lag_zero_after_back_s": round(lag_at - back_at, 2),
            "lost": n - running["distinct"],
            "doubled_final": running["final"] - running["distinct"],
            "raw_duplicates": running["raw"] - running["distinct"],
        },
        {
            "scenario": "broker restart, worker stopped",
            "events_waiting_in_old_broker": n,
            "lost_with_old_broker": n - int(unconsumed),
            "events_after": n,
            "lost": n - after["distinct"],
            "doubled_final": after["final"] - after["distinct"],
            "raw_duplicates": after["raw"] - after["distinct"],
        },
    ]


def report(rows: list[dict[str, Any]]) -> None:
    storage = [r for r in rows if r["scenario"].startswith("storage")]
    if storage:
        table = Table(title="storage outage: pause, backoff, recovery (seconds)")
        cols = ("scenario", "outage_s", "events_during", "paused_s", "failed_attempts",
                "max_backoff_s", "resumed_after_up_s", "stored_after_up_s",
                "lag_zero_after_up_s", "lost", "doubled_final")  # fmt: skip
        for col in cols:
            table.add_column(col.replace("_", " "), justify="right")
        for r in storage:
            table.add_row(*(str(r[c]) for c in cols))
        console.print(table)
    for r in rows:
        if r["scenario"].startswith("broker"):
            console.print(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage", type=float, default=30.0, help="storage outage, seconds")
    parser.add_argument("--rate", type=int, default=10, help="events/s during the outage")
    parser.add_argument("--events", type=int, default=300, help="events per broker phase")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--only", default="seam,server,broker")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for kind in args.only.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            if kind == "broker":
                rows += broker_restart(args, Path(tmp))
            else:
                rows.append(storage_outage(kind, args, Path(tmp)))
        report(rows[-1:] if kind != "broker" else rows[-2:])
    console.rule("all scenarios")
    report(rows)
    for r in rows:
        if "paused_s" in r:
            r["paused_over_outage"] = round(r["paused_s"] / r["outage_s"], 3)
    result = {
        "benchmark": "outages",
        "args": vars(args) | {"out": str(args.out)},
        "scenarios": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker_with_hooks()
    else:
        main()
