"""The snippets of docs/instrumenting.md, run as written: each library's setup in a child
process, against the OpenAI stand-in and a local OTLP/HTTP server that keeps what the
real exporter sends; what it sent is then mapped and assembled as the worker does, into
the event the page promises.

Only the receiver's address is changed (the one ``http://127.0.0.1:4318`` of each
snippet), and where the page says to change a setting (``event_only``,
``use_attributes=False``), exactly that change is made. The snippets create the OpenAI
client with no arguments, so the stand-in is given through ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest.otlp_mapping import build_event, map_logs, map_spans
from ingest.otlp_model import MappedLog, MappedSpan
from processors.otlp_traces import TraceAssembler
from tests.otlp_apps.capture import _server, _Sink, app_env
from tests.otlp_apps.standin import Standin, answer_for, usage_for

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "instrumenting.md"
ADDRESS = "http://127.0.0.1:4318"
SYSTEM = "You are a terse assistant."
QUESTION = "How long does a refund take?"
DOCUMENTS = [
    "Refunds are paid back within 5 business days.",
    "Orders ship within 2 days of payment.",
]
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]


def snippet(name: str) -> str:
    found = re.findall(
        rf"<!-- snippet: {re.escape(name)} -->\n```python\n(.*?)```", DOC.read_text(), re.S
    )
    assert len(found) == 1, f"snippet {name!r}: {len(found)} in {DOC.name}"
    return str(found[0])


def edited(code: str, old: str, new: str) -> str:
    """``code`` with the one change the page tells the reader to make."""
    assert code.count(old) == 1, f"{old!r} is not once in the snippet"
    return code.replace(old, new)


@dataclass
class Sent:
    spans: list[MappedSpan]
    logs: list[MappedLog]
    printed: str


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with Standin() as s:
        yield s


def run(code: str, standin: Standin, tmp_path: Path, **env: str) -> Sent:
    """Run ``code`` to its end against a fresh OTLP sink; what it exported, mapped."""
    sink = _Sink()
    server = _server(sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        done = subprocess.run(
            [sys.executable, "-c", edited(code, ADDRESS, address)],
            cwd=tmp_path,
            env={**app_env(), "OPENAI_BASE_URL": standin.base_url, "OPENAI_API_KEY": "x", **env},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr[-3000:]
    spans: list[MappedSpan] = []
    logs: list[MappedLog] = []
    for body in sink.bodies.get("/v1/traces", []):
        mapped, rejected = map_spans(ExportTraceServiceRequest.FromString(body))
        assert rejected == []
        spans += mapped
    for body in sink.bodies.get("/v1/logs", []):
        found, refused = map_logs(ExportLogsServiceRequest.FromString(body))
        assert refused == []
        logs += found
    return Sent(spans, logs, done.stdout)


def events(sent: Sent) -> list[dict[str, Any]]:
    """The events the worker would publish: every trace held to completion, then each LLM
    span built with its content logs and its trace's documents."""
    now = [0.0]
    assembler = TraceAssembler(5.0, clock=lambda: now[0])
    assembler.add(("llm.otlp", 0, 0), sent.spans, sent.logs)
    now[0] = 1000.0
    built = [
        build_event(call.call, call.logs, call.documents)
        for trace in assembler.due()
        for call in trace.calls
    ]
    return sorted(built, key=lambda e: e["ts"])


def the_call(event: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """``event`` is the snippet's chat call, exactly as the stand-in answered it."""
    answer = answer_for(messages)
    usage = usage_for(messages, answer)
    assert event["app"] == "support-bot"
    assert event["environment"] == "production"
    assert event["model"] == "gpt-4o-mini-2024-07-18"
    assert event["provider"] == "openai"
    assert event["system"] == messages[0]["content"]
    assert event["input"] == QUESTION
    assert event["output"] == answer
    assert event["usage"]["input_tokens"] == usage["prompt_tokens"]
    assert event["usage"]["output_tokens"] == usage["completion_tokens"]
    assert event["status"] == "ok"


# library snippet, the change the page describes, environment the page describes, and
# whether the content then comes as log records
MODES = {
    "genai span_only": ("genai", None, {}, False),
    "genai event_only": (
        "genai", None, {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only"}, True,
    ),
    "openinference": ("openinference", None, {}, False),
    "openllmetry": ("openllmetry", None, {}, False),
    "openllmetry use_attributes=False": (
        "openllmetry", ("OpenAIInstrumentor()", "OpenAIInstrumentor(use_attributes=False)"), {},
        True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("mode", list(MODES))
def test_each_library_snippet_sends_its_call_as_the_page_says(
    mode: str, standin: Standin, tmp_path: Path
) -> None:
    name, change, env, as_logs = MODES[mode]
    code = snippet(name) if change is None else edited(snippet(name), *change)
    sent = run(code, standin, tmp_path, **env)
    assert sent.printed.strip() == answer_for(MESSAGES)
    (call_span,) = [s for s in sent.spans if s.call is not None]
    # the span itself holds the text, or the page's log-record mode sent it apart
    assert ("input" not in call_span.call.event) is as_logs
    assert bool(sent.logs) is as_logs
    (event,) = events(sent)
    the_call(event, MESSAGES)
    assert event["context_source"] == "none"
    assert "context" not in event


# library snippet and retriever snippet the page pairs
RAG = {
    "genai + GenAI retrieval": ("genai", "rag-genai"),
    "openinference + OpenInference retriever": ("openinference", "rag-openinference"),
    "openllmetry + OpenInference retriever": ("openllmetry", "rag-openinference"),
}


@pytest.mark.parametrize("pair", list(RAG))
def test_a_retriever_snippet_gives_the_call_after_it_the_documents_as_context(
    pair: str, standin: Standin, tmp_path: Path
) -> None:
    library, retriever = RAG[pair]
    code = "\n".join([snippet(library), snippet(retriever), snippet("rag-answer")])
    sent = run(code, standin, tmp_path)
    plain, rag = events(sent)  # the library snippet's own call, then answer()'s
    assert plain["context_source"] == "none"
    assert rag["context_source"] == "trace"
    assert rag["context"] == DOCUMENTS
    system = "Answer from the context.\nContext:\n" + "\n".join(f"- {d}" for d in DOCUMENTS)
    the_call(rag, [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}])
    assert rag["output"] == DOCUMENTS[0]  # the stand-in answers from the context it was given


def test_under_event_only_the_genai_retrieval_span_brings_no_context_as_the_page_warns(
    standin: Standin, tmp_path: Path
) -> None:
    code = "\n".join([snippet("genai"), snippet("rag-genai"), snippet("rag-answer")])
    sent = run(
        code, standin, tmp_path, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="event_only"
    )
    retrievals = [s for s in sent.spans if s.columns["operation"] == "retrieval"]
    assert len(retrievals) == 1 and retrievals[0].documents is None
    assert [e["context_source"] for e in events(sent)] == ["none", "none"]
