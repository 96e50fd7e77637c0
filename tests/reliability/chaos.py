"""Chaos harness: SIGKILL the real worker at random times and at commit-order seams while
a steady stream flows, restart it, and afterwards check that nothing was lost or doubled.

A :class:`ChaosRun` publishes at ``rate`` payloads/s (:class:`Traffic`), at least
``events`` of them and until the last kill: background traffic, a calm ``chaos-bot v1``,
during each scripted incident a new version of ``chaos-bot`` (v2, v3, ...) whose answers
are often toxic, as after a bad deploy, and ``invalid_share`` broken payloads of every
kind in ``ingest.synthetic.MALFORMED_KINDS``, each known by the (partition, offset) the
broker gave it. An incident ends the way a rollback ends it: its version gets no more
traffic, and the alert resolves once those events left the window. One version per
incident, rather than one version turning toxic and back, keeps the alert's value clear
of calm events that a lagging partition delivers late: a second episode of one alert
can then only come from the worker.

Workers run under ``tests.reliability.faults`` and die one per entry of ``plan``, each
no earlier than its moment in ``spread_s`` (at once when 0): ``external`` is a SIGKILL
from here at a seeded delay once the worker stores; a seam name makes the worker kill
itself there. A notify seam needs a notification in flight, so a worker armed at one
starts an incident unless a bad version gets traffic already; an incident ends once its
trigger reached the webhook. After the plan a clean worker stores the rest;
:mod:`tests.reliability.chaos_checks` then compares the tables, the dead-letter topic
and the receivers with what was sent, and stops it.

Used by ``tests/reliability/test_chaos.py`` (CI size) and ``bench/chaos.py`` (50,000 events).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from ingest.producer import EventProducer
from ingest.schema import Rejection, parse_event
from ingest.synthetic import MALFORMED_KINDS, malformed_payload, synthetic_events
from tests.integration.conftest import Stack
from tests.integration.receivers import Receivers

__all__ = ["APP", "ChaosConfig", "ChaosRun", "Incident", "Kill", "Traffic"]

APP = "chaos-bot"
GOOD = "v1"  # always calm: what a rollback goes back to
NOTIFY_SEAMS = ("before_notify", "after_notify")
STORE_SEAMS = ("before_store", "after_store")
PD_KEY = "chaos-routing-key"
SECRET = "chaos-rollback-secret"
RULES = """
receivers:
  - {{name: pager, type: pagerduty, url: "{pd}", routing_key_env: CHAOS_PD_KEY}}
  - {{name: hook, type: webhook, url: "{hook}"}}
  - {{name: deployer, type: rollback, url: "{rollback}", secret_env: CHAOS_ROLLBACK_SECRET}}
rules:
  - {{name: chaos-toxic, metric: toxicity_rate, filters: {{app: {app}}}, window: {window}s,
     op: ">", threshold: 0.2, for: {for_}s, min_events: {min_events}, severity: critical,
     receivers: [pager, hook], actions: [rollback]}}
