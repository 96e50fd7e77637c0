"""OTLP spans and logs -> llm_spans columns and Event v1 payloads (ingest/otlp_mapping.py).

The first half reads what the instrumentation libraries really sent
(tests/fixtures/otlp, made by tests/otlp_apps/capture.py); the second builds spans by
hand for the forms the installed libraries no longer emit (older and oldest GenAI
events, OpenLLMetry's indexed attributes, cache-write tokens) and for bad input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from ingest.otlp_mapping import (
    CONTENT_LOG_NAMES,
    EVENT_MAX_BYTES,
    TRUNCATED_TAG,
    build_event,
    map_logs,
    map_spans,
)
from ingest.otlp_model import LlmCall, MappedLog, MappedSpan, otlp_event_id
from ingest.schema import LIMITS, Event, parse_event
from storage.rows import SPAN_COLUMNS
from tests.otlp_apps.app import DOCUMENTS, QUESTION, SYSTEM, question
from tests.otlp_apps.standin import DATED

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "otlp"
CAPTURES = json.loads((FIXTURES / "captures.json").read_text())
NAMES = sorted(name for name in CAPTURES if name != "versions")
MODEL = DATED["gpt-4o-mini"]  # the dated model the stand-in answers with
ANSWER = "The answer to '{}' is 42."
RAG_SYSTEM = "\n".join(["Answer from the context.", "Context:", *(f"- {d}" for d in DOCUMENTS)])


@cache
def captured(name: str) -> tuple[list[MappedSpan], list[MappedLog]]:
    """A capture's spans and content logs, mapped; a capture of real output has no
    rejects."""
    spans: list[MappedSpan] = []
    logs: list[MappedLog] = []
    for path in sorted(FIXTURES.glob(f"{name}-traces-*.pb")):
        traces = ExportTraceServiceRequest.FromString(path.read_bytes())
        mapped, rejected = map_spans(traces)
        assert rejected == []
        spans += mapped
    for path in sorted(FIXTURES.glob(f"{name}-logs-*.pb")):
        records = ExportLogsServiceRequest.FromString(path.read_bytes())
        mapped_logs, rejected = map_logs(records)
        assert rejected == []
        logs += mapped_logs
    return spans, logs


def events(name: str) -> list[dict[str, Any]]:
    """The Event v1 payload of each LLM span of a capture, in start order, with its
    trace's retriever documents as the worker would join them."""
    spans, logs = captured(name)
    documents = {s.trace_id: s.documents for s in spans if s.documents is not None}
    calls = sorted((s for s in spans if s.call is not None), key=lambda s: s.start_ns)
    return [build_event(s.call, logs, documents.get(s.trace_id)) for s in calls if s.call]


def valid(event: Mapping[str, Any]) -> Event:
    parsed = parse_event(json.dumps(event))
    assert isinstance(parsed, Event), parsed
    return parsed


# ---------------------------------------------------------------- captured output


@pytest.mark.parametrize("name", NAMES)
def test_every_captured_call_becomes_one_valid_event_of_its_app(name: str) -> None:
    found = events(name)
    report = CAPTURES[name]["report"]
    assert len(found) == len(report["traces"])
    assert [valid(e).app for e in found] == [f"{name}-app"] * len(found)
    assert {e["environment"] for e in found} == {"test"}


@pytest.mark.parametrize("name", NAMES)
def test_every_call_keeps_the_trace_id_the_app_made(name: str) -> None:
    assert [e["trace_id"] for e in events(name)] == CAPTURES[name]["report"]["traces"]


@pytest.mark.parametrize("name", NAMES)
def test_every_span_has_exactly_the_llm_spans_columns(name: str) -> None:
    spans, _ = captured(name)
    assert {tuple(s.columns) for s in spans} == {SPAN_COLUMNS}


