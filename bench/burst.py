"""Back-pressure: a burst far above the scoring rate, the worker's memory, and the drain.

For each burst size (``--bursts``, default 50,000 and 200,000) a fresh real worker
(Tansu → Faust → detectors → chdb) on a fresh broker:

1. warm-up: ``--warmup`` events are published and stored; the sustainable scoring
   rate is taken from their batches (``ingested_at``, the first batch left out);
2. baseline: the worker's RSS (``VmRSS`` in ``/proc/PID/status``) idles for a few s;
   its peak counter (``VmHWM``) is reset through ``/proc/PID/clear_refs``;
3. burst: the events are published as fast as one producer can, and the burst rate
   is reported as a multiple of the scoring rate (it must be at least 10x);
4. drain: RSS is sampled every 0.5 s and the lag (published - stored) every 1 s until
   every event is stored; ``VmHWM`` then gives the peak between samples too.

Bounded memory means the peak does not grow with the backlog: the script compares the
peaks of the two sizes in the same run, and the RSS of both once the same number of
burst events is stored (the larger burst then still has ~150,000 waiting). It also
samples the memory ClickHouse tracks in the worker (``system.metrics``
``MemoryTracking``: the embedded engine's share) and the broker's RSS, since the
embedded broker keeps topics in memory and is where a backlog is meant to wait.

Usage: ``.venv/bin/python bench/burst.py [--bursts 50000 200000] [--warmup 6000]``
Writes ``bench/results/burst.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.producer import EventProducer  # noqa: E402
from ingest.synthetic import synthetic_events  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402

console = Console(width=120)
RESULTS = ROOT / "bench" / "results" / "burst.json"
MIB = 1024 * 1024
STORED_MARKS = (25_000, 50_000, 100_000, 200_000)  # compare RSS at equal stored counts


def sql(url: str, query: str) -> list[list]:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["rows"]


def stored(url: str) -> int:
    return int(sql(url, "SELECT count() FROM llm_events")[0][0])


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


async def publish(
    bootstrap: str, n: int, prefix: str, seed: int = 0, sent: Callable[[int], None] | None = None
) -> float:
    """Publish ``n`` synthetic events as fast as one producer can; returns the seconds.
    ``sent`` hears of every 10,000 handed to the producer."""
    t0 = time.perf_counter()
    async with EventProducer(bootstrap) as producer:
        for chunk in range(0, n, 10_000):
            size = min(10_000, n - chunk)
            for e in synthetic_events(size, seed=seed + chunk, prefix=f"{prefix}-{chunk}"):
                await producer.send_raw(e["event_id"].encode(), json.dumps(e).encode())
            if sent is not None:
                sent(size)
    return time.perf_counter() - t0


def wait_stored(url: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if stored(url) >= n:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"fewer than {n} events stored after {timeout:.0f} s")


class Sampler:
    """On a thread: RSS of the worker and the broker every 0.5 s; every 1 s the lag and
    the memory ClickHouse tracks inside the worker (the embedded engine's share of RSS)."""

    def __init__(self, worker: int, broker: int, url: str) -> None:
        self.worker, self.broker, self.url = worker, broker, url
        self.published = 0
        self.t0 = time.monotonic()
        self.rss: list[tuple[float, int, int]] = []  # (s, worker, broker)
        self.lag: list[tuple[float, int, int]] = []  # (s, published - stored, ClickHouse)
        self.stored: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tick = 0
        while not self.stop.wait(0.5):
            t = time.monotonic() - self.t0
            self.rss.append((t, memory(self.worker)["VmRSS"], memory(self.broker)["VmRSS"]))
            tick += 1
            if tick % 2 == 0:
                with contextlib.suppress(OSError):
                    done = stored(self.url)
                    lag = max(0, self.published - done)  # published: to the last 10,000
                    self.lag.append((t, lag, clickhouse_memory(self.url)))
                    self.stored.append((t, done))

    def sent(self, n: int) -> None:
        self.published += n

    def rss_when_stored(self, n: int) -> int | None:
        """Worker RSS at the first sample with at least ``n`` events stored."""
        t = next((t for t, done in self.stored if done >= n), None)
        if t is None:
            return None
        return min(self.rss, key=lambda r: abs(r[0] - t))[1]


def clickhouse_memory(url: str) -> int:
    query = "SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'"
    return int(sql(url, query)[0][0])


def scoring_rate(url: str) -> float:
    """Events/s over the stored batches, the first one (model warm-up) left out."""
    rows = sql(url, "SELECT toUnixTimestamp64Milli(ingested_at) / 1000 AS t, count() "
                    "FROM llm_events GROUP BY t ORDER BY t")  # fmt: skip
    batches = [(float(t), int(n)) for t, n in rows]
    if len(batches) < 3:
        raise SystemExit(f"the warm-up made {len(batches)} batches; raise --warmup")
    span = batches[-1][0] - batches[1][0]
    return sum(n for _, n in batches[2:]) / span


def run_burst(n: int, warmup: int, idle_s: float) -> dict:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "logs") as broker,
    ):
        assert broker.process is not None
        sql_port = free_port()
        env = {
            **os.environ,
            "LLMPULSE_HOME": f"{tmp}/home",
            "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LLMPULSE_SQL_PORT": str(sql_port),
        }
        url = f"http://127.0.0.1:{sql_port}/sql/"
        with open(Path(tmp) / "worker.out", "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            console.print(f"[{n:,}] warm-up: {warmup:,} events…")
            asyncio.run(publish(broker.bootstrap, warmup, "warm", seed=10**9))
            wait_stored(url, warmup, 900)
            rate = scoring_rate(url)
            time.sleep(idle_s)
            baseline = memory(worker.pid)["VmRSS"]
            ch_baseline = clickhouse_memory(url)
            broker_baseline = memory(broker.process.pid)["VmRSS"]
            peak_reset = reset_peak(worker.pid)

            sampler = Sampler(worker.pid, broker.process.pid, url)
            sampler.published = warmup
            sampler.thread.start()
            console.print(f"[{n:,}] burst: {n:,} events at full speed "
                          f"(scoring rate {rate:,.0f} events/s)…")  # fmt: skip
            t0 = time.monotonic()
            publish_s = asyncio.run(publish(broker.bootstrap, n, "burst", sent=sampler.sent))
            wait_stored(url, warmup + n, 6 * 3600)
            drain_s = time.monotonic() - t0
            time.sleep(2.0)
            sampler.stop.set()
            sampler.thread.join(10)
            mem = memory(worker.pid)
            total = stored(url)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)

    peak_sampled = max(w for _, w, _ in sampler.rss)
    peak = max(peak_sampled, mem["VmHWM"] if peak_reset else 0)
    peak_lag = max((lag for _, lag, _ in sampler.lag), default=0)
    at_stored = {}
    for k in (k for k in STORED_MARKS if k <= n):
        rss = sampler.rss_when_stored(warmup + k)
        at_stored[str(k)] = None if rss is None else round((rss - baseline) / MIB, 1)
    # The backlog is largest in the first minute; memory that grew with it shows there.
    early = max((w for t, w, _ in sampler.rss if t <= 60), default=0)
    return {
        "burst": n,
        "scoring_rate_events_per_s": round(rate, 1),
        "publish_events_per_s": round(n / publish_s, 1),
        "burst_over_scoring_rate": round(n / publish_s / rate, 1),
        "burst_over_drain_rate": round(drain_s / publish_s, 1),
        "baseline_rss_mib": round(baseline / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "peak_rss_sampled_mib": round(peak_sampled / MIB, 1),
        "peak_over_baseline_mib": round((peak - baseline) / MIB, 1),
        "peak_rss_first_60s_mib": round(early / MIB, 1),
        "rss_after_drain_mib": round(mem["VmRSS"] / MIB, 1),
        "vmhwm_reset": peak_reset,
        "clickhouse_baseline_mib": round(ch_baseline / MIB, 1),
        "clickhouse_peak_mib": round(max((c for _, _, c in sampler.lag), default=0) / MIB, 1),
        # RSS over baseline once this many burst events are stored, whatever still waits
        "rss_over_baseline_when_stored_mib": at_stored,
        "broker_baseline_rss_mib": round(broker_baseline / MIB, 1),
        "broker_peak_rss_mib": round(max(b for _, _, b in sampler.rss) / MIB, 1),
        "peak_lag": peak_lag,
        "drain_s": round(drain_s, 1),
        "drain_events_per_s": round(n / drain_s, 1),
        "stored": total,
        "samples": {
            "every_s": 5,  # (s since the burst began, worker MiB, broker MiB)
            "rss_mib": [
                [round(t), round(w / MIB), round(b / MIB)] for t, w, b in sampler.rss[::10]
            ],
            # (s, lag, ClickHouse MiB)
            "lag": [[round(t), lag, round(c / MIB)] for t, lag, c in sampler.lag[::5]],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bursts", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--warmup", type=int, default=6000)
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle before the baseline")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = [run_burst(n, args.warmup, args.idle_s) for n in sorted(args.bursts)]

    small, large = runs[0], runs[-1]
    growth = large["peak_over_baseline_mib"] - small["peak_over_baseline_mib"]
    per_100k = growth / ((large["burst"] - small["burst"]) / 100_000) if len(runs) > 1 else 0.0
    table = Table(title="a burst far above the scoring rate: worker memory and drain")
    for col in ("burst", "x scoring rate", "baseline RSS", "peak RSS", "peak - baseline",
                "peak, 1st min", "after drain", "peak lag", "drain s", "drain ev/s",
                "broker peak RSS"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(
            f"{r['burst']:,}", f"{r['burst_over_scoring_rate']:.0f}x",
            f"{r['baseline_rss_mib']:,.0f} MiB", f"{r['peak_rss_mib']:,.0f} MiB",
            f"{r['peak_over_baseline_mib']:+,.0f} MiB", f"{r['peak_rss_first_60s_mib']:,.0f} MiB",
            f"{r['rss_after_drain_mib']:,.0f} MiB", f"{r['peak_lag']:,}", f"{r['drain_s']:,.0f}",
            f"{r['drain_events_per_s']:,.0f}", f"{r['broker_peak_rss_mib']:,.0f} MiB",
        )  # fmt: skip
    console.print(table)
    marks = Table(title="worker RSS over its baseline once N burst events are stored")
    marks.add_column("burst", justify="right")
    for k in STORED_MARKS:
        marks.add_column(f"{k:,} stored", justify="right")
    marks.add_column("ClickHouse tracked, baseline → peak", justify="right")
    for r in runs:
        at = r["rss_over_baseline_when_stored_mib"]
        marks.add_row(
            f"{r['burst']:,}",
            *("—" if at.get(str(k)) is None else f"{at[str(k)]:+,.0f} MiB" for k in STORED_MARKS),
            f"{r['clickhouse_baseline_mib']:,.0f} → {r['clickhouse_peak_mib']:,.0f} MiB",
        )
    console.print(marks)
    if len(runs) > 1:
        console.print(
            f"peak growth from {small['burst']:,} to {large['burst']:,} events: {growth:+.0f} MiB "
            f"({per_100k:+.1f} MiB per 100k events of backlog; backlog ratio "
            f"{large['burst'] / small['burst']:.0f}x)"
        )
    result = {
        "benchmark": "burst",
        "warmup": args.warmup,
        "runs": runs,
        "peak_growth_mib": round(growth, 1),
        "peak_growth_mib_per_100k_backlog": round(per_100k, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if any(r["stored"] != args.warmup + r["burst"] for r in runs):
        console.print("[red]stored count differs from published[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
