"""Keep-up under overload: a real worker offered --factor x its model capacity.

Issue 16's keep-up benchmark. Load shedding lets a worker that is offered more than
its models can score stay within ``LLMPULSE_MAX_LAG_S`` of now: the models score a
uniform sample, the cheap detectors every event, and rates are taken over the
scored rows. This script checks that on real parts, in one run:

1. **capacity C**: the worker's scorer (``build_scorer``, the same settings) scores a
   few hundred events of the offered mix in-process, no I/O: C events/s;
2. **stack**: the embedded broker and a real ``llmpulse worker`` subprocess
   (``LLMPULSE_MAX_LAG_S`` 30) with one rule, ``toxicity_rate > 15 %`` over 60 s for
   30 s, delivered to a webhook served here on 127.0.0.1;
3. **load**: an asyncio producer offers factor x C events/s for ``--minutes``, each
   stamped ``ts`` = now. Events are the realistic mix of ``bench/throughput.py``
   (half RAG answers with their retrieved chunks, half chat turns), but every reply's
   verdict is known: the candidate replies are scored once in-process with the same
   scorer and only those clearly toxic (score > 0.8) or clearly polite (< 0.2) are
   kept, so the toxic share of the offered stream is known exactly (5 % in the first
   half, 25 % in the second: the step);
4. **watch**: every ~10 s the worker's SQL endpoint is polled (rows stored, scored,
   newest stored ``ts`` per partition) and its log read for "load shedding starts /
   stops"; after the load the worker drains, and the stored rows are read in full.

Checks (PASS/FAIL, also in the JSON):

* **lag bounded**: every event's age when stored (``ingested_at - ts``: the age of
  the oldest unstored event peaks just before it is stored, so the maximum over the
  rows is the worst lag of the run) stays within max_lag + one batch's time, one
  batch's time being ``LLMPULSE_BATCH_MAX`` / C (a full batch scored in full);
* **rates unbiased**: for each half, flagged / scored over the stored rows has a 95 %
  Wilson interval that holds the true toxic share of the events offered in it;
* **alert in time**: the webhook gets the firing alert within window + for + 10 s of
  the step (and nothing fires before it);
* the sampled share (scored / events) per minute, from the ``llm_sampling`` view.

Usage: ``.venv/bin/python bench/keepup.py [--minutes 10] [--factor 4] [--out PATH]``
(``--minutes 2`` for a quick look). Writes ``bench/results/keepup.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from throughput import DEVSETS  # noqa: E402

from alerting.rules_yaml import parse_duration  # noqa: E402
from alerting.significance import wilson_interval  # noqa: E402
from core.settings import load_settings  # noqa: E402
from detectors.base import TextBatch  # noqa: E402
from ingest.producer import EventProducer  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402
from processors.batch import Record, Scorer, build_scorer  # noqa: E402

console = Console(width=120)
RESULTS = ROOT / "bench" / "results" / "keepup.json"
APP = "keepup-bot"
RULE = "keepup-toxic"
TOXIC_ABOVE, POLITE_BELOW = 0.8, 0.2  # a reply's verdict is known only outside these
FLAG_AT = 0.5  # the rule's score_threshold (the default)
TICK_S = 0.05  # the producer sends what is due every tick
POLL_S = 10.0
RULES = """
receivers:
  - name: hook
    type: webhook
    url: http://127.0.0.1:{port}/hook
rules:
  - name: {rule}
    metric: toxicity_rate
    filters: {{app: {app}}}
    window: {window}
    op: ">"
    threshold: {threshold}
    score_threshold: {flag_at}
    for: {for_}
    min_events: 20
    severity: critical
    receivers: [hook]
"""


# ---------------------------------------------------------------- the offered events


def devset(name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (DEVSETS / f"{name}.jsonl").read_text().splitlines()]


class Template:
    """An event's JSON with holes (``@@NAME@@`` inside strings), split once, so that
    each send only joins bytes: the producer shares two cores with the worker."""

    HOLE = re.compile(rb"@@([A-Z]+)@@")

    def __init__(self, event: dict[str, Any]) -> None:
        parts = self.HOLE.split(json.dumps(event, ensure_ascii=False).encode())
        self.parts = [p if i % 2 == 0 else p.decode() for i, p in enumerate(parts)]

    def fill(self, values: dict[str, bytes]) -> bytes:
        return b"".join(p if isinstance(p, bytes) else values[p] for p in self.parts)


def json_inner(text: str) -> bytes:
    """``text`` as it goes between the quotes of a JSON string."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


@dataclass
class Texts:
    """The mix's texts, with the replies whose verdict is known."""

    rag: list[dict[str, Any]]  # rows whose answer is clearly polite, whatever its number
    prompts: list[str]
    toxic: list[str]
    polite: list[str]
    dropped: dict[str, int]
    margins: dict[str, float]  # how close the kept texts come to the cut-offs