@pytest.mark.parametrize("name", ["genai-spans", "genai-logs", "openinference", "openllmetry"])
def test_a_library_call_maps_model_text_and_system(name: str) -> None:
    first, second = events(name)
    for i, event in enumerate((first, second)):
        assert event["model"] == MODEL
        assert event["system"] == SYSTEM
        assert event["input"] == question(i)
        assert event["output"] == ANSWER.format(question(i))
        assert event["provider"] == "openai"
        assert event["status"] == "ok"


def test_openai_v2_spans_report_input_and_output_tokens() -> None:
    """opentelemetry-instrumentation-openai-v2 2.4b0 sets no cache or reasoning counts."""
    assert [e["usage"] for e in events("genai-spans")] == [
        {"input_tokens": 13, "output_tokens": 15}
    ] * 2


@pytest.mark.parametrize("name", ["openinference", "openllmetry", "openllmetry-events"])
def test_cache_read_and_reasoning_tokens_are_kept(name: str) -> None:
    assert [e["usage"] for e in events(name)] == [
        {"input_tokens": 13, "output_tokens": 15, "cached_tokens": 6, "reasoning_tokens": 2}
    ] * 2


def test_openinference_prompt_template_version_is_the_prompt_version() -> None:
    assert [e["prompt_version"] for e in events("openinference")] == ["v3", "v3"]


def test_content_sent_as_operation_details_logs_joins_its_span() -> None:
    spans, logs = captured("genai-logs")
    llm = [s for s in spans if s.call is not None]
    assert sorted(log.span_id for log in logs) == sorted(s.span_id for s in llm)
    assert all("input" not in s.call.event for s in llm if s.call)  # the span has none
    assert [e["input"] for e in events("genai-logs")] == [question(0), question(1)]


def test_content_sent_as_per_message_logs_joins_its_span() -> None:
    _, logs = captured("openllmetry-events")
    names = [log.name for log in logs]
    assert names == ["gen_ai.system.message", "gen_ai.user.message", "gen_ai.choice"] * 2
    first = events("openllmetry-events")[0]
    assert (first["system"], first["input"]) == (SYSTEM, question(0))
    assert first["output"] == ANSWER.format(question(0))


@pytest.mark.parametrize("name", ["openinference-stream", "openllmetry-stream"])
def test_a_streamed_call_gets_its_time_to_first_token_from_the_first_token_event(
    name: str,
) -> None:
    (event,) = events(name)
    assert 0 < event["ttft_ms"] < event["latency_ms"]
    assert event["output"] == ANSWER.format(question(0))


@pytest.mark.parametrize("name", ["genai-spans-stream", "genai-logs-stream"])
def test_a_streamed_openai_v2_call_maps_like_a_plain_one(name: str) -> None:
    (event,) = events(name)
    assert (event["model"], event["input"]) == (MODEL, question(0))
    assert event["output"] == ANSWER.format(question(0))
    assert "ttft_ms" not in event  # openai-v2 2.4b0 sends no time to first chunk


def test_a_failed_call_is_an_error_event_of_the_requested_model() -> None:
    (event,) = events("genai-spans-error")
    assert (event["status"], event["error_type"]) == ("error", "openai.NotFoundError")
    assert (event["model"], event["output"]) == ("missing-model", "")
    assert event["input"] == question(0)


@pytest.mark.parametrize("name", ["genai-spans-rag", "genai-logs-rag", "openinference-rag"])
def test_a_retriever_span_carries_its_documents_by_rank(name: str) -> None:
    spans, _ = captured(name)
    (retriever,) = [s for s in spans if s.documents is not None]
    assert retriever.documents == DOCUMENTS
    assert retriever.columns["operation"] == "retrieval"
    assert "document.content" not in retriever.columns["attributes"]


@pytest.mark.parametrize("name", ["genai-spans-rag", "openinference-rag", "openllmetry-rag"])
def test_a_rag_call_takes_its_context_from_the_trace(name: str) -> None:
    (event,) = events(name)
    assert event["context"] == list(DOCUMENTS)
    assert event["context_source"] == "trace"
    assert (event["system"], event["input"]) == (RAG_SYSTEM, QUESTION)
    assert event["output"] == DOCUMENTS[0]


