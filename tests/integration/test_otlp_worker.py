"""OTLP on the worker, end to end on real parts: protobuf export requests on ``llm.otlp``
(as the receiver writes them) through a real worker and Tansu into the embedded engine.

A RAG trace comes in two messages, as an SDK's batch exporter may send it: the retriever
span (OpenInference ``retrieval.documents``) in one, the root and the GenAI chat span
(``gen_ai.input.messages`` / ``gen_ai.output.messages``) in the next. The chat span's
event must carry the retriever's documents as its context and a hallucination score.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from ingest.otlp_model import OTLP_HEADER, otlp_event_id
from llmpulse.broker import EmbeddedBroker
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "rag-bot"
DOCUMENTS = (
    "The Eiffel Tower is 330 metres tall.",
    "The Eiffel Tower stands in Paris, on the Champ de Mars.",
)
QUESTION = "How tall is the Eiffel Tower?"
ANSWER = "The Eiffel Tower is 330 metres tall."
SPANS = "SELECT count() FROM llm_spans FINAL"
EVENTS = f"SELECT count() FROM llm_events FINAL WHERE app = '{APP}'"


@dataclass(frozen=True)
class RagTrace:
    trace_id: str
    root: str
    retriever: str
    chat: str

    @property
    def event_id(self) -> str:
        return otlp_event_id(self.trace_id, self.chat)


def rag_trace(n: int) -> RagTrace:
    return RagTrace(f"{n + 1:032x}", f"{3 * n + 1:016x}", f"{3 * n + 2:016x}", f"{3 * n + 3:016x}")


def attr(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def request(scope: str, *spans: Span) -> bytes:
    resource = Resource(
        attributes=[attr("service.name", APP), attr("deployment.environment.name", "test")]
    )
    scoped = ScopeSpans(scope=InstrumentationScope(name=scope), spans=list(spans))
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scoped])]
    ).SerializeToString()


def messages(trace: RagTrace, start_ns: int) -> list[tuple[bytes, bytes]]:
    """The trace's two export requests: the retriever's, then the root's and the chat's."""
    ids = bytes.fromhex(trace.trace_id)
    ms = 1_000_000
    retriever = Span(
        trace_id=ids, span_id=bytes.fromhex(trace.retriever),
        parent_span_id=bytes.fromhex(trace.root), name="retrieve", kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start_ns + 5 * ms, end_time_unix_nano=start_ns + 40 * ms,
        attributes=[attr("openinference.span.kind", "RETRIEVER"), attr("input.value", QUESTION)]
        + [attr(f"retrieval.documents.{i}.document.content", d) for i, d in enumerate(DOCUMENTS)],
    )  # fmt: skip
    chat = Span(
        trace_id=ids, span_id=bytes.fromhex(trace.chat), parent_span_id=bytes.fromhex(trace.root),
        name="chat gpt-4o-mini", kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns + 50 * ms, end_time_unix_nano=start_ns + 850 * ms,
        attributes=[
            attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", "openai"),
            attr("gen_ai.request.model", "gpt-4o-mini"),
            attr("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            attr("gen_ai.usage.input_tokens", 57), attr("gen_ai.usage.output_tokens", 11),
            attr("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}])),
            attr("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": ANSWER}],
                  "finish_reason": "stop"}])),
        ],
    )  # fmt: skip
    root = Span(
        trace_id=ids, span_id=bytes.fromhex(trace.root), name="answer",
        kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 900 * ms,
    )  # fmt: skip
    key = trace.trace_id.encode()
    return [
        (key, request("openinference.instrumentation.retriever", retriever)),
        (key, request("opentelemetry.instrumentation.openai_v2", root, chat)),
    ]


def produce(
    bootstrap: str, payloads: list[tuple[bytes | None, bytes]], topic: str = "llm.otlp"
) -> None:
    """Send the export requests as the receiver does (keyed by trace id, the signal in a
    header, acks=all), or, to another topic, as a Collector's Kafka exporter: no header."""
    headers = [(OTLP_HEADER, b"traces")] if topic == "llm.otlp" else None

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in payloads:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(go())


def topics(bootstrap: str) -> set[str]:
    async def go() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(go())


@pytest.fixture
def otlp_stack(stack: Stack) -> Iterator[Stack]:
    stack.extra_env["LLMPULSE_OTLP_TRACE_WAIT_S"] = "1"
    yield stack


def an_hour_ago_ns() -> int:
    return time.time_ns() - 3600 * 1_000_000_000