def known_texts(scorer: Scorer) -> Texts:
    """Score every candidate reply once with the worker's scorer; keep the clear ones.

    A RAG answer goes out as ``answer (#N)`` with the event's number (as in
    ``throughput.realistic_events``: no two events share a text), so each answer is
    scored with three different numbers and kept only if polite with all of them."""
    rag = devset("rag") + devset("rag_heldout")
    replies = [r["text"] for r in devset("toxicity") + devset("toxicity_heldout")]
    prompts = [r["text"] for r in devset("injection") + devset("injection_heldout")]

    def toxicity(texts: list[str]) -> list[float]:
        batch = TextBatch(["question"] * len(texts), texts, [None] * len(texts))
        return [t.scores["toxicity"] for t in scorer.suite.toxicity.score(batch)]

    numbered = toxicity([f"{r['answer']} (#{n})" for n in (7, 40_123, 9_876_543) for r in rag])
    worst = [max(numbered[i + k * len(rag)] for k in range(3)) for i in range(len(rag))]
    reply_scores = toxicity(replies)
    toxic = [t for t, s in zip(replies, reply_scores, strict=True) if s > TOXIC_ABOVE]
    polite = [t for t, s in zip(replies, reply_scores, strict=True) if s < POLITE_BELOW]
    keep = [r for r, s in zip(rag, worst, strict=True) if s < POLITE_BELOW]
    if not (toxic and polite and keep):
        raise SystemExit(
            f"{scorer.suite.toxicity_model} leaves {len(toxic)} replies above {TOXIC_ABOVE}, "
            f"{len(polite)} below {POLITE_BELOW} and {len(keep)} RAG answers below it: the "
            "offered stream needs some of each to know its toxic share"
        )
    return Texts(
        keep, prompts, toxic, polite,
        dropped={"rag_answers": len(rag) - len(keep),
                 "replies": len(replies) - len(toxic) - len(polite)},
        margins={"toxic_reply_min": round(min(s for s in reply_scores if s > TOXIC_ABOVE), 4),
                 "polite_reply_max": round(max(s for s in reply_scores if s < POLITE_BELOW), 4),
                 "rag_answer_max": round(max(s for s in worst if s < POLITE_BELOW), 4)},
    )  # fmt: skip


class Offered:
    """The offered stream: slot 2k a RAG answer (polite), slot 2k+1 a chat turn whose
    reply is toxic with probability 2 x share, so the stream's toxic share is
    ``share``. The event id says the half and the truth: ``ku-H-t|p-SEQ``."""

    def __init__(self, texts: Texts, seed: int) -> None:
        self.rng = random.Random(seed)
        self.toxic = [json_inner(t) for t in texts.toxic]
        self.polite = [json_inner(t) for t in texts.polite]
        models = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "gemini-2.0-flash"]

        def event(i: int, inp: str, out: str, context: list[str] | None) -> dict[str, Any]:
            e = {
                "event_id": "@@ID@@", "ts": "@@TS@@", "app": APP, "environment": "prod",
                "model": models[i % len(models)], "prompt_version": "v1",
                "input": inp, "output": out,
                "usage": {"input_tokens": 200 + 37 * (i % 50), "output_tokens": 40 + i % 300},
                "latency_ms": 400.0 + 13 * (i % 200), "status": "ok",
            }  # fmt: skip
            if context:
                e["context"] = context
            return e

        self.rag = [
            Template(event(i, f"{r['question']} (#@@N@@)", f"{r['answer']} (#@@N@@)",
                           r["context"]))
            for i, r in enumerate(texts.rag)
        ]  # fmt: skip
        self.chat = [Template(event(i, p, "@@REPLY@@", None)) for i, p in enumerate(texts.prompts)]
        self.seq = 0

    def next(self, half: int, share: float, ts: str) -> tuple[bytes, bytes, bool]:
        """(key, value, toxic) of the next event."""
        seq, self.seq = self.seq, self.seq + 1
        k = seq // 2
        toxic = seq % 2 == 1 and self.rng.random() < min(1.0, 2 * share)
        eid = f"ku-{half}-{'t' if toxic else 'p'}-{seq:09d}".encode()
        values = {"ID": eid, "TS": ts.encode(), "N": str(seq).encode()}
        if seq % 2 == 0:
            return eid, self.rag[k % len(self.rag)].fill(values), False
        values["REPLY"] = self.rng.choice(self.toxic if toxic else self.polite)
        return eid, self.chat[k % len(self.chat)].fill(values), toxic


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def model_capacity(
    scorer: Scorer, texts: Texts, events: int, batch: int, rounds: int = 3
) -> dict[str, Any]:
    """Events/s of the worker's whole scoring step (parse, every detector, rows), no I/O,
    on the offered mix (5 % toxic), in the state a worker reaches within seconds: one
    cycle of the mix first, so that what repeats (prompts, replies, retrieved chunks) is
    in the vector cache, as it is in the worker; numbered RAG texts are always new.
    The best of ``rounds`` rounds of ``events`` new events: other work on the machine
    only ever slows a round down."""
    stream = Offered(texts, seed=99)
    stream.seq = 10**8  # numbers the real stream never reaches: nothing cached for it
    warm, measured = 2 * max(len(texts.rag), len(texts.prompts)), events

    def records(n: int) -> list[Record]:
        now = time.time()
        return [
            Record("llm.events", 0, i, k, v, now)
            for i, (k, v, _) in enumerate(stream.next(0, 0.05, now_iso()) for _ in range(n))
        ]

    for i in range(0, warm, batch):
        scorer.score(records(min(batch, warm - i)))
    times = []
    for _ in range(rounds):
        todo = records(measured)
        started = time.perf_counter()
        for i in range(0, len(todo), batch):
            scorer.score(todo[i : i + batch])
        times.append(time.perf_counter() - started)
    seconds = min(times)
    return {"events": measured, "batch": batch, "warm_up_events": warm,
            "rounds_events_per_s": [round(measured / t, 1) for t in times],
            "seconds": round(seconds, 2), "events_per_s": round(measured / seconds, 1)}  # fmt: skip