def test_a_rag_calls_parent_is_a_span_without_a_call() -> None:
    spans, _ = captured("openinference-rag")
    (parent,) = [s for s in spans if s.columns["name"] == "rag-request"]
    (llm,) = [s for s in spans if s.call is not None]
    assert (parent.call, parent.documents, parent.columns["event_id"]) == (None, None, "")
    assert llm.parent_span_id == parent.span_id
    assert llm.call and llm.call.event["parent_span_id"] == parent.span_id


def test_an_llm_span_is_event_otlp_event_id_of_its_trace_and_span() -> None:
    spans, _ = captured("openllmetry")
    for span in spans:
        assert span.call is not None
        expected = otlp_event_id(span.trace_id, span.span_id)
        assert span.columns["event_id"] == span.call.event["event_id"] == expected


def test_span_columns_say_when_what_and_how_long() -> None:
    spans, _ = captured("openinference")
    span = spans[0]
    assert span.columns["ts"] == datetime.fromtimestamp(span.start_ns // 10**9, UTC).replace(
        microsecond=span.start_ns % 10**9 // 1000
    )
    assert span.columns["duration_ms"] == (span.end_ns - span.start_ns) / 1e6
    assert span.columns["kind"] == "internal"
    assert span.columns["scope"] == "openinference.instrumentation.openai"
    assert (span.columns["operation"], span.columns["status"]) == ("chat", "ok")
    assert (span.columns["input_tokens"], span.columns["output_tokens"]) == (13, 15)


def test_consumed_content_leaves_the_attributes_and_the_rest_stays() -> None:
    spans, _ = captured("openinference")
    attributes = json.loads(spans[0].columns["attributes"])
    assert not [k for k in attributes if k.startswith(("llm.input_messages", "llm.output"))]
    assert "input.value" not in attributes and "output.value" not in attributes
    assert attributes["llm.prompt_template.template"] == "{question}"
    assert attributes["openinference.span.kind"] == "LLM"


def test_genai_spans_keep_the_request_model_beside_the_response_model() -> None:
    spans, _ = captured("genai-spans")
    attributes = json.loads(spans[0].columns["attributes"])
    assert "gen_ai.input.messages" not in attributes
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert spans[0].columns["model"] == MODEL


# ---------------------------------------------------------------- hand-built spans

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
START = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
_ids = iter(range(1, 1 << 30))


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list):
        out = AnyValue()
        out.array_value.values.extend(value(x) for x in v)
        return out
    if isinstance(v, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=value(x)) for k, x in v.items())
        return out
    return AnyValue(string_value=str(v))


def kv(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attributes.items()]


def span(
    attributes: Mapping[str, Any],
    *,
    events: Mapping[str, Mapping[str, Any]] | list[tuple[str, Mapping[str, Any]]] = (),
    duration_ns: int = 1_500_000,
    **fields: Any,
) -> Span:
    made = Span(
        trace_id=TRACE,
        span_id=next(_ids).to_bytes(8, "big"),
        name="chat m",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=START,
        end_time_unix_nano=START + duration_ns,
        attributes=kv(attributes),
    )
    for name, attrs in events.items() if isinstance(events, Mapping) else events:
        made.events.add(name=name, time_unix_nano=START + 1000, attributes=kv(attrs))
    for name, field_value in fields.items():
        if name == "status":
            made.status.CopyFrom(field_value)
        else:
            setattr(made, name, field_value)
    return made


