"""Time to roll back: first bad event published → rollback call received.

A real worker (Tansu + Faust + chdb) runs a 1-minute-window rule (toxicity_rate
> 10%, ``for`` 30 s, at least 20 events, evaluated every ``LLMPULSE_ALERT_EVAL_S``,
default 5 s) with a local HTTP server as the rollback service. Steady v6 traffic
(10 events/s) runs throughout; each trial deploys a new version whose answers are
50% toxic, measures until the rollback call arrives, then moves traffic back to v6
and waits for the resolve. The target is window + for + under 5 s; the breakdown
shows where the time goes (alert state timestamps come from the ``alerts`` table).

Usage: ``.venv/bin/python bench/alert_latency.py [--trials 3] [--window 1m --for 30s]``
Writes ``bench/results/alert_latency.json`` and prints a table.
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
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alerting.rules_yaml import parse_duration  # noqa: E402
from ingest.producer import EventProducer  # noqa: E402
from ingest.synthetic import synthetic_events  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402

console = Console(width=120)
RESULTS = ROOT / "bench" / "results" / "alert_latency.json"
RATE = 10  # events per second and version
RULES = """
receivers:
  - name: deployer
    type: rollback
    url: http://127.0.0.1:{port}/rollback
    secret_env: BENCH_ROLLBACK_SECRET
  - name: hook
    type: webhook
    url: http://127.0.0.1:{port}/hook
rules:
  - name: toxic-output
    metric: toxicity_rate
    filters: {{app: support-bot}}
    window: {window}
    op: ">"
    threshold: 0.1
    for: {for_}
    min_events: 20
    severity: critical
    receivers: [hook]
    actions: [rollback]
"""


class Calls:
    def __init__(self) -> None:
        self.got: list[tuple[str, float, dict]] = []
        self.lock = threading.Lock()

    def first(self, path: str, version: str, status: str | None = None) -> float | None:
        with self.lock:
            for p, at, body in self.got:
                if p != path:
                    continue
                v = body.get("prompt_version") or body.get("labels", {}).get("prompt_version")
                if v == version and (status is None or body.get("status") == status):
                    return at
        return None


def serve(calls: Calls, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at = time.time()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with calls.lock:
                calls.got.append((self.path, at, body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sql(url: str, query: str) -> list[list]:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["rows"]


class Traffic:
    """Publishes RATE events/s for each active version from a background thread."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.versions: dict[str, float] = {"v6": 0.0}  # version -> toxic share
        self.first_sent: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with EventProducer(self.bootstrap) as producer:
            i = 0
            while not self.stop.is_set():
                tick = time.monotonic()
                for version, toxic in list(self.versions.items()):
                    for e in synthetic_events(
                        RATE // 2, seed=i, prefix=f"b{i}-{version}", app="support-bot",
                        prompt_version=version, toxic_share=toxic,
                    ):  # fmt: skip
                        e["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                        await producer.send_raw(None, json.dumps(e).encode())
                    await producer.flush()
                    self.first_sent.setdefault(version, time.time())
                i += 1
                await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--window", default="1m")
    parser.add_argument("--for", dest="for_", default="30s")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    window_s, for_s = parse_duration(args.window), parse_duration(args.for_)
    eval_s = float(os.environ.get("LLMPULSE_ALERT_EVAL_S", "5"))
    calls, port = Calls(), free_port()
    server = serve(calls, port)
    trials = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "logs") as broker,
    ):
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(RULES.format(port=port, window=args.window, for_=args.for_))
        sql_port = free_port()
        env = {
            **os.environ,
            "LLMPULSE_HOME": f"{tmp}/home",
            "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "LLMPULSE_SQL_PORT": str(sql_port),
            "LLMPULSE_RULES": str(rules),
            "BENCH_ROLLBACK_SECRET": "bench-secret",
        }
        url = f"http://127.0.0.1:{sql_port}/sql/"
        worker = subprocess.Popen(
            [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        traffic = Traffic(broker.bootstrap)
        try:
            traffic.thread.start()
            console.print("warming up: v6 traffic until the worker stores it…")
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if sql(url, "SELECT count() FROM llm_events")[0][0] >= 200:
                        break
                except OSError:
                    pass
                time.sleep(1)
            for t in range(args.trials):
                version = f"v{7 + t}"
                console.print(f"trial {t + 1}: deploying {version} (50% toxic answers)…")
                traffic.versions[version] = 0.5
                while version not in traffic.first_sent:
                    time.sleep(0.05)
                sent = traffic.first_sent[version]
                rollback = None
                while rollback is None and time.time() - sent < window_s + for_s + 120:
                    rollback = calls.first("/rollback", version)
                    time.sleep(0.05)
                del traffic.versions[version]  # the deploy service rolled it back
                if rollback is None:
                    raise SystemExit(f"no rollback call for {version}")
                resolved = None
                while resolved is None and time.time() - rollback < window_s + 120:
                    resolved = calls.first("/hook", version, "resolved")
                    time.sleep(0.2)
                q = (
                    "SELECT toUnixTimestamp64Milli(min(ingested_at)) / 1000 FROM llm_events "
                    f"WHERE prompt_version = '{version}'"
                )
                stored = float(sql(url, q)[0][0])
                active, fired = sql(
                    url,
                    "SELECT active_at, fired_at FROM llmpulse.alerts FINAL "
                    f"WHERE labels['prompt_version'] = '{version}'",
                )[0]
                trials.append({
                    "version": version,
                    "to_rollback_s": round(rollback - sent, 2),
                    "publish_to_stored_s": round(stored - sent, 2),
                    "stored_to_pending_s": round(float(active) - stored, 2),
                    "pending_to_firing_s": round(float(fired) - float(active), 2),
                    "firing_to_rollback_s": round(rollback - float(fired), 2),
                    "rollback_to_resolved_s": None if resolved is None
                    else round(resolved - rollback, 2),
                })  # fmt: skip
                console.print(f"  rollback after {rollback - sent:.1f} s")
        finally:
            traffic.stop.set()
            traffic.thread.join(30)
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
            server.shutdown()

    target = window_s + for_s + 5
    worst = max(t["to_rollback_s"] for t in trials)
    table = Table(title=f"first bad event → rollback call (window {args.window}, for {args.for_}, "
                  f"eval every {eval_s:g} s)")  # fmt: skip
    for col in ("trial", "to rollback s", "publish→stored", "stored→pending",
                "pending→firing", "firing→rollback", "rollback→resolved"):  # fmt: skip
        table.add_column(col, justify="right")
    for t in trials:
        table.add_row(
            t["version"], f"{t['to_rollback_s']:.1f}", f"{t['publish_to_stored_s']:.1f}",
            f"{t['stored_to_pending_s']:.1f}", f"{t['pending_to_firing_s']:.1f}",
            f"{t['firing_to_rollback_s']:.1f}", str(t["rollback_to_resolved_s"]),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"worst {worst:.1f} s vs target window + for + 5 s = {target:.0f} s "
        f"(ratio {worst / target:.2f}; minus `for` itself: {worst - for_s:.1f} s)"
    )
    result = {
        "benchmark": "alert_latency",
        "window_s": window_s, "for_s": for_s, "eval_s": eval_s, "events_per_s": RATE,
        "toxic_share": 0.5, "target_s": target, "worst_s": worst,
        "worst_over_target": round(worst / target, 3), "trials": trials,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