"""


@dataclass(frozen=True)
class ChaosConfig:
    events: int = 50_000  # payloads published at least, valid and invalid (see Traffic)
    rate: float = 100.0  # payloads per second
    invalid_share: float = 0.02
    plan: tuple[str, ...] = (
        "external", "before_notify", "after_store", "after_notify", "external", "before_store",
    )  # fmt: skip
    incidents: int = 2  # at most this many bad versions of chaos-bot
    seed: int = 0
    store_kill_p: float = 0.15  # per batch, for a worker armed at a store seam
    external_delay_s: tuple[float, float] = (1.0, 20.0)  # after it stores its first batch
    batch_max: int = 250  # small batches keep stored rows flowing into the alert window
    window_s: float = 30.0
    for_s: float = 2.0
    min_events: int = 30
    eval_s: float = 0.5
    toxic_share: float = 0.6  # of a bad version's answers
    hold_s: float = 3.0  # a bad version keeps its traffic this long after its trigger arrived
    session_timeout_s: float = 6.0
    seam_timeout_s: float = 120.0  # a seam not reached by then: killed from here instead
    spread_s: float = 0.0  # kills spread over this many seconds (0: each as soon as it can)
    stall_s: float = 180.0  # the clean worker stored nothing new and no resolve came: stop


@dataclass
class Incident:
    version: str
    started: float
    ended: float | None = None
    fired: float | None = None  # the webhook got its trigger
    resolved: float | None = None  # the webhook got its resolve


@dataclass
class Kill:
    n: int
    planned: str
    seam: str  # where it died: a seam, "external", or "external (seam not reached)"
    started_s: float  # since the run began
    died_s: float
    stored_before: int  # raw llm_events rows at most a second before it died (-1: unknown)
    during_traffic: bool


# (key, value, None) for a valid event; (key, value, (kind, field)) for an invalid one
Payload = tuple[bytes, bytes, tuple[str, str] | None]


class Traffic:
    """Publishes ``rate`` payloads/s from a thread until ``events`` are out and the kill
    plan is done (``plan_done``), so every kill lands while traffic flows."""

    def __init__(self, bootstrap: str, cfg: ChaosConfig) -> None:
        self.bootstrap = bootstrap
        self.cfg = cfg
        self.bad: str | None = None  # the bad version getting traffic now, if any
        self.valid: set[str] = set()
        self.invalid: dict[tuple[int, int], tuple[str, str]] = {}  # (p, o) -> (kind, field)
        self.published = 0
        self.first_at: float | None = None
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.plan_done = threading.Event()
        self.thread = threading.Thread(target=self._main, name="chaos-traffic", daemon=True)

    @property
    def finished(self) -> bool:
        return self.done_at is not None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the run, not lost in a thread
            self.error = exc

    def _tick(self, tick: int, n: int, first_invalid: int, n_invalid: int) -> list[Payload]:
        """One tick's payloads, shuffled; invalid ones carry (kind, field) of their rejection."""
        n_valid, bad = n - n_invalid, self.bad
        bg = n_valid // 2
        n_bad = (n_valid - bg) // 2 if bad else 0
        prefix = f"{self.cfg.seed}-{tick}"
        events = [
            *synthetic_events(bg, seed=tick, prefix=f"bg{prefix}"),
            *synthetic_events(n_valid - bg - n_bad, seed=tick, prefix=f"{GOOD}-{prefix}",
                              app=APP, prompt_version=GOOD),
            *synthetic_events(n_bad, seed=tick, prefix=f"{bad}-{prefix}", app=APP,
                              prompt_version=bad, toxic_share=self.cfg.toxic_share),
        ]  # fmt: skip
        out: list[Payload] = [
            (e["event_id"].encode(), json.dumps(e).encode(), None) for e in events
        ]
        for j in range(first_invalid, first_invalid + n_invalid):
            kind = MALFORMED_KINDS[j % len(MALFORMED_KINDS)]
            payload, field = malformed_payload(kind, j)
            rejected = parse_event(payload)  # the test data must be what it claims to be
            if not isinstance(rejected, Rejection) or rejected.field != field:
                raise ValueError(f"malformed_payload({kind!r}, {j}) is not rejected at {field}")
            out.append((f"invalid-{j}".encode(), payload, (kind, field)))
        random.Random(self.cfg.seed * 1_000_003 + tick).shuffle(out)
        return out

    async def _run(self) -> None:
        cfg = self.cfg
        per_tick = max(1, round(cfg.rate / 2))
        tick, invalid = 0, 0
        async with EventProducer(self.bootstrap) as producer:
            while not self.stop.is_set() and (
                self.published < cfg.events or not self.plan_done.is_set()
            ):
                started = time.monotonic()
                left = cfg.events - self.published
                n = min(per_tick, left) if left > 0 else per_tick
                n_invalid = int((self.published + n) * cfg.invalid_share) - invalid
                payloads = self._tick(tick, n, invalid, n_invalid)
                futures = [await producer.send_raw(k, v) for k, v, _ in payloads]
                for (key, _, rejected), meta in zip(payloads, await asyncio.gather(*futures),
                                                    strict=True):  # fmt: skip
                    if rejected:
                        self.invalid[(meta.partition, meta.offset)] = rejected
                    else:
                        self.valid.add(key.decode())
                self.first_at = self.first_at or time.time()
                self.published += n
                invalid += n_invalid
                tick += 1
                await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
        self.done_at = time.time()