def request(*spans: Span, resource: Mapping[str, Any] | None = None) -> ExportTraceServiceRequest:
    made = ExportTraceServiceRequest()
    resource_spans = made.resource_spans.add()
    resource_spans.resource.attributes.extend(kv(resource or {"service.name": "shop"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "hand"
    scope_spans.spans.extend(spans)
    return made


def one(made: Span, resource: Mapping[str, Any] | None = None) -> MappedSpan:
    mapped, rejected = map_spans(request(made, resource=resource))
    assert rejected == []
    (only,) = mapped
    return only


def event_of(made: Span, resource: Mapping[str, Any] | None = None) -> dict[str, Any]:
    call = one(made, resource).call
    assert call is not None
    event = build_event(call, [], None)
    valid(event)
    return event


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}


def test_oldest_genai_prompt_and_completion_events_are_read() -> None:
    prompt = json.dumps(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    )
    completion = json.dumps([{"role": "assistant", "content": "Hello."}])
    event = event_of(
        span(
            CHAT,
            events={
                "gen_ai.content.prompt": {"gen_ai.prompt": prompt},
                "gen_ai.content.completion": {"gen_ai.completion": completion},
            },
        )
    )
    assert (event["system"], event["input"], event["output"]) == ("Be brief.", "Hi?", "Hello.")


def test_oldest_plain_text_prompt_is_the_input() -> None:
    event = event_of(span({**CHAT, "gen_ai.prompt": "Plain?", "gen_ai.completion": "Plain."}))
    assert (event["input"], event["output"]) == ("Plain?", "Plain.")
    assert "system" not in event


def test_older_genai_message_events_render_a_conversation_by_role() -> None:
    events = [
        ("gen_ai.system.message", {"gen_ai.event.content": json.dumps({"content": "Be brief."})}),
        ("gen_ai.user.message", {"gen_ai.event.content": json.dumps({"content": "Hi?"})}),
        ("gen_ai.assistant.message", {"gen_ai.event.content": json.dumps({"content": "Hello."})}),
        ("gen_ai.user.message", {"gen_ai.event.content": json.dumps({"content": "Price?"})}),
        (
            "gen_ai.choice",
            {"gen_ai.event.content": json.dumps({"message": {"content": "Ten euros."}})},
        ),
    ]
    event = event_of(span(CHAT, events=events))
    assert event["system"] == "Be brief."
    assert event["input"] == "user: Hi?\nassistant: Hello.\nuser: Price?"
    assert event["output"] == "Ten euros."


def test_openllmetry_indexed_attributes_are_read_in_index_order() -> None:
    attributes = {
        "llm.request.type": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Weather in Oslo?",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "You forecast.",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.tool_calls.0.name": "forecast",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Oslo"}',
        "gen_ai.usage.prompt_tokens": 11,
        "gen_ai.usage.completion_tokens": 4,
    }
    event = event_of(span(attributes))
    assert (event["system"], event["input"]) == ("You forecast.", "Weather in Oslo?")
    assert event["output"] == '[tool call] forecast({"city": "Oslo"})'
    assert event["usage"] == {"input_tokens": 11, "output_tokens": 4}


def test_a_total_with_one_side_gives_the_other() -> None:
    attributes = {**CHAT, "llm.usage.total_tokens": 30, "gen_ai.usage.completion_tokens": 12}
    assert event_of(span(attributes))["usage"] == {"input_tokens": 18, "output_tokens": 12}


def test_openinference_cache_read_and_write_tokens() -> None:
    attributes = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "claude-x",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "Hi?",
        "llm.token_count.prompt": 100,
        "llm.token_count.completion": 5,
        "llm.token_count.prompt_details.cache_read": 60,
        "llm.token_count.prompt_details.cache_write": 30,
    }
    event = event_of(span(attributes))
    assert event["usage"] == {
        "input_tokens": 100,
        "output_tokens": 5,
        "cached_tokens": 60,
        "cache_write_tokens": 30,
    }
    assert (event["model"], event["input"], event["output"]) == ("claude-x", "Hi?", "")


def test_genai_cache_write_and_reasoning_tokens() -> None:
    attributes = {
        **CHAT,
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.cache_creation.input_tokens": 20,
        "gen_ai.usage.reasoning.output_tokens": 7,
    }
    usage = event_of(span(attributes))["usage"]
    assert usage == {"input_tokens": 50, "cache_write_tokens": 20, "reasoning_tokens": 7}


def test_time_to_first_chunk_is_seconds_made_milliseconds() -> None:
    event = event_of(span({**CHAT, "gen_ai.response.time_to_first_chunk": 0.25}))
    assert event["ttft_ms"] == 250.0
    assert event["latency_ms"] == 1.5


def test_llmpulse_app_wins_over_the_service_name() -> None:
    event = event_of(span({**CHAT, "llmpulse.app": "checkout"}))
    assert event["app"] == "checkout"


def test_the_older_deployment_environment_and_a_resource_prompt_version_are_read() -> None:
    resource = {
        "service.name": "shop",
        "deployment.environment": "staging",
        "llmpulse.prompt_version": "v7",
    }
    event = event_of(span(CHAT), resource)
    assert (event["app"], event["environment"], event["prompt_version"]) == (
        "shop",
        "staging",
        "v7",
    )


def test_the_response_model_wins_over_the_request_model() -> None:
    event = event_of(span({**CHAT, "gen_ai.response.model": "m-2025-01-01"}))
    assert event["model"] == "m-2025-01-01"


def test_a_numeric_string_token_count_is_taken() -> None:
    event = event_of(span({**CHAT, "gen_ai.usage.input_tokens": "12"}))
    assert event["usage"] == {"input_tokens": 12}


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        (
            {"gen_ai.usage.input_tokens": "many"},
            "gen_ai.usage.input_tokens: expected a token count, got 'many'",
        ),
        (
            {"llm.token_count.completion": -3},
            "llm.token_count.completion: token count -3 is negative",
        ),
        (
            {"gen_ai.usage.output_tokens": True},
            "gen_ai.usage.output_tokens: expected a token count, got a boolean",
        ),
        ({"gen_ai.request.model": ["a", "b"]}, "gen_ai.request.model: expected a string, got list"),
        (
            {"gen_ai.response.time_to_first_chunk": "soon"},
            "gen_ai.response.time_to_first_chunk: expected seconds >= 0, got 'soon'",
        ),
    ],
)
def test_a_wrong_type_rejects_the_span_with_the_reason(
    attributes: dict[str, Any], reason: str
) -> None:
    bad = span({**CHAT, **attributes})
    mapped, rejected = map_spans(request(bad))
    assert mapped == []
    assert [(r.trace_id, r.span_id, r.reason) for r in rejected] == [
        (TRACE.hex(), bad.span_id.hex(), reason)
    ]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trace_id": b""}, "trace_id: missing"),
        ({"span_id": b"\x01\x02"}, "span_id: 2 bytes, expected 8"),
        ({"trace_id": bytes(16)}, "trace_id: all zero"),
        ({"start_time_unix_nano": 0}, "start_time_unix_nano: missing or outside the years"),
        ({"end_time_unix_nano": START - 1}, "end_time_unix_nano: before the span's start"),
    ],
)
def test_missing_ids_or_times_reject_the_span(fields: dict[str, Any], reason: str) -> None:
    _, rejected = map_spans(request(span(CHAT, **fields)))
    (only,) = rejected
    assert only.reason.startswith(reason)


