"""OTLP ingestion throughput: spans/s accepted by one receiver and stored end to end,
beside the SDK path measured in the same run, on the same broker and worker.

One embedded broker, one real ``llmpulse receiver`` and one real ``llmpulse worker``
(children; ``LLMPULSE_MODELS=off`` unless ``--models``, so the figure is the ingestion
path, not the models; ``LLMPULSE_OTLP_TRACE_WAIT_S`` 1 s, since this measures
throughput, not the hold):

* **OTLP path**: ``--traces`` synthetic RAG traces (a server root span, an OpenInference
  retriever span with 3 documents, a GenAI chat span with system instructions, input
  and output messages and usage), in protobuf ``ExportTraceServiceRequest``s of
  ``--spans-per-request`` spans in the order they end (the SDK's BatchSpanProcessor
  sends 512 a request, so a trace may straddle two requests), one resource (app) a
  request, POSTed by ``--clients`` concurrent aiohttp clients. Texts are HaluEval QA
  questions and contexts (``../shared/datasets``), two other contexts as distractors.
  - receiver: spans accepted / (first POST → last 200);
  - end to end: spans and LLM events / (first POST → ``llm_spans`` holds every span and
    ``llm_events`` every chat span's event), polled with ``count()`` on the worker's SQL
    endpoint; ``FINAL`` counts checked at the end.
* **SDK path**: the same LLM calls (same texts, context, usage) as events through
  ``EventProducer(envelopes=True)`` (envelope settings at the SDK's defaults), first
  send → stored.

Both paths warm up first (a small batch each, waited for), so the group join and
first loads do not count. Requests and events are encoded before the clock starts:
the figures are the server side's. The machine's load average and each process's CPU
seconds per phase are recorded, since a shared machine moves every rate.

Usage: ``.venv/bin/python bench/otlp.py [--traces 5000] [--spans-per-request 512]
[--clients 4] [--models] [--gzip]``. Writes ``bench/results/otlp.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.producer import EventProducer  # noqa: E402
from llmpulse.broker import EmbeddedBroker, free_port  # noqa: E402

console = Console(width=120)
TRACE_WAIT_S = 1.0
WARM_TRACES = 200
SPANS_PER_TRACE = 3
POLL_S = 0.2
DEADLINE_S = 1800.0
MS = 1_000_000

APPS = ("support-rag", "docs-search", "kb-assistant")
# (request model, dated response model): the price table's aliases price the dated names
MODELS = (
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("gpt-4o", "gpt-4o-2024-08-06"),
    ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14"),
)
SYSTEMS = (
    "You are a helpful assistant. Answer only from the documents; say so when they "
    "do not contain the answer.",
    "You answer questions for our customers. Be brief, cite the document you used, and "
    "never guess.",
    "Answer the user's question in one or two sentences, using only the retrieved passages.",
)
ANSWERS = (
    "{answer}.",
    "According to the documents, {answer}.",
    "The answer is {answer}.",
    "Based on the retrieved passages: {answer}.",
    "{answer}, as stated in the second paragraph.",
)
SCOPE_SERVER = "opentelemetry.instrumentation.fastapi"
SCOPE_RETRIEVER = "openinference.instrumentation.llama_index"
SCOPE_CHAT = "opentelemetry.instrumentation.openai_v2"


# ---------------------------------------------------------------- synthetic traces


def attr(key: str, value: str | int | float | list[str]) -> KeyValue:
    if isinstance(value, list):
        items = [AnyValue(string_value=v) for v in value]
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=items)))
    if isinstance(value, bool | int):
        return KeyValue(key=key, value=AnyValue(int_value=int(value)))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass(frozen=True)
class Trace:
    """One RAG request: its spans in the order they end, and the same call as an SDK event."""

    app: str
    spans: tuple[tuple[str, Span], ...]  # (instrumentation scope, span)
    event: dict[str, Any]


def load_rows(datasets: Path) -> list[dict[str, Any]]:
    path = datasets / "halueval_qa.jsonl"
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def rag_trace(i: int, rng: random.Random, rows: list[dict[str, Any]], start_ns: int) -> Trace:
    """A root SERVER span, a retriever span with 3 documents (the row's context and two
    others), and a GenAI chat span whose prompt holds the documents and the question."""
    row = rows[rng.randrange(len(rows))]
    documents = [row["context"]]
    while len(documents) < 3:  # two distractors: other questions' contexts
        other = rows[rng.randrange(len(rows))]["context"]
        if other not in documents:
            documents.append(other)
    rng.shuffle(documents)
    question = row["question"]
    answer = rng.choice(ANSWERS).format(answer=row["answer"].rstrip("."))
    system = rng.choice(SYSTEMS)
    prompt = "\n\n".join(
        [*(f"Document {n + 1}: {d}" for n, d in enumerate(documents)), f"Question: {question}"]
    )
    app = APPS[i % len(APPS)]
    request_model, response_model = MODELS[rng.randrange(len(MODELS))]
    prompt_version = rng.choice(("v3", "v4"))
    trace_id = rng.getrandbits(128).to_bytes(16, "big")
    root_id, retriever_id, chat_id = (rng.getrandbits(63).to_bytes(8, "big") for _ in range(3))
    retrieve_ms = rng.randint(15, 120)
    chat_ms = rng.randint(350, 2500)
    input_tokens = (len(system) + len(prompt)) // 4
    output_tokens = max(1, len(answer) // 4)
    cached = rng.choice((0, 0, 0, 1024)) if input_tokens > 1024 else 0
    t_retriever = start_ns + 3 * MS
    t_chat = t_retriever + (retrieve_ms + 2) * MS
    t_end = t_chat + (chat_ms + 4) * MS

    scores = sorted((round(rng.uniform(0.55, 0.95), 4) for _ in documents), reverse=True)
    retriever = Span(
        trace_id=trace_id, span_id=retriever_id, parent_span_id=root_id, name="retrieve",
        kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=t_retriever,
        end_time_unix_nano=t_retriever + retrieve_ms * MS,
        attributes=[attr("openinference.span.kind", "RETRIEVER"), attr("input.value", question)]
        + [a for n, (d, s) in enumerate(zip(documents, scores, strict=True)) for a in (
            attr(f"retrieval.documents.{n}.document.id", f"kb-{zlib.crc32(d.encode()):08x}"),
            attr(f"retrieval.documents.{n}.document.content", d),
            attr(f"retrieval.documents.{n}.document.score", s),
        )],
    )  # fmt: skip
    usage = [
        attr("gen_ai.usage.input_tokens", input_tokens),
        attr("gen_ai.usage.output_tokens", output_tokens),
    ]
    if cached:
        usage.append(attr("gen_ai.usage.cache_read.input_tokens", cached))
    chat = Span(
        trace_id=trace_id, span_id=chat_id, parent_span_id=root_id,
        name=f"chat {request_model}", kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=t_chat, end_time_unix_nano=t_chat + chat_ms * MS,
        attributes=[
            attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", "openai"),
            attr("gen_ai.request.model", request_model),
            attr("gen_ai.request.temperature", 0.2), attr("gen_ai.request.max_tokens", 512),
            attr("gen_ai.response.model", response_model),
            attr("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(96):024x}"),
            attr("gen_ai.response.finish_reasons", ["stop"]),
            attr("gen_ai.prompt.version", prompt_version),
            attr("server.address", "api.openai.com"), attr("server.port", 443),
            *usage,
            attr("gen_ai.system_instructions",
                 json.dumps([{"type": "text", "content": system}])),
            attr("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": prompt}]}])),
            attr("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}],
                  "finish_reason": "stop"}])),
        ],
    )  # fmt: skip
    root = Span(
        trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns, end_time_unix_nano=t_end,
        attributes=[
            attr("http.request.method", "POST"), attr("http.route", "/ask"),
            attr("url.scheme", "https"), attr("http.response.status_code", 200),
        ],
    )  # fmt: skip
    event_usage: dict[str, int] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cached:
        event_usage["cached_tokens"] = cached
    event = {
        "event_id": f"sdk-{i:07d}",
        "ts": datetime.fromtimestamp(t_chat / 1e9, tz=UTC).isoformat().replace("+00:00", "Z"),
        "app": app,
        "model": response_model,
        "provider": "openai",
        "environment": "prod",
        "prompt_version": prompt_version,
        "system": system,
        "input": prompt,
        "output": answer,
        "context": documents,
        "usage": event_usage,
        "latency_ms": float(chat_ms),
    }
    spans = ((SCOPE_RETRIEVER, retriever), (SCOPE_CHAT, chat), (SCOPE_SERVER, root))
    return Trace(app, spans, event)


def make_traces(n: int, rows: list[dict[str, Any]], seed: int, first: int = 0) -> list[Trace]:
    rng = random.Random(seed)
    start = time.time_ns() - 3600 * 1_000_000_000  # an hour ago, 10 ms apart
    return [rag_trace(first + i, rng, rows, start + (first + i) * 10 * MS) for i in range(n)]


def export_requests(traces: list[Trace], per_request: int) -> list[tuple[bytes, int]]:
    """Protobuf export requests of ``per_request`` spans, one app (resource) each, as
    each app's SDK would batch its spans; the apps' requests interleaved. Returns
    (body, spans) pairs."""
    by_app: dict[str, list[tuple[str, Span]]] = {}
    for trace in traces:
        by_app.setdefault(trace.app, []).extend(trace.spans)
    streams: list[list[tuple[bytes, int]]] = []
    for app, spans in by_app.items():
        resource = Resource(
            attributes=[
                attr("service.name", app), attr("service.version", "2.3.1"),
                attr("deployment.environment.name", "prod"),
                attr("telemetry.sdk.language", "python"),
                attr("telemetry.sdk.name", "opentelemetry"),
                attr("telemetry.sdk.version", "1.45.0"),
                attr("host.name", f"{app}-7d9f8c-{len(app):02d}"),
            ]
        )  # fmt: skip
        stream = []
        for lo in range(0, len(spans), per_request):
            chunk = spans[lo : lo + per_request]
            scopes: dict[str, list[Span]] = {}
            for scope, span in chunk:
                scopes.setdefault(scope, []).append(span)
            scoped = [
                ScopeSpans(scope=InstrumentationScope(name=name), spans=group)
                for name, group in scopes.items()
            ]
            body = ExportTraceServiceRequest(
                resource_spans=[ResourceSpans(resource=resource, scope_spans=scoped)]
            ).SerializeToString()
            stream.append((body, len(chunk)))
        streams.append(stream)
    interleaved = []
    for i in range(max(len(s) for s in streams)):
        interleaved.extend(s[i] for s in streams if i < len(s))
    return interleaved


# ---------------------------------------------------------------- processes


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (its threads included), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def child(name: str, args: list[str], env: dict[str, str], logs: Path) -> Iterator[Any]:
    """``llmpulse <args>`` as a child, its output in ``logs/<name>.log``; stopped with
    SIGTERM at the end. A failure prints the log's tail."""
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmpulse.cli", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        yield proc
    except BaseException:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        console.print(f"[red]{name} log (last lines):[/]\n" + "\n".join(tail))
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


