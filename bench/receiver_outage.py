"""Receiver outage: scoring throughput while PagerDuty and a webhook are down, and delivery after.

One run, three phases, on a real worker (Tansu → Faust → detectors → chdb → rules →
``llm.alerts`` → notify agent) with two HTTP receivers on 127.0.0.1:

* healthy: both receivers answer 202;
* outage (``--outage-s``, default 180 s): the webhook holds every request past the
  client's timeout (10 s, the default), PagerDuty answers 503;
* recovery: both answer 202 again.

A rule that fires for every app|prompt_version (``event_count > 0`` over 60 s,
``repeat_interval`` 20 s) keeps notifications coming in every phase. A publisher keeps
at least ``--backlog`` events unscored, so scoring is the limit throughout. The stored
rate of a phase comes from the batches' ``ingested_at`` (whole batches only, so the
phase edges do not cut one); the worker's CPU use comes from ``/proc/PID/stat``. After
recovery, every notification decided before it must have exactly one ``delivered`` row
per receiver in ``alert_log`` and none ``gave_up``.

Usage: ``.venv/bin/python bench/receiver_outage.py [--outage-s 180] [--healthy-s 120]``
Writes ``bench/results/receiver_outage.json`` and prints a table.
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
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerting.retry import RetryPolicy  # noqa: E402
from ingest.producer import EventProducer  # noqa: E402
from ingest.synthetic import synthetic_events  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from tests.integration.receivers import Receivers  # noqa: E402
from tests.reliability.test_receiver_outage import decided_notifications  # noqa: E402

console = Console(width=120)
RESULTS = ROOT / "bench" / "results" / "receiver_outage.json"
CHUNK = 1000
RULES = """
receivers:
  - name: pager
    type: pagerduty
    url: {pd}
    routing_key_env: BENCH_PD_KEY
  - name: hook
    type: webhook
    url: {hook}
    timeout_s: {timeout}
rules:
  - name: traffic-seen
    metric: event_count
    window: {window}
    op: ">"
    threshold: 0
    repeat_interval: {repeat}
    severity: warning
    receivers: [pager, hook]
"""


def sql(url: str, query: str) -> list[list]:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["rows"]


def stored(url: str) -> int:
    return int(sql(url, "SELECT count() FROM llm_events")[0][0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """The worker's CPU seconds and the machine's load average, once a second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float, float]] = []  # (time, cpu s, loadavg 1 min)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            load = float(Path("/proc/loadavg").read_text().split()[0])
            self.samples.append((time.time(), cpu_seconds(self.pid), load))

    def cpu_at(self, t: float) -> float:
        """CPU seconds at ``t``, interpolated between the two samples around it."""
        before = max((s for s in self.samples if s[0] <= t), default=self.samples[0])
        after = min((s for s in self.samples if s[0] >= t), default=self.samples[-1])
        if after[0] == before[0]:
            return before[1]
        return before[1] + (after[1] - before[1]) * (t - before[0]) / (after[0] - before[0])

    def load(self, start: float, end: float) -> float | None:
        inside = [s[2] for s in self.samples if start <= s[0] < end]
        return round(sum(inside) / len(inside), 2) if inside else None


class Backlog:
    """Publishes chunks of synthetic events whenever fewer than ``size`` are unscored."""

    def __init__(self, bootstrap: str, url: str, size: int) -> None:
        self.bootstrap, self.url, self.size = bootstrap, url, size
        self.published = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with EventProducer(self.bootstrap) as producer:
            i = 0
            while not self.stop.is_set():
                try:
                    done = await asyncio.to_thread(stored, self.url)
                except OSError:
                    done = 0  # the worker's endpoint is not up yet
                if self.published - done >= self.size:
                    await asyncio.sleep(0.5)
                    continue
                for e in synthetic_events(CHUNK, seed=i, prefix=f"outage-{i}"):
                    await producer.send_raw(e["event_id"].encode(), json.dumps(e).encode())
                await producer.flush()
                self.published += CHUNK
                i += 1