def test_a_rejected_span_leaves_the_others_of_its_request_mapped() -> None:
    good, bad = span(CHAT), span({**CHAT, "gen_ai.usage.input_tokens": -1})
    mapped, rejected = map_spans(request(good, bad))
    assert [m.span_id for m in mapped] == [good.span_id.hex()]
    assert [r.span_id for r in rejected] == [bad.span_id.hex()]


def test_a_span_without_llm_content_is_a_span_only() -> None:
    http = span({"http.request.method": "GET", "url.path": "/cart"}, name="GET /cart")
    mapped = one(http)
    assert (mapped.call, mapped.documents, mapped.columns["event_id"]) == (None, None, "")
    assert json.loads(mapped.columns["attributes"]) == {
        "http.request.method": "GET",
        "url.path": "/cart",
    }


def test_a_huge_attribute_is_cut_in_llm_spans_and_named() -> None:
    huge = "q" * (LIMITS.context_chunk_chars + 10)
    attributes = json.loads(
        one(span({"db.query.text": huge, "db.system": "x"})).columns["attributes"]
    )
    assert len(attributes["db.query.text"]) == LIMITS.context_chunk_chars
    assert attributes[TRUNCATED_TAG] == ["db.query.text"]
    assert attributes["db.system"] == "x"


def test_an_agent_spans_messages_stay_in_its_attributes() -> None:
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Plan"}]}])
    agent = one(span({"gen_ai.operation.name": "invoke_agent", "gen_ai.input.messages": messages}))
    assert agent.call is None
    assert json.loads(agent.columns["attributes"])["gen_ai.input.messages"] == messages