# ---------------------------------------------------------------- receiver and SQL


class Hook:
    """A webhook receiver on 127.0.0.1: records every notification."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.lock:
                    owner.got.append((at, json.loads(body)))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def firings(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(at, b) for at, b in self.got
                    if b.get("status") == "firing" and b.get("rule") == RULE]  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sql(url: str, query: str, timeout: float = 60) -> list[list[Any]]:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())["rows"]


def ms(column: str) -> str:
    return f"toUnixTimestamp64Milli({column})"


SHEDDING = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)\].*(load shedding (?:starts|stops).*)$"
)


def shedding_lines(log: Path) -> list[tuple[float, str]]:
    """(epoch seconds, message) of the worker's "load shedding starts/stops" lines
    (Faust logs local time)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in log.read_text(errors="replace").splitlines():
            if m := SHEDDING.search(line):
                at = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                out.append((at + int(m.group(2)) / 1000, m.group(3).strip()))
    return out


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    url: str
    log: Path
    rate: float
    first_s: float  # the first half's length; the step comes after it
    second_s: float
    shares: tuple[float, float]
    started: float = 0.0
    step: float = 0.0
    ended: float = 0.0
    offered: list[int] = field(default_factory=lambda: [0, 0])  # per half
    offered_toxic: list[int] = field(default_factory=lambda: [0, 0])
    polls: list[dict[str, Any]] = field(default_factory=list)
    producer_late_s: float = 0.0  # the most the producer fell behind its schedule
    load_at_start: float = 0.0  # the 1-minute load average before this script did anything


async def offer(bootstrap: str, stream: Offered, run: Run) -> None:
    """Paced: every tick, send what is due by now at ``run.rate``."""
    async with EventProducer(bootstrap, idempotent=False) as producer:
        run.started = time.time()
        run.step = run.started + run.first_s
        sent = 0
        while (now := time.time()) < run.step + run.second_s:
            half = 0 if now < run.step else 1
            due = int(run.rate * (now - run.started))
            ts = now_iso()
            for _ in range(due - sent):
                key, value, toxic = stream.next(half, run.shares[half], ts)
                await producer.send_raw(key, value)
                run.offered[half] += 1
                run.offered_toxic[half] += toxic
            sent = due
            run.producer_late_s = max(run.producer_late_s, time.time() - now - TICK_S)
            await asyncio.sleep(max(0.0, TICK_S - (time.time() - now)))
        run.ended = time.time()