def phase_rate(batches: list[tuple[float, int]], start: float, end: float, cpu: CpuSampler) -> dict:
    """Stored events per second and per worker CPU-second, over the whole batches that
    completed in [start, end): the first one only marks where the interval begins."""
    inside = [(t, n) for t, n in batches if start <= t < end]
    load = cpu.load(start, end)
    if len(inside) < 2:
        return {"batches": len(inside), "events_per_s": None, "events_per_cpu_s": None,
                "worker_cpu_cores": None, "loadavg": load}  # fmt: skip
    (t0, _), (t1, _) = inside[0], inside[-1]
    events = sum(n for _, n in inside[1:])
    cpu_s = cpu.cpu_at(t1) - cpu.cpu_at(t0)
    return {
        "batches": len(inside), "events": events, "span_s": round(t1 - t0, 1),
        "events_per_s": round(events / (t1 - t0), 1),
        "events_per_cpu_s": round(events / cpu_s, 1) if cpu_s > 0 else None,
        "worker_cpu_cores": round(cpu_s / (t1 - t0), 2), "loadavg": load,
    }  # fmt: skip


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def deliveries(url: str, decided: list, before: float) -> dict:
    """Did every notification decided before ``before`` reach each receiver once?"""
    rows = sql(
        url,
        "SELECT notification_id, receiver, outcome, result, "
        "toUnixTimestamp64Milli(at) / 1000 FROM llmpulse.alert_log",
    )
    owed = {(n.notification_id, r): n for n in decided if n.evaluated_at < before
            for r in n.receivers}  # fmt: skip
    delivered: Counter[tuple[str, str]] = Counter()
    delivered_at: dict[tuple[str, str], float] = {}
    first_try: dict[tuple[str, str], float] = {}
    failed: Counter[str] = Counter()
    gave_up: set[tuple[str, str]] = set()
    for i, r, outcome, res, t in rows:
        first_try[(i, r)] = min(first_try.get((i, r), float(t)), float(t))
        if outcome == "delivered":
            delivered[(i, r)] += 1
            delivered_at[(i, r)] = float(t)
        elif outcome == "failed":
            failed[f"{r}:{res}"] += 1
        elif outcome == "gave_up":
            gave_up.add((i, r))
    to_delivery = [delivered_at[p] - n.evaluated_at for p, n in owed.items() if p in delivered_at]
    to_first = [first_try[p] - n.evaluated_at for p, n in owed.items() if p in first_try]
    return {
        "pairs": len(owed),
        "delivered_once": sum(1 for p in owed if delivered[p] == 1),
        "missing": sum(1 for p in owed if delivered[p] == 0),  # gave_up ones included
        "delivered_twice_or_more": sum(1 for c in delivered.values() if c > 1),
        "gave_up": len(gave_up),
        "gave_up_owed": len(gave_up & owed.keys()),
        "failed_attempts": dict(failed),
        "last_delivery_at": max((delivered_at[p] for p in owed if p in delivered_at), default=None),
        "max_decision_to_delivery_s": round(max(to_delivery, default=0.0), 1),
        "max_decision_to_first_attempt_s": round(max(to_first, default=0.0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage-s", type=float, default=180.0)
    parser.add_argument("--healthy-s", type=float, default=120.0)
    parser.add_argument("--backlog", type=int, default=6000, help="unscored events kept queued")
    parser.add_argument("--warmup", type=int, default=12000, help="events stored before timing")
    parser.add_argument("--window", default="60s")
    parser.add_argument("--repeat", default="20s")
    parser.add_argument("--hook-timeout-s", type=float, default=10.0)
    parser.add_argument("--retry-deadline-s", type=float, default=None,
                        help="LLMPULSE_ALERT_RETRY_DEADLINE_S (default: 300)")  # fmt: skip
    parser.add_argument("--worker-log", type=Path, default=None, help="keep the worker's log here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    deadline_s = args.retry_deadline_s or RetryPolicy().deadline_s
    marks: dict[str, float] = {}

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "logs") as broker,
        Receivers() as pd,
        Receivers() as hook,
    ):
        # A held request answered after the worker's client gave up is a broken pipe:
        # expected here, so socketserver's traceback for it is noise.
        hook.server.handle_error = lambda *args: None  # type: ignore[method-assign]
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(RULES.format(pd=pd.url("/pd"), hook=hook.url("/hook"),
                                      timeout=args.hook_timeout_s, window=args.window,
                                      repeat=args.repeat))  # fmt: skip
        sql_port = free_port()
        env = {
            **os.environ,
            "LLMPULSE_HOME": f"{tmp}/home",
            "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LLMPULSE_SQL_PORT": str(sql_port),
            "LLMPULSE_RULES": str(rules),
            "BENCH_PD_KEY": "bench-routing-key",
        }
        if args.retry_deadline_s:
            env["LLMPULSE_ALERT_RETRY_DEADLINE_S"] = str(args.retry_deadline_s)
        url = f"http://127.0.0.1:{sql_port}/sql/"
        with open(Path(tmp) / "worker.out", "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        backlog = Backlog(broker.bootstrap, url, args.backlog)
        cpu = CpuSampler(worker.pid)
        try:
            backlog.thread.start()
            cpu.thread.start()
            console.print(f"warming up: {args.warmup:,} events stored, both receivers called…")
            wait_until(lambda: stored(url) >= args.warmup and pd.at("/pd") and hook.at("/hook"),
                       600, "the warm-up")  # fmt: skip

            def mark(name: str) -> None:
                marks[name] = time.time()

            mark("healthy")
            console.print(f"healthy for {args.healthy_s:.0f} s…")
            time.sleep(args.healthy_s)
            console.print(f"outage for {args.outage_s:.0f} s: webhook holds requests, "
                          "PagerDuty answers 503…")  # fmt: skip
            pd.statuses["/pd"] = [503]
            hook.hold.set()
            mark("outage")
            time.sleep(args.outage_s)
            mark("pd_back")  # PagerDuty's answers are 202 from here on
            pd.statuses["/pd"] = [202]
            hook.hold.clear()
            mark("recovery")
            console.print("receivers back; waiting for every notification to be delivered…")

            def all_delivered() -> bool:
                decided = decided_notifications(broker.bootstrap)
                d = deliveries(url, decided, marks["recovery"])
                return d["delivered_once"] + d["gave_up_owed"] >= d["pairs"]  # all finished

            wait_until(all_delivered, deadline_s + 300, "the deliveries")
            mark("delivered")
            decided = decided_notifications(broker.bootstrap)
            delivery = deliveries(url, decided, marks["recovery"])
            rows = sql(url, "SELECT toUnixTimestamp64Milli(ingested_at) / 1000 AS t, count() "
                            "FROM llm_events GROUP BY t ORDER BY t")  # fmt: skip
            batches = [(float(t), int(n)) for t, n in rows]
            # The webhook body carries the notification id. Which request was answered
            # in time is the worker's to say (alert_log); an answer released at recovery
            # can still beat a client timeout that a loaded event loop fires late.
            received_hook = {r.json["notification_id"] for r in hook.at("/hook")}
            received_pd = Counter(r.json["dedup_key"] for r in pd.at("/pd")
                                  if r.at >= marks["pd_back"])  # fmt: skip
        finally:
            backlog.stop.set()
            cpu.stop.set()
            backlog.thread.join(60)
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
            log = Path(tmp) / "home/logs/worker.log"
            if args.worker_log and log.exists():
                args.worker_log.write_bytes(log.read_bytes())

    during = [n for n in decided if marks["outage"] <= n.evaluated_at < marks["recovery"]]
    owed_pd = Counter(n.alert_id for n in during)  # each is a PagerDuty request after recovery
    owed_ids = {n.notification_id for n in decided if n.evaluated_at < marks["recovery"]}
    phases = {}
    for name, start, end in (("healthy", "healthy", "outage"), ("outage", "outage", "recovery"),
                             ("recovery", "recovery", "delivered")):  # fmt: skip
        phases[name] = {
            "seconds": round(marks[end] - marks[start], 1),
            **phase_rate(batches, marks[start], marks[end], cpu),
        }

    def ratio(key: str) -> float | None:
        healthy, outage = phases["healthy"][key], phases["outage"][key]
        return round(outage / healthy, 3) if healthy and outage else None

    last = delivery.pop("last_delivery_at")
    result = {
        "benchmark": "receiver_outage",
        "outage_s": args.outage_s, "healthy_s": args.healthy_s, "backlog": args.backlog,
        "rule": {"metric": "event_count > 0", "window": args.window, "repeat": args.repeat},
        "hook_timeout_s": args.hook_timeout_s, "retry_deadline_s": deadline_s,
        "retry_max_wait_s": RetryPolicy().max_s,
        "phases": phases,
        # every stored batch: (s since the healthy phase began, events)
        "batches": [[round(t - marks["healthy"], 1), n] for t, n in batches],
        "outage_over_healthy": ratio("events_per_s"),
        "outage_over_healthy_per_cpu_s": ratio("events_per_cpu_s"),
        "notifications": {"decided_before_recovery": sum(n.evaluated_at < marks["recovery"]
                                                         for n in decided),
                          "decided_during_outage": len(during),
                          "alerts": len({n.alert_id for n in decided})},
        "delivery": {**delivery,
                     "recovery_to_last_delivery_s": None if last is None
                     else round(last - marks["recovery"], 1),
                     "hook_received_all": owed_ids <= received_hook,
                     "pagerduty_received_all": all(received_pd[a] >= k
                                                   for a, k in owed_pd.items())},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    d = result["delivery"]
    if d["missing"] or d["gave_up"] or d["delivered_twice_or_more"]:
        sys.exit(1)


def report(result: dict) -> None:
    table = Table(title=f"scoring while receivers are down ({result['outage_s']:.0f} s outage)")
    for col in ("phase", "seconds", "batches", "stored events/s", "events per worker CPU-s",
                "worker CPU (cores)", "machine load avg"):  # fmt: skip
        table.add_column(col, justify="right")

    def show(value: float | None, fmt: str = ",.1f") -> str:
        return "—" if value is None else format(value, fmt)

    for name, p in result["phases"].items():
        table.add_row(name, f"{p['seconds']:.0f}", str(p["batches"]), show(p["events_per_s"]),
                      show(p["events_per_cpu_s"]), show(p["worker_cpu_cores"], ".2f"),
                      show(p["loadavg"], ".2f"))  # fmt: skip
    console.print(table)
    console.print(
        f"outage ÷ healthy: stored rate {result['outage_over_healthy']}, "
        f"per worker CPU-second {result['outage_over_healthy_per_cpu_s']}"
    )
    d, n = result["delivery"], result["notifications"]
    table = Table(title="delivery after recovery")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in (
        ("alerts firing", n["alerts"]),
        ("notifications decided before recovery", n["decided_before_recovery"]),
        ("… of which during the outage", n["decided_during_outage"]),
        ("(notification, receiver) pairs owed", d["pairs"]),
        ("delivered exactly once", d["delivered_once"]),
        ("missing", d["missing"]),
        ("delivered twice or more", d["delivered_twice_or_more"]),
        ("gave up (notification, receiver)", d["gave_up"]),
        ("failed attempts", ", ".join(f"{k} {v}" for k, v in sorted(d["failed_attempts"].items()))),
        ("receivers back → last delivery (s)", d["recovery_to_last_delivery_s"]),
        ("max decision → delivery (s)", d["max_decision_to_delivery_s"]),
        ("max decision → first attempt (s)", d["max_decision_to_first_attempt_s"]),
        ("webhook received every notification", d["hook_received_all"]),
        ("PagerDuty received every outage notification", d["pagerduty_received_all"]),
    ):
        table.add_row(label, str(value))
    console.print(table)


if __name__ == "__main__":
    main()