def test_an_error_status_without_error_type_takes_the_exception_events_type() -> None:
    failed = span(
        CHAT,
        events={"exception": {"exception.type": "TimeoutError"}},
        status=Status(code=Status.STATUS_CODE_ERROR, message="timed out"),
    )
    mapped = one(failed)
    assert (mapped.columns["status"], mapped.columns["status_message"]) == ("error", "timed out")
    assert mapped.columns["error_type"] == "TimeoutError"
    assert mapped.call and mapped.call.event["status"] == "error"


@pytest.mark.parametrize("value", [-1, 99])
def test_an_unknown_status_code_or_span_kind_is_unset_never_another_value(value: int) -> None:
    mapped = one(span(CHAT, kind=value, status=Status(code=value)))  # proto3 keeps them
    assert (mapped.columns["status"], mapped.columns["kind"]) == ("unset", "unspecified")
    assert mapped.call and mapped.call.event["status"] == "ok"


def test_genai_retrieval_documents_without_text_give_no_context() -> None:
    ids_only = json.dumps([{"id": "doc-0", "score": 0.9}])
    retriever = one(
        span({"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": ids_only})
    )
    assert retriever.documents is None
    assert json.loads(retriever.columns["attributes"])["gen_ai.retrieval.documents"] == ids_only


def test_a_retriever_that_found_nothing_has_no_documents_but_is_one() -> None:
    nothing = span({"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": "[]"})
    assert one(nothing).documents == ()


# ---------------------------------------------------------------- build_event


def test_an_llm_spans_own_documents_win_over_the_traces() -> None:
    call = one(span({**CHAT, "llmpulse.context": ["Own chunk."]})).call
    assert call is not None
    event = build_event(call, [], ["Trace chunk."])
    assert (event["context"], event["context_source"]) == (["Own chunk."], "span")


def test_no_retriever_span_means_no_context_and_says_so() -> None:
    event = event_of(span(CHAT))
    assert event["context_source"] == "none"
    assert "context" not in event


def test_a_span_without_content_anywhere_has_empty_texts() -> None:
    event = event_of(span(CHAT))
    assert (event["input"], event["output"]) == ("", "")
    assert "system" not in event


def test_the_spans_own_content_wins_over_its_logs() -> None:
    made = one(span({**CHAT, "gen_ai.prompt": "From the span."}))
    assert made.call is not None
    log = MappedLog(
        trace_id=made.trace_id,
        span_id=made.span_id,
        time_ns=START,
        name="gen_ai.choice",
        content={
            "input": [{"role": "user", "text": "From a log."}],
            "output": [{"role": "assistant", "text": "Logged answer."}],
        },
    )
    other = MappedLog(made.trace_id, "00000000000000ff", START, "gen_ai.choice", {"output": []})
    event = build_event(made.call, [log, other], None)
    assert (event["input"], event["output"]) == ("From the span.", "Logged answer.")