def poll_once(run: Run, last_ingested_ms: int) -> dict[str, Any]:
    new = f"{ms('ingested_at')} > {last_ingested_ms}"
    stored, scored, newest_ingested, fresh, worst_age = sql(
        run.url,
        f"SELECT count(), count(toxicity), max({ms('ingested_at')}), countIf({new}), "
        f"maxIf({ms('ingested_at')} - {ms('ts')}, {new}) / 1000 "
        f"FROM llm_events WHERE app = '{APP}'",
    )[0]
    newest = sql(
        run.url,
        f"SELECT kafka_partition, max({ms('ts')}) FROM llm_events WHERE app = '{APP}' "
        "GROUP BY kafka_partition",
    )
    now = time.time()
    # The oldest unstored event of a partition is newer than its newest stored one, so
    # now - (the newest stored ts of the partition furthest behind) bounds its age.
    staleness = now - min(int(t) for _, t in newest) / 1000 if newest else None
    minute = sql(
        run.url,
        "SELECT toUnixTimestamp(minute), events, scored, sample_rate_avg FROM llm_sampling "
        f"WHERE app = '{APP}' AND minute >= now() - INTERVAL 2 MINUTE "
        "ORDER BY minute DESC LIMIT 2",
    )
    return {
        "t_s": round(now - run.started, 1),
        "offered": sum(run.offered),
        "stored": int(stored),
        "scored": int(scored),
        "staleness_s": None if staleness is None else round(staleness, 1),
        "stored_since_last": int(fresh),
        "max_age_stored_since_last_s": round(float(worst_age), 1) if int(fresh) else None,
        "newest_ingested_ms": int(newest_ingested or 0),
        "minutes": [
            {"minute_s": round(int(m) - run.started), "events": int(e), "scored": int(s),
             "sample_rate_avg": round(float(r), 4)}
            for m, e, s, r in minute
        ],
        "shedding_lines": len(shedding_lines(run.log)),
    }  # fmt: skip


async def watch(run: Run, worker: subprocess.Popen[bytes], until: asyncio.Event) -> None:
    last = 0
    while not until.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(until.wait(), POLL_S)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see {run.log}")
        try:
            p = await asyncio.to_thread(poll_once, run, last)
        except OSError as exc:  # a slow answer under load: note it, poll again
            console.print(f"[yellow]poll failed: {exc}[/]")
            continue
        last = max(last, p["newest_ingested_ms"])
        run.polls.append(p)
        frac = f"{p['scored'] / p['stored']:.0%}" if p["stored"] else "-"
        console.print(
            f"  t={p['t_s']:6.0f}s offered {p['offered']:>8,} stored {p['stored']:>8,} "
            f"scored {frac:>4}  staleness {p['staleness_s']}s  "
            f"max age stored {p['max_age_stored_since_last_s'] or '-'}s"
        )


async def load_phase(bootstrap: str, stream: Offered, run: Run, worker: Any) -> None:
    """Offer the load while polling; a poller that fails (the worker died) stops both."""
    until = asyncio.Event()
    watcher = asyncio.create_task(watch(run, worker, until))
    producer = asyncio.create_task(offer(bootstrap, stream, run))
    try:
        await asyncio.wait({watcher, producer}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            producer.cancel()
            watcher.result()  # raises what stopped it
        await producer
    finally:
        until.set()  # the poller ends at its next wake-up
        producer.cancel()  # a no-op once it has finished
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(producer, watcher, return_exceptions=True), 120)


def wait_stored(url: str, where: str, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, IndexError):
            if sql(url, f"SELECT count() FROM llm_events WHERE {where}")[0][0] >= n:
                return True
        time.sleep(1)
    return False


def warm_up(bootstrap: str, url: str, stream: Offered, worker: Any) -> None:
    """Group join, migrations and the first batches, before the clock starts."""

    async def send() -> None:
        async with EventProducer(bootstrap, idempotent=False) as producer:
            for _ in range(200):
                _, value, _ = stream.next(0, 0.0, now_iso())
                value = value.replace(f'"app": "{APP}"'.encode(), b'"app": "keepup-warmup"')
                await producer.send_raw(None, value)

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the worker's endpoint first
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode} while starting")
        with contextlib.suppress(OSError):
            sql(url, "SELECT 1", timeout=5)
            break
        time.sleep(1)
    asyncio.run(send())
    if not wait_stored(url, "app = 'keepup-warmup'", 200, timeout=180):
        raise RuntimeError("the worker did not store the 200 warm-up events in 180 s")


# ---------------------------------------------------------------- results