def test_a_rag_trace_is_stored_with_its_retrieved_context_and_scored(
    otlp_stack: Stack, broker: EmbeddedBroker
) -> None:
    stack = otlp_stack
    trace = rag_trace(0)
    payloads = messages(trace, an_hour_ago_ns())
    # Both messages wait on the topic, so the worker's 1 s hold cannot end between them
    # however slowly this machine produces (the hold's rules are unit-tested).
    produce(stack.bootstrap, payloads)
    worker = stack.start_worker()

    assert stack.wait_for(EVENTS, 1) == 1
    assert stack.wait_for(SPANS, 3) == 3
    spans = stack.sql("SELECT span_id, operation, event_id FROM llm_spans FINAL ORDER BY ts")
    assert [(s["span_id"], s["event_id"]) for s in spans] == [
        (trace.root, ""), (trace.retriever, ""), (trace.chat, trace.event_id)
    ]  # fmt: skip
    (row,) = stack.sql(
        "SELECT event_id, trace_id, span_id, parent_span_id, model, input_tokens, "
        "output_tokens, context, context_source, input, output, hallucination, environment "
        "FROM llm_events FINAL"
    )
    assert row["event_id"] == trace.event_id
    assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == (
        trace.trace_id, trace.chat, trace.root
    )  # fmt: skip
    assert row["model"] == "gpt-4o-mini-2024-07-18"
    assert (int(row["input_tokens"]), int(row["output_tokens"])) == (57, 11)
    assert (row["input"], row["output"]) == (QUESTION, ANSWER)
    assert row["context"] == list(DOCUMENTS)
    assert row["context_source"] == "trace"
    assert row["hallucination"] is not None
    assert row["environment"] == "test"

    # The same export requests again: stored once (the replay's rows replace the first).
    before = stack.sql("SELECT toString(now64(3)) AS t")[0]["t"]
    produce(stack.bootstrap, payloads)
    replayed = f"SELECT count() FROM llm_spans WHERE ingested_at > '{before}'"
    assert stack.wait_for(replayed, 3) == 3
    again = f"SELECT count() FROM llm_events WHERE app = '{APP}' AND ingested_at > '{before}'"
    assert stack.wait_for(again, 1) == 1
    assert stack.scalar(SPANS) == 3
    assert stack.scalar(EVENTS) == 1
    assert stack.stop_worker(worker) == 0


@pytest.mark.parametrize("seam", ["published", "stored"])
def test_a_worker_killed_between_the_steps_loses_nothing_and_stores_nothing_twice(
    otlp_stack: Stack, broker: EmbeddedBroker, seam: str
) -> None:
    """SIGKILL after the events were published (``published``) or the spans stored too
    (``stored``), before any message was acked: the next worker replays them all."""
    stack = otlp_stack
    traces = [rag_trace(n) for n in range(40)]
    start = an_hour_ago_ns()
    payloads = [m for i, t in enumerate(traces) for m in messages(t, start + i * 1_000_000_000)]
    produce(stack.bootstrap, payloads)

    stack.worker_module = "tests.integration.otlp_faults"
    stack.extra_env["LLMPULSE_OTLP_KILL_AT"] = seam
    first = stack.start_worker()
    assert first.wait(300) == -signal.SIGKILL
    out = (stack.home.parent / "worker-0.out").read_text()
    assert f"OTLP FAULT: SIGKILL at {seam}" in out

    stack.worker_module = "llmpulse.cli"
    del stack.extra_env["LLMPULSE_OTLP_KILL_AT"]
    second = stack.start_worker()
    assert stack.wait_for(SPANS, 3 * len(traces), timeout=300) == 3 * len(traces)
    assert stack.wait_for(EVENTS, len(traces), timeout=300) == len(traces)
    with_context = stack.scalar(
        "SELECT countIf(context_source = 'trace' AND length(context) = 2) "
        f"FROM llm_events FINAL WHERE app = '{APP}'"
    )
    assert with_context == len(traces)
    ids = {r["event_id"] for r in stack.sql("SELECT event_id FROM llm_events FINAL")}
    assert ids == {t.event_id for t in traces}
    assert stack.stop_worker(second) == 0


def test_a_collector_s_topic_is_read_many_traces_a_message_and_no_header(
    otlp_stack: Stack, broker: EmbeddedBroker
) -> None:
    stack = otlp_stack
    stack.extra_env["LLMPULSE_OTLP_COLLECTOR_TRACES_TOPIC"] = "otlp_spans"
    worker = stack.start_worker()
    deadline = time.monotonic() + 120
    while "otlp_spans" not in topics(stack.bootstrap):
        assert time.monotonic() < deadline, "the worker did not create the Collector's topic"
        time.sleep(0.5)

    pair = [rag_trace(7), rag_trace(8)]
    start = an_hour_ago_ns()
    parts = [ExportTraceServiceRequest.FromString(v) for t in pair for _, v in messages(t, start)]
    merged = ExportTraceServiceRequest(
        resource_spans=[rs for part in parts for rs in part.resource_spans]
    )
    produce(stack.bootstrap, [(None, merged.SerializeToString())], topic="otlp_spans")

    assert stack.wait_for(EVENTS, 2) == 2
    assert stack.wait_for(SPANS, 6) == 6
    rows = stack.sql(f"SELECT event_id, context FROM llm_events FINAL WHERE app = '{APP}'")
    assert {r["event_id"]: r["context"] for r in rows} == {
        t.event_id: list(DOCUMENTS) for t in pair
    }
    assert stack.stop_worker(worker) == 0