class ChaosRun:
    """One chaos run on a stack (broker + home) with receivers on 127.0.0.1."""

    def __init__(self, stack: Stack, receivers: Receivers, cfg: ChaosConfig) -> None:
        self.stack = stack
        self.receivers = receivers
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.traffic = Traffic(stack.bootstrap, cfg)
        self.kills: list[Kill] = []
        self.incidents: list[Incident] = []
        self.t0 = 0.0
        self.drained_at: float | None = None
        self.last_exit: int | None = None  # of the clean worker, stopped with SIGTERM
        self.url = f"http://127.0.0.1:{stack.sql_port}/sql/"
        rules = stack.home.parent / "chaos-rules.yaml"
        rules.write_text(RULES.format(
            pd=receivers.url("/pd"), hook=receivers.url("/hook"),
            rollback=receivers.url("/rollback"), app=APP, window=cfg.window_s,
            for_=cfg.for_s, min_events=cfg.min_events,
        ))  # fmt: skip
        stack.worker_module = "tests.reliability.faults"
        self.base_env = {
            "LLMPULSE_RULES": str(rules),
            "LLMPULSE_ALERT_EVAL_S": str(cfg.eval_s),
            "LLMPULSE_BATCH_MAX": str(cfg.batch_max),
            "LLMPULSE_KAFKA_SESSION_TIMEOUT_S": str(cfg.session_timeout_s),
            "CHAOS_PD_KEY": PD_KEY,
            "CHAOS_ROLLBACK_SECRET": SECRET,
        }

    # -- observing -------------------------------------------------------------------

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows as dicts from the live worker's read-only endpoint."""
        req = urllib.request.Request(
            self.url, data=json.dumps({"query": sql}).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = json.loads(resp.read())
        return [dict(zip(body["columns"], r, strict=True)) for r in body["rows"]]

    def query(self, sql: str) -> list[list[Any]] | None:
        """Rows from the live worker's endpoint; None while no worker answers."""
        try:
            return [list(r.values()) for r in self.rows(sql)]
        except (OSError, ValueError):
            return None

    def stored(self) -> int:
        rows = self.query("SELECT count() FROM llmpulse.llm_events")
        return int(rows[0][0]) if rows else -1

    def webhook(self, status: str, version: str) -> float | None:
        """When the webhook first got a ``status`` message about ``version``, if it did."""
        times = [
            r.at
            for r in self.receivers.at("/hook")
            if r.json["status"] == status and r.json["labels"].get("prompt_version") == version
        ]
        return min(times, default=None)

    def direct(self, want_notification: bool) -> None:
        """Script the incidents: start one when a notification is wanted and no bad
        version gets traffic, end each once its trigger arrived, note its resolve."""
        if self.traffic.error is not None:
            raise RuntimeError("publishing failed") from self.traffic.error
        now, cfg = time.time(), self.cfg
        for inc in self.incidents:  # each its own version, so its own alert: they overlap
            inc.fired = inc.fired or self.webhook("firing", inc.version)
            if inc.fired and inc.ended is None and now - inc.fired >= cfg.hold_s:
                inc.ended = now
                if self.traffic.bad == inc.version:
                    self.traffic.bad = None
            if inc.ended and inc.resolved is None:
                inc.resolved = self.webhook("resolved", inc.version)
        flowing = any(i.ended is None for i in self.incidents)
        more = len(self.incidents) < cfg.incidents and not self.traffic.finished
        if want_notification and more and not flowing:
            version = f"v{len(self.incidents) + 2}"
            self.incidents.append(Incident(version, started=now))
            self.traffic.bad = version

    # -- running ---------------------------------------------------------------------

    def run(self) -> None:
        self.t0 = time.time()
        self.traffic.thread.start()
        try:
            for n, (planned, arm_s) in enumerate(
                zip(self.cfg.plan, self._arm_times(), strict=True)
            ):
                self._incarnation(n, planned, arm_s)
            self.traffic.plan_done.set()
            self._drain()
        except BaseException:
            self.stack.kill_workers()
            raise
        finally:
            self.traffic.stop.set()
            self.traffic.thread.join(60)
        if self.traffic.error is not None:
            raise RuntimeError("publishing failed") from self.traffic.error

    def finish(self) -> int:
        """Stop the clean worker the way an operator would (SIGTERM); its exit code."""
        self.last_exit = self.stack.stop_worker(self.stack.workers[-1], timeout=120)
        return self.last_exit

    def _arm_times(self) -> list[float]:
        """Earliest moment of each kill, in seconds since the run began: at once, or one
        seeded moment in each of ``len(plan)`` equal slices of ``spread_s``."""
        k, span = len(self.cfg.plan), self.cfg.spread_s
        return [(i + self.rng.uniform(0.2, 0.8)) * span / k if span else 0.0 for i in range(k)]

    def _start(self, planned: str, n: int, arm_in: float = 0.0) -> Any:
        env = dict(self.base_env)
        if planned in STORE_SEAMS or planned in NOTIFY_SEAMS:
            p = self.cfg.store_kill_p if planned in STORE_SEAMS else 1.0
            env.update({
                "LLMPULSE_FAULT_KILL_AT": planned, "LLMPULSE_FAULT_KILL_P": str(p),
                "LLMPULSE_FAULT_SEED": str(self.cfg.seed * 100 + n),
                "LLMPULSE_FAULT_KILL_AFTER_S": f"{arm_in:.1f}",
            })  # fmt: skip
        self.stack.extra_env = env
        return self.stack.start_worker()

    def _incarnation(self, n: int, planned: str, arm_s: float) -> None:
        """Start a worker armed at ``planned`` from ``arm_s``; return once it was SIGKILLed."""
        started = time.time()
        arm_in = max(0.0, self.t0 + arm_s - started)
        proc = self._start(planned, n, arm_in)
        log = self.stack.home.parent / f"worker-{len(self.stack.workers) - 1}.out"
        armed_at = time.monotonic() + arm_in
        deadline = armed_at + self.cfg.seam_timeout_s  # a seam not reached: killed from here
        kill_at: float | None = None
        baseline = last = -1
        polled = 0.0
        while proc.poll() is None:
            now = time.monotonic()
            self.direct(want_notification=planned in NOTIFY_SEAMS and now >= armed_at)
            if now - polled >= 1.0:
                last, polled = self.stored(), now
                baseline = last if baseline < 0 else baseline
            storing = last > baseline >= 0
            if planned == "external" and kill_at is None and now >= armed_at and storing:
                kill_at = now + self.rng.uniform(*self.cfg.external_delay_s)
            if now >= (kill_at or deadline):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.2)
        code = proc.wait(60)
        text = log.read_text(errors="replace") if log.exists() else ""
        if code != -signal.SIGKILL:
            raise AssertionError(f"worker {n} ({planned}) exited with {code}, not SIGKILL:\n"
                                 f"{text[-3000:]}")  # fmt: skip
        seam = re.findall(r"FAULT: SIGKILL at (\w+)", text)
        where = seam[-1] if seam else "external"
        if planned != "external" and not seam:
            where = "external (seam not reached)"
        self.kills.append(Kill(
            n, planned, where, round(started - self.t0, 1), round(time.time() - self.t0, 1),
            last, not self.traffic.finished,
        ))  # fmt: skip

    def _drain(self) -> None:
        """A clean worker: finish the scripted incidents and store everything, or stop
        waiting once nothing moved for ``stall_s`` (the checks then say what is missing).
        It keeps running, so the checks read through its endpoint; ``finish`` stops it."""
        self._start("clean", len(self.cfg.plan))
        seen: Any = None
        moved = time.monotonic()
        while time.monotonic() - moved < self.cfg.stall_s:
            self.direct(want_notification=True)
            time.sleep(1.0)
            rows = self.query(
                "SELECT (SELECT count() FROM llmpulse.llm_events FINAL), "
                "(SELECT count() FROM llmpulse.dead_letters FINAL)"
            )
            now = (
                rows and (int(rows[0][0]), int(rows[0][1])),
                [i.resolved for i in self.incidents],
            )
            if now != seen or not self.traffic.finished:
                seen, moved = now, time.monotonic()
            want = (len(self.traffic.valid), len(self.traffic.invalid))
            if self.traffic.finished and now[0] == want and all(now[1]):
                self.drained_at = time.time()
                break
        # Anything extra (a doubled trigger, a late repeat) would arrive by now.
        time.sleep(max(3.0, 4 * self.cfg.eval_s))

    def summary(self) -> dict[str, Any]:
        tr, t0 = self.traffic, self.traffic.first_at or self.t0

        def since(t: float | None) -> float | None:
            return None if t is None else round(t - self.t0, 1)

        incidents = [
            {k: v if k == "version" else since(v) for k, v in vars(i).items()}
            for i in self.incidents
        ]
        return {
            "published": tr.published,
            "valid": len(tr.valid),
            "invalid": len(tr.invalid),
            "publish_s": round((tr.done_at or time.time()) - t0, 1),
            "drained_s": None if self.drained_at is None else round(self.drained_at - t0, 1),
            "kills": [vars(k) for k in self.kills],
            "incidents": incidents,
        }