def results(run: Run, args: argparse.Namespace, capacity: float, batch_max: int,
            hook: Hook, log: list[tuple[float, str]]) -> dict[str, Any]:  # fmt: skip
    url = run.url
    part = "splitByChar('-', event_id)"
    halves = {
        int(h): {**dict(zip(("stored", "true_toxic", "scored", "flagged", "scored_true_toxic",
                             "disagree"), map(int, rest), strict=True)),
                  "weighted": None if weighted is None else float(weighted),
                  "weighted_n_eff": float(sw) ** 2 / float(sw2) if sw2 else 0.0}
        for h, *rest, weighted, sw, sw2 in sql(url, (
            f"SELECT toUInt8OrZero({part}[2]) AS half, count(), countIf({part}[3] = 't'), "
            f"count(toxicity), countIf(toxicity >= {FLAG_AT}), "
            f"countIf(toxicity IS NOT NULL AND {part}[3] = 't'), "
            f"countIf(toxicity IS NOT NULL AND (toxicity >= {FLAG_AT}) != ({part}[3] = 't')), "
            f"sumIf(1 / sample_rate, toxicity >= {FLAG_AT}) "
            f"/ sumIf(1 / sample_rate, toxicity IS NOT NULL), "
            f"sumIf(1 / sample_rate, toxicity IS NOT NULL), "
            f"sumIf(1 / (sample_rate * sample_rate), toxicity IS NOT NULL) "
            f"FROM llm_events FINAL WHERE app = '{APP}' GROUP BY half ORDER BY half"
        ), timeout=300)
    }  # fmt: skip
    minutes = [
        {"minute": time.strftime("%H:%M", time.gmtime(int(m))),
         "from_start_s": round(int(m) - run.started),
         "toxic_share": "/".join(f"{run.shares[h]:.0%}" for h in (0, 1)
                                 if (h == 0 and int(m) < run.step)
                                 or (h == 1 and int(m) + 60 > run.step)),
         "events": int(e), "scored": int(s),
         "scored_share": round(int(s) / int(e), 4) if int(e) else None,
         "sample_rate_avg": round(float(a), 4), "sample_rate_min": round(float(lo), 4)}
        for m, e, s, a, lo in sql(url, (
            "SELECT toUnixTimestamp(minute), events, scored, sample_rate_avg, sample_rate_min "
            f"FROM llm_sampling WHERE app = '{APP}' ORDER BY minute"
        ), timeout=300)
    ]  # fmt: skip
    crossings = window_crossings(run, args)
    batches = sql(url, (
        f"SELECT {ms('ingested_at')} AS at, count(), count(toxicity), "
        f"max({ms('ingested_at')} - {ms('ts')}) FROM llm_events "
        f"WHERE app = '{APP}' GROUP BY at ORDER BY at"
    ), timeout=300)  # fmt: skip
    ages = [int(b[3]) / 1000 for b in batches]
    sizes = [int(b[1]) for b in batches]
    cycles = [(int(b[0]) - int(a[0])) / 1000 for a, b in itertools.pairwise(batches)]
    worst_age = max(ages, default=math.inf)
    batch_s = batch_max / capacity
    bound = args.max_lag_s + batch_s

    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(passed), "detail": detail})

    starts = [line for _, line in log if "starts" in line]
    lowest = min((m["sample_rate_min"] for m in minutes), default=1.0)
    check(
        "shedding engaged", bool(starts) and lowest < 1.0,
        f"the worker logged {len(starts)} start(s) of load shedding; lowest sample_rate "
        f"{lowest:g} (without shedding, this run tested nothing: was C measured while "
        "other work held the cores?)",
    )  # fmt: skip
    check(
        "lag bounded", worst_age <= bound,
        f"worst age when stored {worst_age:.1f} s <= max_lag {args.max_lag_s:g} s + one batch "
        f"{batch_s:.1f} s (LLMPULSE_BATCH_MAX {batch_max} / C {capacity:.0f}/s) = {bound:.1f} s; "
        f"the longest time between two stores was {max(cycles, default=0.0):.1f} s",
    )  # fmt: skip
    estimates = []
    for h in (0, 1):
        c = halves.get(h, {"stored": 0, "true_toxic": 0, "scored": 0, "flagged": 0,
                           "scored_true_toxic": 0, "disagree": 0, "weighted": None,
                           "weighted_n_eff": 0.0})  # fmt: skip
        true = run.offered_toxic[h] / run.offered[h] if run.offered[h] else math.nan
        lo, hi = wilson_interval(c["scored"], c["flagged"])
        est = c["flagged"] / c["scored"] if c["scored"] else math.nan
        # Informational: each scored row weighted by 1 / sample_rate (Horvitz-Thompson),
        # its interval from Kish's effective sample size.
        n_eff, w = c.pop("weighted_n_eff"), c.pop("weighted")
        wlo, whi = wilson_interval(n_eff, w * n_eff) if w is not None else (0.0, 1.0)  # type: ignore[arg-type]
        estimates.append(
            {
                "half": h + 1,
                "aimed_share": run.shares[h],
                "offered": run.offered[h],
                "offered_toxic": run.offered_toxic[h],
                "true_share": round(true, 5),
                **c,
                "estimate": round(est, 5),
                "wilson95": [round(lo, 5), round(hi, 5)],
                "weighted": None if w is None else round(w, 5),
                "weighted_wilson95": [round(wlo, 5), round(whi, 5)],
                "weighted_n_eff": round(n_eff, 1),
                "true_in_weighted_interval": wlo <= true <= whi,
            }
        )
        check(
            f"toxicity_rate half {h + 1}", lo <= true <= hi and c["stored"] == run.offered[h],
            f"estimate {est:.2%} [{lo:.2%}, {hi:.2%}] from {c['flagged']:,}/{c['scored']:,} scored "
            f"holds the true share {true:.2%} ({run.offered_toxic[h]:,}/{run.offered[h]:,} "
            f"offered); stored {c['stored']:,} of {run.offered[h]:,}; weighted by 1/sample_rate "
            f"{'-' if w is None else f'{w:.2%}'} [{wlo:.2%}, {whi:.2%}] (n_eff {n_eff:,.0f}); "
            f"verdicts differing from "
            f"the known truth: {c['disagree']}",
        )  # fmt: skip
    window_s, for_s = parse_duration(args.window), parse_duration(args.for_)
    deadline = window_s + for_s + 10
    fired = hook.firings()
    before = [at for at, _ in fired if at < run.step]
    after = [at for at, _ in fired if at >= run.step]
    fire_s = after[0] - run.step if after else None
    check(
        "alert in time", fire_s is not None and fire_s <= deadline and not before,
        (f"fired {fire_s:.1f} s after the step" if fire_s is not None else "never fired")
        + f" (limit window {window_s:g} + for {for_s:g} + 10 = {deadline:g} s); "
        f"firing notifications before the step: {len(before)}",
    )  # fmt: skip
    return {
        "benchmark": "keepup",
        "minutes": args.minutes, "factor": args.factor, "max_lag_s": args.max_lag_s,
        "halves_s": [run.first_s, run.second_s], "toxic_shares": list(run.shares),
        "capacity_events_per_s": round(capacity, 1), "offered_rate": round(run.rate, 1),
        "offered_events": sum(run.offered),
        "offered_rate_achieved": round(sum(run.offered) / (run.ended - run.started), 1),
        "producer_late_max_s": round(run.producer_late_s, 3),
        "batch_max": batch_max, "one_batch_s": round(batch_s, 2), "lag_bound_s": round(bound, 2),
        "worst_age_stored_s": worst_age,
        "rule": {"metric": "toxicity_rate", "threshold": args.threshold, "window_s": window_s,
                 "for_s": for_s, "eval_s": args.eval_s, "score_threshold": FLAG_AT},
        "alert": {"fired_after_step_s": None if fire_s is None else round(fire_s, 1),
                  "limit_s": deadline, "firing_before_step": len(before)},
        "halves": estimates,
        "rule_window_crossing": crossings,
        "sampling_per_minute": minutes,
        "batches": {"count": len(batches), "events_max": max(sizes, default=0),
                    "events_median": sorted(sizes)[len(sizes) // 2] if sizes else 0,
                    "store_interval_max_s": max(cycles, default=0.0),
                    "store_interval_median_s": sorted(cycles)[len(cycles) // 2] if cycles else 0.0},
        "shedding_log": [{"t_s": round(at - run.started, 1), "line": line} for at, line in log],
        "polls": [{k: v for k, v in p.items() if k != "newest_ingested_ms"} for p in run.polls],
        "checks": checks,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m_at_start": round(run.load_at_start, 2),
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def window_crossings(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """When the rule's window (the last ``window`` of stored rows, by ``ingested_at``, as
    the evaluator reads it) first exceeds the threshold after the step, in three ways:
    flagged / scored rows (what the rule computes), the same weighted by 1 / sample_rate
    (each scored row standing for the events it was sampled from), and the true share of
    the events in the window (from the event ids)."""
    step_s = 5
    part = "splitByChar('-', event_id)"
    rows = sql(run.url, (
        f"SELECT intDiv({ms('ingested_at')}, {step_s * 1000}) AS b, count(toxicity), "
        f"countIf(toxicity >= {FLAG_AT}), sumIf(1 / sample_rate, toxicity IS NOT NULL), "
        f"sumIf(1 / sample_rate, toxicity >= {FLAG_AT}), count(), countIf({part}[3] = 't') "
        f"FROM llm_events FINAL WHERE app = '{APP}' GROUP BY b ORDER BY b"
    ), timeout=300)  # fmt: skip
    buckets = {int(b): [float(x) for x in rest] for b, *rest in rows}
    width = round(parse_duration(args.window) / step_s)
    series, crossed = [], {"flagged / scored": None, "weighted 1/rate": None, "true": None}
    if buckets:
        for b in range(min(buckets), max(buckets) + width + 1):
            n, k, wn, wk, events, truth = (
                sum(buckets.get(i, [0.0] * 6)[j] for i in range(b - width + 1, b + 1))
                for j in range(6)
            )  # fmt: skip
            at = round((b + 1) * step_s - run.step, 1)
            values = {"flagged / scored": k / n if n else None,
                      "weighted 1/rate": wk / wn if wn else None,
                      "true": truth / events if events else None}  # fmt: skip
            series.append({"after_step_s": at, **{x: None if v is None else round(v, 4)
                                                  for x, v in values.items()}})  # fmt: skip
            for name, v in values.items():
                if at >= 0 and crossed[name] is None and v is not None and v > args.threshold:
                    crossed[name] = at
    return {"bucket_s": step_s, "crossed_after_step_s": crossed, "series": series}


def report(result: dict[str, Any]) -> None:
    r = result
    head = Table(title=f"keep-up: {r['factor']:g}x capacity for {r['halves_s'][0]:g} + "
                 f"{r['halves_s'][1]:g} s (max lag {r['max_lag_s']:g} s)")  # fmt: skip
    head.add_column("measure")
    head.add_column("value", justify="right")
    head.add_row("model capacity C (in-process)", f"{r['capacity_events_per_s']:,.0f} events/s")
    head.add_row(
        "offered (aimed / achieved)",
        f"{r['offered_rate']:,.0f} / {r['offered_rate_achieved']:,.0f} events/s",
    )
    head.add_row("events offered", f"{r['offered_events']:,}")
    head.add_row("worst age when stored", f"{r['worst_age_stored_s']:.1f} s")
    head.add_row("bound: max lag + batch_max / C", f"{r['lag_bound_s']:.1f} s")
    b = r["batches"]
    head.add_row(
        "stored batches (events max / median)",
        f"{b['count']} ({b['events_max']} / {b['events_median']})",
    )
    head.add_row(
        "store interval (max / median)",
        f"{b['store_interval_max_s']:.1f} / {b['store_interval_median_s']:.1f} s",
    )
    a = r["alert"]
    head.add_row(
        "alert after the step",
        "never" if a["fired_after_step_s"] is None else f"{a['fired_after_step_s']} s",
    )
    for name, at in r["rule_window_crossing"]["crossed_after_step_s"].items():
        head.add_row(f"rule window > threshold after the step: {name}",
                     "never" if at is None else f"{at} s")  # fmt: skip
    console.print(head)

    halves = Table(title="toxicity_rate over the stored rows, per half")
    for col in ("half", "true share", "offered", "stored", "scored", "flagged", "estimate",
                "95 % Wilson", "weighted 1/rate", "wrong verdicts"):  # fmt: skip
        halves.add_column(col, justify="right")
    for h in r["halves"]:
        halves.add_row(
            str(h["half"]),
            f"{h['true_share']:.2%}",
            f"{h['offered']:,}",
            f"{h['stored']:,}",
            f"{h['scored']:,}",
            f"{h['flagged']:,}",
            f"{h['estimate']:.2%}",
            f"[{h['wilson95'][0]:.2%}, {h['wilson95'][1]:.2%}]",
            "-"
            if h["weighted"] is None
            else f"{h['weighted']:.2%} [{h['weighted_wilson95'][0]:.2%}, "
            f"{h['weighted_wilson95'][1]:.2%}]",
            str(h["disagree"]),
        )
    console.print(halves)

    minutes = Table(title="sampled share per minute of ts (the view llm_sampling)")
    for col in ("minute (UTC)", "from start (s)", "toxic share", "events", "scored",
                "scored / events", "sample_rate avg", "sample_rate min"):  # fmt: skip
        minutes.add_column(col, justify="right")
    for m in r["sampling_per_minute"]:
        minutes.add_row(
            m["minute"],
            str(m["from_start_s"]),
            m["toxic_share"],
            f"{m['events']:,}",
            f"{m['scored']:,}",
            f"{m['scored_share']:.1%}" if m["scored_share"] is not None else "-",
            f"{m['sample_rate_avg']:.3f}",
            f"{m['sample_rate_min']:.3f}",
        )
    console.print(minutes)

    polls = Table(title=f"polled every ~{POLL_S:g} s during the load (staleness: now - the "
                  "newest stored ts of the partition furthest behind)")  # fmt: skip
    for col in ("t (s)", "offered", "stored", "scored / stored", "staleness (s)",
                "max age stored since last poll (s)"):  # fmt: skip
        polls.add_column(col, justify="right")
    for p in r["polls"]:
        polls.add_row(
            f"{p['t_s']:.0f}",
            f"{p['offered']:,}",
            f"{p['stored']:,}",
            f"{p['scored'] / p['stored']:.1%}" if p["stored"] else "-",
            str(p["staleness_s"]),
            "-"
            if p["max_age_stored_since_last_s"] is None
            else str(p["max_age_stored_since_last_s"]),
        )
    console.print(polls)
    for line in r["shedding_log"]:
        console.print(f"worker log t={line['t_s']:.0f}s: {line['line']}")
    for c in r["checks"]:
        mark = "[green]PASS[/]" if c["passed"] else "[red]FAIL[/]"
        console.print(f"{mark} {c['check']}: {c['detail']}")


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(120)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="load time; the second half lasts at least the alert's limit + 5 s",
    )
    parser.add_argument("--factor", type=float, default=4.0, help="offered rate ÷ capacity")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--max-lag-s", type=float, default=30.0)
    parser.add_argument("--shares", type=float, nargs=2, default=(0.05, 0.25),
                        help="toxic share of the first and the second half")  # fmt: skip
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--window", default="60s")
    parser.add_argument("--for", dest="for_", default="30s")
    parser.add_argument("--eval-s", type=float, default=5.0)
    parser.add_argument("--capacity-events", type=int, default=400)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]
    if load_at_start > 0.5:
        console.print(
            f"[yellow]load average {load_at_start:.1f} before the start: other work shares the "
            "cores, so C and the pipeline's own speed will differ (see README)[/]"
        )
    settings = load_settings()  # the worker's batch size, as the worker reads it
    console.print("scoring the candidate replies and measuring the model capacity…")
    scorer = build_scorer(settings)
    texts = known_texts(scorer)
    cap = model_capacity(scorer, texts, args.capacity_events, batch=200)
    capacity = cap["events_per_s"]
    del scorer
    gc.collect()
    console.print(
        f"C = {capacity:.0f} events/s ({cap['events']} events in {cap['seconds']} s); kept "
        f"{len(texts.toxic)} toxic and {len(texts.polite)} polite replies, {len(texts.rag)} RAG "
        f"answers (dropped {texts.dropped})"
    )
    run_rate = args.factor * capacity
    window_s, for_s = parse_duration(args.window), parse_duration(args.for_)
    alert_limit = window_s + for_s + 10
    # The second half lasts at least the alert's limit, so short runs check it too.
    first_s = args.minutes * 30
    second_s = max(first_s, alert_limit + 5)
    stream = Offered(texts, seed=args.seed)
    hook = Hook()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="keepup-") as tmp,
            EmbeddedBroker("127.0.0.1", free_port(), Path(tmp) / "logs") as broker,
        ):
            rules = Path(tmp) / "rules.yaml"
            rules.write_text(RULES.format(
                port=hook.port, rule=RULE, app=APP, window=args.window, threshold=args.threshold,
                flag_at=FLAG_AT, for_=args.for_,
            ))  # fmt: skip
            sql_port = free_port()
            home = Path(tmp) / "home"
            env = {
                **os.environ,
                "LLMPULSE_HOME": str(home),
                "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
                "LLMPULSE_SQL_PORT": str(sql_port),
                "LLMPULSE_MAX_LAG_S": f"{args.max_lag_s:g}",
                "LLMPULSE_RULES": str(rules),
                "LLMPULSE_ALERT_EVAL_S": f"{args.eval_s:g}",
            }
            run = Run(
                url=f"http://127.0.0.1:{sql_port}/sql/", log=home / "logs" / "worker.log",
                rate=run_rate, first_s=first_s, second_s=second_s, shares=tuple(args.shares),
                load_at_start=load_at_start,
            )  # fmt: skip
            worker = subprocess.Popen(
                [sys.executable, "-m", "llmpulse.cli", "worker", "--loglevel", "warn"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C stops this script, which stops the worker
            )  # fmt: skip
            try:  # the worker stops before the broker does and its home is removed
                console.print("starting the worker and storing 200 warm-up events…")
                warm_up(broker.bootstrap, run.url, Offered(texts, seed=1), worker)
                console.print(
                    f"offering {run_rate:,.0f} events/s ({args.factor:g} x C) for "
                    f"{(first_s + second_s) / 60:g} min; toxic share {args.shares[0]:.0%} for "
                    f"{first_s:g} s, then {args.shares[1]:.0%} for {second_s:g} s…"
                )
                asyncio.run(load_phase(broker.bootstrap, stream, run, worker))
                drain = args.max_lag_s + settings.batch_max / capacity + 120
                console.print(f"load done; waiting up to {drain:.0f} s for the worker to drain…")
                if not wait_stored(run.url, f"app = '{APP}'", sum(run.offered), drain):
                    console.print("[red]the worker did not store every offered event in time[/]")
                alert_by = run.step + alert_limit + 60  # a late alert is reported, and fails
                while (
                    not [at for at, _ in hook.firings() if at >= run.step]
                    and time.time() < alert_by
                ):
                    time.sleep(0.5)
                result = results(run, args, capacity, settings.batch_max, hook,
                                 shedding_lines(run.log))  # fmt: skip
                result["capacity"] = cap
                result["texts"] = {"toxic_replies": len(texts.toxic),
                                   "polite_replies": len(texts.polite),
                                   "rag_answers": len(texts.rag), "dropped": texts.dropped,
                                   **texts.margins}  # fmt: skip
            finally:
                stop_worker(worker)
    finally:
        hook.close()
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if not all(c["passed"] for c in result["checks"]):
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        console.print("interrupted: the worker and the broker are stopped")
        sys.exit(130)