@dataclass
class Processes:
    broker: int | None
    receiver: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    def cpu(self) -> dict[str, float | None]:
        pids = {"broker": self.broker, "receiver": self.receiver.pid, "worker": self.worker.pid}
        return {**{k: cpu_seconds(p) for k, p in pids.items()}, "bench": time.process_time()}

    def check(self) -> None:
        for name, proc in (("receiver", self.receiver), ("worker", self.worker)):
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited with code {proc.returncode}")


def cpu_delta(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    return {
        k: a - b if a is not None and b is not None else None
        for k, b, a in ((k, before[k], after[k]) for k in before)
    }


def rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 2) for k, v in values.items()}


# ---------------------------------------------------------------- clients and polling


class Sql:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def row(self, query: str) -> list[Any]:
        async with self.session.post(self.url, json={"query": query}) as resp:
            resp.raise_for_status()
            return list((await resp.json())["rows"][0])

    async def counts(self) -> tuple[int, int]:
        """Rows in llm_spans and llm_events, plain count() (duplicates not collapsed)."""
        spans, events = await self.row(
            "SELECT (SELECT count() FROM llm_spans), (SELECT count() FROM llm_events)"
        )
        return int(spans), int(events)

    async def wait(self, spans: int, events: int, procs: Processes) -> float:
        """Poll until both tables hold at least that many rows; perf_counter then."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            try:
                got = await self.counts()
                if got[0] >= spans and got[1] >= events:
                    return time.perf_counter()
            except (aiohttp.ClientError, KeyError, IndexError):
                pass  # the worker's endpoint is not up yet
            procs.check()
            await asyncio.sleep(POLL_S)
        raise TimeoutError(f"fewer than {spans} spans or {events} events after {DEADLINE_S} s")


@dataclass
class Posted:
    first_s: float = float("inf")
    last_ok_s: float = 0.0
    accepted: int = 0
    rejected: int = 0
    retries: dict[int, int] = field(default_factory=dict)  # by status


async def post_all(
    session: aiohttp.ClientSession,
    url: str,
    requests: list[tuple[bytes, int]],
    clients: int,
    compress: bool,
    patient: bool = False,
) -> Posted:
    """POST every request with ``clients`` concurrent clients, each taking the next one
    when its last got 200; 429/503 are retried after Retry-After, as OTLP exporters do.
    ``patient``: also retry refused connections for a while (the receiver is starting)."""
    posted = Posted()
    queue: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    headers = {"Content-Type": "application/x-protobuf"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    deadline = time.monotonic() + (120 if patient else DEADLINE_S)

    async def client() -> None:
        while not queue.empty():
            body, spans = queue.get_nowait()
            while True:
                posted.first_s = min(posted.first_s, time.perf_counter())
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        payload = await resp.read()
                        status = resp.status
                        retry_after = float(resp.headers.get("Retry-After", "1"))
                except aiohttp.ClientConnectionError:
                    if not patient or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
                    continue
                if status == 200:
                    partial = ExportTraceServiceResponse.FromString(payload).partial_success
                    posted.rejected += partial.rejected_spans
                    posted.accepted += spans - partial.rejected_spans
                    posted.last_ok_s = max(posted.last_ok_s, time.perf_counter())
                    break
                if status in (429, 503) and time.monotonic() < deadline:
                    posted.retries[status] = posted.retries.get(status, 0) + 1
                    await asyncio.sleep(retry_after)
                    continue
                raise RuntimeError(f"the receiver answered {status}: {payload[:200]!r}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return posted


async def send_events(events: list[bytes], producer: EventProducer) -> None:
    for value in events:
        await producer.send(value)
    await producer.flush()


# ---------------------------------------------------------------- the run


async def measure(
    args: argparse.Namespace,
    broker: EmbeddedBroker,
    otlp_url: str,
    sql_url: str,
    procs: Processes,
    traces: list[Trace],
) -> dict[str, Any]:
    warm, measured = traces[:WARM_TRACES], traces[WARM_TRACES:]
    n = len(measured)

    def bodies(ts: list[Trace]) -> list[tuple[bytes, int]]:
        requests = export_requests(ts, args.spans_per_request)
        if args.gzip:
            return [(gzip.compress(b, mtime=0), s) for b, s in requests]
        return requests

    # SDK-encoded bytes are what EventProducer.send validates and sends: JSON of the event.
    def encoded(ts: list[Trace]) -> list[bytes]:
        return [json.dumps(t.event, ensure_ascii=False).encode() for t in ts]

    warm_requests, requests = bodies(warm), bodies(measured)
    warm_events, events = encoded(warm), encoded(measured)
    body_bytes = sum(len(b) for b, _ in requests)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session, EventProducer(
        broker.bootstrap, envelopes=True
    ) as producer:  # fmt: skip
        sql = Sql(session, sql_url)
        console.print(f"  warming up: {len(warm)} traces over OTLP, {len(warm)} SDK events…")
        await post_all(session, otlp_url, warm_requests, args.clients, args.gzip, patient=True)
        await send_events(warm_events, producer)
        base_spans, base_events = SPANS_PER_TRACE * len(warm), 2 * len(warm)
        await sql.wait(base_spans, base_events, procs)

        console.print(
            f"  OTLP: {n:,} traces ({SPANS_PER_TRACE * n:,} spans) in {len(requests):,} "
            f"requests of {args.spans_per_request}, {args.clients} clients…"
        )
        cpu0 = procs.cpu()
        t0 = time.perf_counter()
        posting = asyncio.create_task(
            post_all(session, otlp_url, requests, args.clients, args.gzip)
        )
        stored_at = await sql.wait(base_spans + SPANS_PER_TRACE * n, base_events + n, procs)
        posted = await posting
        cpu1 = procs.cpu()

        console.print(f"  SDK: {n:,} events, EventProducer(envelopes=True)…")
        s0 = time.perf_counter()
        await send_events(events, producer)
        sent_at = time.perf_counter()
        sdk_stored_at = await sql.wait(0, base_events + 2 * n, procs)
        cpu2 = procs.cpu()

        plain = await sql.counts()
        spans_final, events_final, otlp_events, with_context, no_context = await sql.row(
            "SELECT (SELECT count() FROM llm_spans FINAL), (SELECT count() FROM llm_events "
            "FINAL), (SELECT count() FROM llm_events FINAL WHERE event_id LIKE 'otlp-%'), "
            "(SELECT countIf(context_source = 'trace' AND length(context) = 3) "
            "FROM llm_events FINAL WHERE event_id LIKE 'otlp-%'), "
            "(SELECT countIf(context_source = 'none') FROM llm_events FINAL "
            "WHERE event_id LIKE 'otlp-%')"
        )
    assert posted.first_s >= t0
    otlp_cpu, sdk_cpu = cpu_delta(cpu0, cpu1), cpu_delta(cpu1, cpu2)
    receiver_s = posted.last_ok_s - posted.first_s
    otlp_s = stored_at - posted.first_s
    sdk_s = sdk_stored_at - s0
    rates = {
        "receiver_accepted_spans_per_s": posted.accepted / receiver_s,
        "receiver_accepted_requests_per_s": len(requests) / receiver_s,
        "receiver_accepted_mib_per_s": body_bytes / receiver_s / 2**20,
        "otlp_e2e_spans_per_s": SPANS_PER_TRACE * n / otlp_s,
        "otlp_e2e_events_per_s": n / otlp_s,
        "sdk_e2e_events_per_s": n / sdk_s,
        "sdk_publish_events_per_s": n / (sent_at - s0),
    }
    # Per CPU-second of the process doing the work: steadier than wall-clock rates when
    # other jobs hold the cores (the receiver's includes the time it spends producing).
    if otlp_cpu["receiver"] and otlp_cpu["worker"] and sdk_cpu["worker"]:
        rates["receiver_spans_per_receiver_cpu_s"] = posted.accepted / otlp_cpu["receiver"]
        rates["otlp_events_per_worker_cpu_s"] = n / otlp_cpu["worker"]
        rates["sdk_events_per_worker_cpu_s"] = n / sdk_cpu["worker"]
    return {
        "rates": {k: round(v, 1) for k, v in rates.items()},
        "otlp_over_sdk_events": round(
            rates["otlp_e2e_events_per_s"] / rates["sdk_e2e_events_per_s"], 4
        ),
        "otlp_over_sdk_events_per_worker_cpu_s": round(
            rates["otlp_events_per_worker_cpu_s"] / rates["sdk_events_per_worker_cpu_s"], 4
        )
        if "otlp_events_per_worker_cpu_s" in rates
        else None,
        "seconds": {
            "receiver_first_post_to_last_200": round(receiver_s, 3),
            "otlp_first_post_to_stored": round(otlp_s, 3),
            "otlp_last_200_to_stored": round(stored_at - posted.last_ok_s, 3),
            "sdk_first_send_to_stored": round(sdk_s, 3),
            "sdk_publish": round(sent_at - s0, 3),
        },
        "cpu_seconds": {"otlp": rounded(otlp_cpu), "sdk": rounded(sdk_cpu)},
        "requests": len(requests),
        "request_bytes_mean": round(body_bytes / len(requests)),
        "receiver_retries": {str(k): v for k, v in sorted(posted.retries.items())},
        "receiver_rejected_spans": posted.rejected,
        "checks": {
            "expected_spans": SPANS_PER_TRACE * (len(warm) + n),
            "spans_final": int(spans_final),
            "spans_plain_count": plain[0],
            "expected_events": 2 * (len(warm) + n),
            "events_final": int(events_final),
            "events_plain_count": plain[1],
            "otlp_events_final": int(otlp_events),
            "otlp_events_with_trace_context": int(with_context),
            "otlp_events_without_context": int(no_context),
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = load_rows(args.datasets)
    traces = make_traces(WARM_TRACES + args.traces, rows, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        logs = tmp / "logs"
        logs.mkdir()
        with EmbeddedBroker("127.0.0.1", free_port(), tmp / "broker-logs") as broker:
            otlp_port, sql_port = free_port(), free_port()
            env = {
                **os.environ,
                "LLMPULSE_HOME": str(tmp / "home"),
                "LLMPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
                "LLMPULSE_SQL_PORT": str(sql_port),
                "LLMPULSE_OTLP_PORT": str(otlp_port),
                "LLMPULSE_OTLP_TRACE_WAIT_S": str(TRACE_WAIT_S),
            }
            # models off: the ingestion path; on: every detector on every event (no shedding)
            env.update({"LLMPULSE_MAX_LAG_S": "0"} if args.models else {"LLMPULSE_MODELS": "off"})
            worker_args = ["worker", "--loglevel", "warn"]
            with (
                child("worker", worker_args, env, logs) as worker,
                child(
                    "receiver", ["receiver", "--parent", str(os.getpid())], env, logs
                ) as receiver,
            ):
                broker_pid = broker.process.pid if broker.process else None
                procs = Processes(broker_pid, receiver, worker)
                return asyncio.run(
                    measure(
                        args, broker, f"http://127.0.0.1:{otlp_port}/v1/traces",
                        f"http://127.0.0.1:{sql_port}/sql/", procs, traces,
                    )
                )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=5_000, help="measured RAG traces")
    parser.add_argument(
        "--spans-per-request", type=int, default=512,
        help="spans per export request (BatchSpanProcessor's max_export_batch_size)",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--models", action="store_true", help="score with the models too")
    parser.add_argument("--gzip", action="store_true", help="gzip the request bodies")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "otlp.json")
    args = parser.parse_args()
    if args.traces < 1 or args.spans_per_request < 1 or args.clients < 1:
        parser.error("--traces, --spans-per-request and --clients must be at least 1")

    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "parameters": {
            "traces": args.traces,
            "spans": SPANS_PER_TRACE * args.traces,
            "llm_calls": args.traces,
            "spans_per_request": args.spans_per_request,
            "clients": args.clients,
            "gzip": args.gzip,
            "models": "on" if args.models else "off",
            "otlp_trace_wait_s": TRACE_WAIT_S,
            "warmup_traces": WARM_TRACES,
            "seed": args.seed,
            "sdk": "EventProducer(envelopes=True), envelope defaults",
        }
    }
    result.update(run(args))
    load_after = os.getloadavg()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # other work on the machine skews every rate: say how busy it was
        "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
        "load_avg_1_5_15_after": [round(x, 2) for x in load_after],
    }
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    r, p = result["rates"], result["parameters"]
    table = Table("path", "measure", "rate", title="llmpulse OTLP ingestion")
    setup = (
        f"{p['traces']:,} RAG traces ({p['spans']:,} spans), {p['spans_per_request']} spans "
        f"a request, {p['clients']} clients, models {p['models']}, trace wait "
        f"{TRACE_WAIT_S:g} s"
    )
    table.add_row("OTLP receiver", "accepted (first POST → last 200)",
                  f"{r['receiver_accepted_spans_per_s']:,.0f} spans/s")  # fmt: skip
    table.add_row("", "", f"{r['receiver_accepted_mib_per_s']:,.1f} MiB/s")
    table.add_row("OTLP end to end", "first POST → llm_spans + llm_events",
                  f"{r['otlp_e2e_spans_per_s']:,.0f} spans/s")  # fmt: skip
    table.add_row("", "", f"{r['otlp_e2e_events_per_s']:,.0f} events/s")
    table.add_row("SDK end to end", "first send → llm_events",
                  f"{r['sdk_e2e_events_per_s']:,.0f} events/s")  # fmt: skip
    table.add_row("OTLP ÷ SDK", "events/s, same run", f"{result['otlp_over_sdk_events']:.3f}")
    if result["otlp_over_sdk_events_per_worker_cpu_s"] is not None:
        table.add_row("per CPU-second", "receiver: spans per receiver CPU-s",
                      f"{r['receiver_spans_per_receiver_cpu_s']:,.0f} spans")  # fmt: skip
        table.add_row("", "worker: OTLP events per worker CPU-s",
                      f"{r['otlp_events_per_worker_cpu_s']:,.0f} events")  # fmt: skip
        table.add_row("", "worker: SDK events per worker CPU-s",
                      f"{r['sdk_events_per_worker_cpu_s']:,.0f} events")  # fmt: skip
        table.add_row("", "OTLP ÷ SDK, per worker CPU-s",
                      f"{result['otlp_over_sdk_events_per_worker_cpu_s']:.3f}")  # fmt: skip
    load = result["machine"]["load_avg_1_5_15_before"][0], load_after[0]
    console.print(table)
    console.print(f"{setup}; load average {load[0]:.2f} → {load[1]:.2f} on {os.cpu_count()} cpus")

    c = result["checks"]
    wrong = []
    if c["spans_final"] != c["expected_spans"]:
        wrong.append(f"llm_spans FINAL holds {c['spans_final']}, expected {c['expected_spans']}")
    if c["events_final"] != c["expected_events"]:
        wrong.append(f"llm_events FINAL holds {c['events_final']}, expected {c['expected_events']}")
    if result["receiver_rejected_spans"]:
        wrong.append(f"the receiver rejected {result['receiver_rejected_spans']} spans")
    if c["otlp_events_with_trace_context"] != c["otlp_events_final"]:
        console.print(
            f"[yellow]{c['otlp_events_final'] - c['otlp_events_with_trace_context']} OTLP "
            "events lack their retriever's 3 documents: a trace split across two requests "
            "(sent concurrently, so in either order) whose halves reached the worker more "
            f"than the {TRACE_WAIT_S:g} s wait apart[/]"
        )
    for line in wrong:
        console.print(f"[red]{line}[/]")
    if wrong:
        sys.exit(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
