"""The worker's OTLP handler (processors/otlp.py) around the assembler: what it publishes,
stores and dead-letters, and that a message is acked only after all of that.

Requests are real protobuf export requests; the mapping is a stand-in that reads a span's
name (``chat`` is an LLM span, ``retrieve`` a retriever whose documents are its ``doc``
attributes), so these tests pin the handler, not the mapping. Storage and Kafka are fakes
that record the order of what happened; a fake clock ends the wait.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from core.retry import Backoff
from detectors.redaction import Redactor
from ingest.envelope import ENVELOPE_HEADER
from ingest.otlp_model import LlmCall, MappedLog, MappedSpan, Rejected, otlp_event_id
from processors.batch import Record
from processors.otlp import Incoming, OtlpHandler, OtlpMapping, incoming_of
from processors.otlp_traces import TraceAssembler

TRACE = "0af7651916cd43dd8448eb211c80319c"
WAIT = 5.0


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def columns(trace_id: str, span_id: str, name: str, attributes: dict[str, Any]) -> dict:
    return {
        "trace_id": trace_id, "span_id": span_id, "parent_span_id": "",
        "ts": datetime(2026, 3, 1, tzinfo=UTC), "duration_ms": 1.0, "name": name,
        "kind": "client", "app": "rag", "environment": "", "scope": "test", "operation": name,
        "model": "", "status": "unset", "status_message": "", "error_type": "",
        "input_tokens": None, "output_tokens": None, "event_id": "",
        "attributes": json.dumps(attributes),
    }  # fmt: skip


def map_spans(request: ExportTraceServiceRequest) -> tuple[list[MappedSpan], list[Rejected]]:
    spans, rejected = [], []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                trace_id, span_id = s.trace_id.hex(), s.span_id.hex()
                if len(s.span_id) != 8:
                    rejected.append(Rejected(trace_id, span_id, "span_id must be 8 bytes"))
                    continue
                attrs = {a.key: a.value.string_value for a in s.attributes}
                call = None
                if s.name == "chat":
                    event = {"event_id": otlp_event_id(trace_id, span_id), "span": span_id}
                    call = LlmCall(event)
                docs = tuple(v for k, v in attrs.items() if k.startswith("doc"))
                spans.append(MappedSpan(
                    columns(trace_id, span_id, s.name, attrs), s.start_time_unix_nano,
                    s.end_time_unix_nano, call, docs if s.name == "retrieve" else None,
                ))  # fmt: skip
    return spans, rejected


def map_logs(request: ExportLogsServiceRequest) -> tuple[list[MappedLog], list[Rejected]]:
    return [
        MappedLog(r.trace_id.hex(), r.span_id.hex(), r.time_unix_nano, "gen_ai.choice",
                  {"content": r.body.string_value})
        for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records
    ], []  # fmt: skip


def build_event(
    call: LlmCall, logs: Sequence[MappedLog], documents: Sequence[str] | None
) -> dict[str, Any]:
    return {
        **call.event,
        "context": None if documents is None else list(documents),
        "logs": [x.content["content"] for x in logs],
    }


def span_pb(span_id: str, name: str, start: int, **attrs: str) -> Span:
    return Span(
        trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(span_id), name=name,
        start_time_unix_nano=start, end_time_unix_nano=start + 10,
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()],
    )  # fmt: skip


def traces(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )
    return request.SerializeToString()


class Done:
    """An awaitable delivery that has already succeeded."""

    def __await__(self) -> Any:
        return iter(())


class Client:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.inserts: list[tuple[str, list[dict], str]] = []
        self.failures = 0  # inserts that raise first

    def insert(self, table: str, rows: list, column_names: list[str], settings: dict) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("storage down")
        table = table.split(".")[-1]
        self.log.append(f"insert {table}")
        named = [dict(zip(column_names, r, strict=True)) for r in rows]
        self.inserts.append((table, named, settings["insert_deduplication_token"]))


class Engine:
    database = "llmpulse"

    def __init__(self, log: list[str]) -> None:
        self.client = Client(log)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


class World:
    """A handler wired to fakes; ``log`` is the order in which things happened."""

    def __init__(self, mapping: OtlpMapping | None = None) -> None:
        self.log: list[str] = []
        self.clock = Clock()
        self.engine = Engine(self.log)
        self.events: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        self.dead: list[tuple[Record, str, str]] = []
        topics = {"llm.otlp": None, "otel.traces": "traces", "otel.logs": "logs"}
        self.handler = OtlpHandler(
            TraceAssembler(WAIT, self.clock), self.engine,  # type: ignore[arg-type]
            mapping or OtlpMapping(map_spans, map_logs, build_event),
            self.send_dead, self.send_event, Redactor("mask").redact, topics,
            Backoff(first_s=0.001, max_s=0.001),
        )  # fmt: skip
        self.offset = 0

    async def send_dead(self, record: Record, field: str, reason: str) -> Done:
        self.log.append(f"dead letter {field}")
        self.dead.append((record, field, reason))
        return Done()

    async def send_event(self, key: bytes | None, value: bytes, headers: dict) -> Done:
        self.log.append("publish")
        self.events.append((key, value, headers))
        return Done()

    def message(
        self, value: bytes, signal: bytes | None = b"traces", topic: str = "llm.otlp"
    ) -> Incoming:
        self.offset += 1
        offset = self.offset
        record = Record(topic, 0, offset, TRACE.encode(), value)
        headers = [] if signal is None else [("llmpulse.otlp", signal)]

        async def ack() -> None:
            self.log.append(f"ack {offset}")

        return Incoming(record, headers, ack)

    def run(self, *messages: Incoming, wait: bool = True) -> int:
        async def go() -> int:
            await self.handler.intake(messages)
            if wait:
                self.clock.now += WAIT
            return await self.handler.complete()

        return asyncio.run(go())

    def table(self, name: str) -> list[dict]:
        return [row for table, rows, _ in self.engine.client.inserts if table == name
                for row in rows]  # fmt: skip

    def published(self) -> list[dict]:
        out = []
        for _, value, _ in self.events:
            out.extend(json.loads(line) for line in value.split(b"\n"))
        return out


LLM, RET = "00f067aa0ba902b7", "b7ad6b7169203331"


def test_a_trace_is_published_then_stored_then_its_messages_are_acked() -> None:
    world = World()
    first = world.message(traces(span_pb(RET, "retrieve", 100, doc0="Paris is in France.")))
    second = world.message(traces(span_pb(LLM, "chat", 200)))
    assert world.run(first, second) == 1
    assert world.log == ["publish", "insert llm_spans", "ack 1", "ack 2"]
    (event,) = world.published()
    assert event["context"] == ["Paris is in France."]
    assert {r["span_id"]: r["event_id"] for r in world.table("llm_spans")} == {
        RET: "",
        LLM: otlp_event_id(TRACE, LLM),
    }


def test_nothing_is_published_stored_or_acked_before_the_trace_completes() -> None:
    world = World()
    assert world.run(world.message(traces(span_pb(LLM, "chat", 200))), wait=False) == 0
    assert world.log == []


def test_one_event_goes_alone_keyed_by_its_event_id_and_several_share_an_envelope() -> None:
    world = World()
    world.run(world.message(traces(span_pb(LLM, "chat", 200))))
    assert world.events[0][0] == otlp_event_id(TRACE, LLM).encode()
    assert world.events[0][2] == {}

    world = World()
    world.run(world.message(traces(span_pb(LLM, "chat", 200), span_pb(RET, "chat", 300))))
    ((key, _, headers),) = world.events
    assert (key, headers) == (None, {ENVELOPE_HEADER: b"1"})
    assert [e["span"] for e in world.published()] == [LLM, RET]


def test_a_message_that_does_not_decode_is_one_dead_letter_and_is_acked() -> None:
    world = World()
    world.run(world.message(b"\xff\xff\xff not protobuf"))
    assert world.log == ["dead letter payload", "insert dead_letters", "ack 1"]
    (row,) = world.table("dead_letters")
    assert row["reason"].startswith("payload: not an OTLP traces export request")
    assert (row["topic"], row["offset"], row["envelope_line"]) == ("llm.otlp", 1, 0)


def test_a_message_without_the_signal_header_is_a_dead_letter() -> None:
    world = World()
    world.run(world.message(traces(span_pb(LLM, "chat", 200)), signal=None))
    ((_, field, reason),) = world.dead
    assert (field, reason) == ("llmpulse.otlp", "llmpulse.otlp: header missing: expected "
                                                "traces or logs")  # fmt: skip
    assert world.events == []


def test_a_rejected_span_is_a_dead_letter_naming_it_and_the_others_are_kept() -> None:
    world = World()
    bad = Span(trace_id=bytes.fromhex(TRACE), span_id=b"\x01\x02", name="chat")
    world.run(world.message(traces(bad, span_pb(LLM, "chat", 200))))
    (row,) = world.table("dead_letters")
    assert row["reason"] == f"span: 0102 of trace {TRACE}: span_id must be 8 bytes"
    assert row["envelope_line"] == 1
    assert [r["span_id"] for r in world.table("llm_spans")] == [LLM]
    assert world.log.index("insert dead_letters") < world.log.index("publish")
    assert world.log[-1] == "ack 1"


def test_what_the_receiver_refused_becomes_one_dead_letter_per_reason() -> None:
    world = World()
    listed = {"signal": "traces", "count": 3, "rejected": [
        {"trace_id": TRACE, "span_id": "0000000000000000", "reason": "span_id: all zero"},
        {"trace_id": "", "span_id": "", "reason": "trace_id: must be 16 bytes"},
    ]}  # fmt: skip
    world.run(world.message(json.dumps(listed).encode(), signal=b"rejected"))
    reasons = [row["reason"] for row in world.table("dead_letters")]
    assert reasons == [
        f"span: 0000000000000000 of trace {TRACE}: span_id: all zero (refused by the OTLP "
        "receiver)",
        "span: ? of trace ?: trace_id: must be 16 bytes (refused by the OTLP receiver)",
        "span: and 1 more, not listed",
    ]
    assert world.events == [] and world.log[-1] == "ack 1"


@pytest.mark.parametrize(
    "value",
    [
        b"[1, 2]",
        b'{"signal": "traces", "rejected": [], "count": "three"}',
        b'{"signal": "traces", "rejected": [], "count": Infinity}',
        b'{"signal": "traces", "rejected": [7]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["list", "count-text", "count-infinite", "item-number", "deep"],
)
def test_a_rejection_list_that_is_not_one_is_a_dead_letter_and_is_acked(value: bytes) -> None:
    world = World()
    world.run(world.message(value, signal=b"rejected"))
    ((_, field, reason),) = world.dead
    assert (field, reason) == ("payload", "payload: not a list of the receiver's rejections")
    assert world.log[-1] == "ack 1"


@pytest.mark.parametrize("signal", [b"traces", b"rejected", None])
def test_a_message_with_a_null_value_is_skipped_or_a_dead_letter_never_a_crash(
    signal: bytes | None,
) -> None:
    world = World()
    headers = [] if signal is None else [("llmpulse.otlp", signal)]
    tombstone = SimpleNamespace(topic="llm.otlp", partition=0, offset=7, key=TRACE.encode(),
                                value=None, timestamp=None, headers=headers)  # fmt: skip

    async def ack() -> None:
        world.log.append("ack 7")

    asyncio.run(world.handler.intake([incoming_of(tombstone, ack)]))
    assert world.log[-1] == "ack 7"
    assert world.events == [] and world.table("llm_spans") == []


def test_a_collector_topic_needs_no_header_its_name_gives_the_signal() -> None:
    world = World()
    world.run(world.message(traces(span_pb(LLM, "chat", 200)), signal=None, topic="otel.traces"))
    assert world.dead == []
    assert [r["span_id"] for r in world.table("llm_spans")] == [LLM]


def test_content_logs_from_the_logs_signal_reach_their_span_s_event() -> None:
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    record = LogRecord(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(LLM),
                       time_unix_nano=5, body=AnyValue(string_value="The answer."))  # fmt: skip
    logs = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    ).SerializeToString()
    world = World()
    world.run(world.message(logs, signal=b"logs"), world.message(traces(span_pb(LLM, "chat", 9))))
    assert world.published()[0]["logs"] == ["The answer."]


def test_span_text_is_redacted_before_it_is_stored() -> None:
    world = World()
    leaky = span_pb(RET, "retrieve", 100, doc0="Write to jane.doe@example.com")
    world.run(world.message(traces(leaky, span_pb(LLM, "chat", 200))))
    stored = {r["span_id"]: json.loads(r["attributes"]) for r in world.table("llm_spans")}
    assert "jane.doe@example.com" not in stored[RET]["doc0"]
    assert "[EMAIL]" in stored[RET]["doc0"]
    # the event carries the text as retrieved: the score agent redacts after scoring
    assert world.published()[0]["context"] == ["Write to jane.doe@example.com"]


def test_storage_failures_are_retried_and_the_messages_acked_only_once_stored() -> None:
    world = World()
    world.engine.client.failures = 3
    world.run(world.message(traces(span_pb(LLM, "chat", 200))))
    assert world.log == ["publish", "insert llm_spans", "ack 1"]
    assert world.handler.stats.storage_retries == 3


def test_an_event_that_cannot_be_built_is_a_dead_letter_and_its_span_still_stored() -> None:
    def broken(call: LlmCall, logs: Sequence[MappedLog], docs: Sequence[str] | None) -> dict:
        raise KeyError("gen_ai.request.model")

    world = World(OtlpMapping(map_spans, map_logs, broken))
    world.run(world.message(traces(span_pb(LLM, "chat", 200))))
    (row,) = world.table("dead_letters")
    assert row["reason"] == f"span: {LLM}: no event built (KeyError)"
    assert [r["span_id"] for r in world.table("llm_spans")] == [LLM]
    assert world.events == []
    assert world.log[-1] == "ack 1"


def test_an_event_over_the_limits_is_published_cut_not_dead_lettered() -> None:
    from ingest import otlp_mapping

    world = World(OtlpMapping(map_spans, map_logs, otlp_mapping.build_event))
    chunks = {f"doc{i:02d}": f"{i:02d}" + "x" * 65_534 for i in range(30)}  # 2 MB retrieved
    world.run(world.message(traces(span_pb(RET, "retrieve", 100, **chunks),
                                   span_pb(LLM, "chat", 200))))  # fmt: skip
    assert world.dead == []
    ((_, value, _),) = world.events
    assert len(value) <= otlp_mapping.EVENT_MAX_BYTES
    event = json.loads(value)
    assert [c[:2] for c in event["context"]] == [f"{i:02d}" for i in range(30)]
    assert event["tags"][otlp_mapping.TRUNCATED_TAG] == "context"


def test_a_replayed_trace_is_inserted_with_the_same_dedup_token() -> None:
    tokens = []
    for _ in range(2):
        world = World()
        world.run(world.message(traces(span_pb(LLM, "chat", 200))))
        tokens.append(world.engine.client.inserts[0][2])
    assert tokens[0] == tokens[1]


def test_two_traces_of_one_message_get_their_own_inserts_and_the_message_waits_for_both() -> None:
    other = "4bf92f3577b34da6a3ce929d0e0e4736"
    world = World()
    elsewhere = span_pb(RET, "retrieve", 100)
    elsewhere.trace_id = bytes.fromhex(other)
    later = span_pb("c" * 16, "tool", 150)
    later.trace_id = bytes.fromhex(other)

    async def go() -> None:
        await world.handler.intake([world.message(traces(span_pb(LLM, "chat", 200), elsewhere))])
        world.clock.now += 2
        await world.handler.intake([world.message(traces(later))])
        world.clock.now += WAIT - 2
        await world.handler.complete()  # TRACE only: message 1 still carries the other
        world.log.append("--")
        world.clock.now += 2
        await world.handler.complete()

    asyncio.run(go())
    assert world.log == ["publish", "insert llm_spans", "--", "insert llm_spans", "ack 1", "ack 2"]
    first, second = (t for table, _, t in world.engine.client.inserts if table == "llm_spans")
    assert first != second


def test_a_round_that_could_not_be_published_is_tried_again_whole_before_any_ack() -> None:
    world = World()
    sent = world.send_event
    broker_down = True

    async def flaky(key: bytes | None, value: bytes, headers: dict) -> Done:
        if broker_down:
            raise ConnectionError("no broker")
        return await sent(key, value, headers)

    world.handler.event_sink = flaky

    async def go() -> list[str]:
        nonlocal broker_down
        await world.handler.intake([world.message(traces(span_pb(LLM, "chat", 200)))])
        world.clock.now += WAIT
        try:
            await world.handler.complete()
        except ConnectionError:
            world.log.append("failed")
        broker_down = False
        assert await world.handler.complete() == 1
        return world.log

    assert asyncio.run(go()) == ["failed", "publish", "insert llm_spans", "ack 1"]


def test_a_failed_round_of_a_revoked_partition_is_left_to_its_new_owner() -> None:
    world = World()
    sent = world.send_event
    broker_down = True

    async def flaky(key: bytes | None, value: bytes, headers: dict) -> Done:
        if broker_down:
            raise ConnectionError("no broker")
        return await sent(key, value, headers)

    world.handler.event_sink = flaky

    async def go() -> int:
        nonlocal broker_down
        await world.handler.intake([world.message(traces(span_pb(LLM, "chat", 200)))])
        world.clock.now += WAIT
        with pytest.raises(ConnectionError):
            await world.handler.complete()
        await world.handler.revoked({("llm.otlp", 0)})
        broker_down = False
        return await world.handler.complete()

    assert asyncio.run(go()) == 0
    assert world.log == []  # nothing published, stored or acked here


def test_the_worker_reads_and_creates_the_collector_s_topics_only_when_set() -> None:
    from core.settings import load_settings
    from processors.otlp import otlp_topics
    from processors.worker import worker_topics

    plain = load_settings({})
    assert otlp_topics(plain) == {"llm.otlp": None}
    assert worker_topics(plain) == plain.topics.all()
    collector = load_settings({"LLMPULSE_OTLP_COLLECTOR_TRACES_TOPIC": "otlp_spans",
                               "LLMPULSE_OTLP_COLLECTOR_LOGS_TOPIC": "otlp_logs"})  # fmt: skip
    assert otlp_topics(collector) == {"llm.otlp": None, "otlp_spans": "traces",
                                      "otlp_logs": "logs"}  # fmt: skip
    assert worker_topics(collector) == [*plain.topics.all(), "otlp_spans", "otlp_logs"]


def test_a_span_whose_row_cannot_be_built_is_a_dead_letter_and_the_trace_goes_on() -> None:
    def odd_columns(request: ExportTraceServiceRequest) -> tuple[list[MappedSpan], list]:
        spans, rejected = map_spans(request)
        bad = MappedSpan({**spans[0].columns, "colour": "red"}, 1, 2)  # not an llm_spans column
        return [bad, *spans[1:]], rejected

    world = World(OtlpMapping(odd_columns, map_logs, build_event))
    world.run(world.message(traces(span_pb(RET, "tool", 100), span_pb(LLM, "chat", 200))))
    (row,) = world.table("dead_letters")
    assert row["reason"] == f"span: {RET}: no row (TypeError)"
    assert [r["span_id"] for r in world.table("llm_spans")] == [LLM]
    assert world.log[-1] == "ack 1"