def test_system_instructions_on_the_span_join_the_messages_of_its_logs() -> None:
    instructions = json.dumps([{"type": "text", "content": "Be brief."}])
    made = one(span({**CHAT, "gen_ai.system_instructions": instructions}))
    assert made.call is not None
    log = MappedLog(
        trace_id=made.trace_id,
        span_id=made.span_id,
        time_ns=START,
        name="gen_ai.client.inference.operation.details",
        content={
            "input": [{"role": "user", "text": "Hi?"}],
            "output": [{"role": "assistant", "text": "Hello."}],
        },
    )
    event = build_event(made.call, [log], None)
    assert (event["system"], event["input"], event["output"]) == ("Be brief.", "Hi?", "Hello.")


def test_a_text_over_the_limit_is_cut_and_tagged() -> None:
    long_question = "why " * (LIMITS.text_chars // 4 + 10)
    event = event_of(span({**CHAT, "gen_ai.prompt": long_question}))
    assert len(event["input"]) == LIMITS.text_chars
    assert event["tags"][TRUNCATED_TAG] == "input"


def worker_bytes(event: Mapping[str, Any]) -> int:
    """The event's size as the worker publishes it (processors/otlp.py)."""
    encoded = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(encoded.encode())


def test_context_over_the_payload_limit_is_cut_until_the_event_validates() -> None:
    chunks = [f"{i:02d}" + "x" * (LIMITS.context_chunk_chars - 2) for i in range(80)]
    call = one(span(CHAT)).call
    assert call is not None
    event = build_event(call, [], chunks)
    parsed = valid(event)
    assert EVENT_MAX_BYTES - 2000 < worker_bytes(event) <= EVENT_MAX_BYTES
    assert parsed.context is not None and len(parsed.context) == LIMITS.context_chunks
    assert [c[:2] for c in parsed.context] == [f"{i:02d}" for i in range(LIMITS.context_chunks)]
    assert event["tags"][TRUNCATED_TAG] == "context"


def test_the_payload_limit_cuts_the_longest_texts_alike_and_keeps_short_ones() -> None:
    def said(role: str, text: str) -> dict[str, Any]:
        return {"role": role, "parts": [{"type": "text", "content": text}]}

    long_text = "y" * LIMITS.text_chars
    inputs = json.dumps([said("system", "Be brief."), said("user", long_text)])
    outputs = json.dumps([said("assistant", long_text)])
    attributes = {"gen_ai.input.messages": inputs, "gen_ai.output.messages": outputs}
    made = one(span({**CHAT, **attributes}))
    assert made.call is not None
    chunks = ["z" * 10_000] * LIMITS.context_chunks
    event = build_event(made.call, [], chunks)
    valid(event)
    assert (event["system"], event["context"]) == ("Be brief.", chunks)
    assert len(event["input"]) == len(event["output"]) < LIMITS.text_chars
    assert event["tags"][TRUNCATED_TAG] == "input,output"


def test_build_event_leaves_the_call_it_was_given_unchanged() -> None:
    call = one(span({**CHAT, "gen_ai.prompt": "Hi?"})).call
    assert isinstance(call, LlmCall)
    before = json.dumps(call.event, sort_keys=True)
    build_event(call, [], ["chunk"])
    assert json.dumps(call.event, sort_keys=True) == before


# ---------------------------------------------------------------- logs


def logs_request(*records: LogRecord) -> ExportLogsServiceRequest:
    made = ExportLogsServiceRequest()
    scope_logs = made.resource_logs.add().scope_logs.add()
    scope_logs.log_records.extend(records)
    return made


def record(
    name: str, body: Any, span_id: bytes = b"\x00" * 7 + b"\x09", **fields: Any
) -> LogRecord:
    return LogRecord(trace_id=TRACE, span_id=span_id, event_name=name, body=value(body), **fields)


def test_log_records_that_are_not_genai_content_are_ignored() -> None:
    plain = LogRecord(trace_id=TRACE, span_id=b"\x00" * 7 + b"\x09", body=value("GET /cart 200"))
    assert map_logs(logs_request(plain)) == ([], [])


def test_the_event_name_may_come_as_an_attribute() -> None:
    old = LogRecord(
        trace_id=TRACE,
        span_id=b"\x00" * 7 + b"\x09",
        time_unix_nano=START,
        body=value({"content": "Hi?"}),
        attributes=kv({"event.name": "gen_ai.user.message"}),
    )
    (mapped,), rejected = map_logs(logs_request(old))
    assert rejected == []
    assert (mapped.name, mapped.span_id, mapped.time_ns) == (
        "gen_ai.user.message",
        "0000000000000009",
        START,
    )
    assert mapped.content == {"input": [{"role": "user", "text": "Hi?"}]}


def test_a_genai_record_without_a_span_id_is_rejected() -> None:
    orphan = record("gen_ai.user.message", {"content": "Hi?"}, span_id=b"")
    mapped, rejected = map_logs(logs_request(orphan))
    assert mapped == []
    assert [r.reason for r in rejected] == ["span_id: missing"]


def test_operation_details_in_the_body_are_read() -> None:
    details = record(
        "gen_ai.client.inference.operation.details",
        {
            "gen_ai.system_instructions": [{"type": "text", "content": "Be brief."}],
            "gen_ai.input.messages": [
                {"role": "user", "parts": [{"type": "text", "content": "Hi?"}]}
            ],
            "gen_ai.output.messages": [
                {"role": "assistant", "parts": [{"type": "text", "content": "Hello."}]}
            ],
        },
        observed_time_unix_nano=START,
    )
    (mapped,), _ = map_logs(logs_request(details))
    assert mapped.time_ns == START
    assert mapped.content == {
        "input": [{"role": "system", "text": "Be brief."}, {"role": "user", "text": "Hi?"}],
        "output": [{"role": "assistant", "text": "Hello."}],
    }


# ---------------------------------------------------------------- any input

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["role", "content", "parts", "type", "text", "message", "tool_calls",
                         "function", "name", "arguments", "index", "response"]),
        inner,
        max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip
CONTENT_KEYS = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.tool_calls.0.arguments",
    "llm.input_messages.0.message.content",
    "llm.output_messages.0.message.contents.0.message_content.text",
    "retrieval.documents.0.document.content",
    "gen_ai.retrieval.documents",
    "llmpulse.context",
]
SCALAR = st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(CONTENT_KEYS),
        JSONISH.map(json.dumps) | st.lists(SCALAR.filter(lambda v: v is not None), max_size=3),
        max_size=4,
    ),
    st.sampled_from(["chat", "retrieval", "invoke_agent", ""]),
)
def test_content_of_any_shape_never_rejects_a_span_and_its_event_validates(
    attributes: dict[str, Any], operation: str
) -> None:
    made = span({"gen_ai.operation.name": operation, **attributes})
    (each,), rejected = map_spans(request(made))
    assert rejected == []
    if each.call is not None:
        valid(build_event(each.call, [], each.documents))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(CONTENT_LOG_NAMES)),
    JSONISH,
    st.dictionaries(st.sampled_from(CONTENT_KEYS[:3]), JSONISH, max_size=3),
)
def test_a_content_log_of_any_shape_maps_and_its_event_validates(
    name: str, body: Any, attributes: dict[str, Any]
) -> None:
    made = record(name, body)
    made.attributes.extend(kv({k: v for k, v in attributes.items() if v is not None}))
    (log,), rejected = map_logs(logs_request(made))
    assert rejected == []
    call = one(span(CHAT)).call
    assert call is not None
    valid(build_event(call, [replace(log, span_id=call.event["span_id"])], None))
