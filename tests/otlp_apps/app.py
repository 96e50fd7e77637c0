"""A child-process LLM app instrumented by a real OpenTelemetry library, exporting
through the real OTLP/HTTP exporter (protobuf), as an app in production would.

    python -m tests.otlp_apps.app --library MODE --otlp http://127.0.0.1:PORT \
        --openai http://127.0.0.1:PORT/v1 --service NAME [--rag] [--calls N] [--stream]

MODE is one of ``LIBRARIES``:

- ``genai-spans``: opentelemetry-instrumentation-openai-v2, content as span attributes
  (``gen_ai.input.messages`` ...);
- ``genai-logs``: the same library, content as ``gen_ai.client.inference.operation.details``
  log records (on /v1/logs);
- ``openinference``: openinference-instrumentation-openai (``llm.input_messages.N`` ...);
- ``openllmetry``: Traceloop's opentelemetry-instrumentation-openai, content as span
  attributes (its default);
- ``openllmetry-events``: the same library with ``use_attributes=False``: content as the
  older per-message log records (``gen_ai.user.message``, ``gen_ai.choice``).

The content-capture settings of each library are environment variables read when it is
instrumented; the app sets them for its mode (``CONTENT_ENV``) unless already set, so
what it does is what the docs tell a user to do.

``--rag``: each call runs under a parent span, after a retriever span carrying the
documents' text (``DOCUMENTS``): the GenAI retrieval convention through
opentelemetry-util-genai in ``genai-spans``, OpenInference's retriever attributes in
the others. The chat call then puts the documents in its system message.

Before it exits, the app flushes and shuts its providers down (nothing is lost in the
batch processors), then prints one JSON line: the library, the trace ids of its calls
(hex, in call order) and how many calls failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

__all__ = ["CONTENT_ENV", "DOCUMENTS", "LIBRARIES", "QUESTION", "SYSTEM", "question"]

LIBRARIES = ("genai-spans", "genai-logs", "openinference", "openllmetry", "openllmetry-events")
CONTENT_ENV: dict[str, dict[str, str]] = {
    "genai-spans": {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
    },
    "genai-logs": {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only",
    },
    "openinference": {},  # captures content unless OPENINFERENCE_HIDE_INPUTS/OUTPUTS is set
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "true"},
    "openllmetry-events": {"TRACELOOP_TRACE_CONTENT": "true"},
}
# The batch processors' export interval: longer than any run, so the app exports once,
# when it flushes at its end.
EXPORT_AT_END_MS = 600_000
SYSTEM = "You are a terse assistant."
QUESTION = "How long does a refund take?"
DOCUMENTS = (
    "Refunds are paid back within 5 business days.",
    "Orders ship within 2 days of payment.",
    "Support answers on weekdays from 9 to 5.",
)


def question(i: int) -> str:
    """The user message of call ``i`` (0-based) without ``--rag``."""
    return f"What is the capital of country number {i + 1}?"


def rag_system() -> str:
    """The system message of a RAG call: the retrieved documents under ``Context:``."""
    return "\n".join(["Answer from the context.", "Context:", *(f"- {d}" for d in DOCUMENTS)])


def _roots() -> Any:
    """A span processor that collects the trace id of every root span as it ends, in
    order: a call's trace."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Roots(SpanProcessor):
        def __init__(self) -> None:
            self.trace_ids: list[str] = []

        def on_end(self, span: Any) -> None:
            if span.parent is None:
                trace_id = format(span.context.trace_id, "032x")
                if trace_id not in self.trace_ids:
                    self.trace_ids.append(trace_id)

    return Roots()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.otlp_apps.app")
    parser.add_argument("--library", choices=LIBRARIES, required=True)
    parser.add_argument(
        "--otlp", required=True, help="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318"
    )
    parser.add_argument(
        "--openai", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:N/v1"
    )
    parser.add_argument("--service", required=True, help="the resource's service.name")
    parser.add_argument("--environment", default="test", help="deployment.environment.name")
    parser.add_argument("--rag", action="store_true")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--prompt-version", default="", help="openinference: template version")
    parser.add_argument("--token", default="", help="Authorization: Bearer token for the receiver")
    args = parser.parse_args(argv)

    for name, value in CONTENT_ENV[args.library].items():
        os.environ.setdefault(name, value)
    # The instrumentations and the SDK read their settings when imported or instrumented.
    from openai import APIError, OpenAI
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    resource = Resource.create(
        {"service.name": args.service, "deployment.environment.name": args.environment}
    )
    roots = _roots()
    # Export once, at the flush below (one request per signal), not every 5 s (the SDK's
    # default): how the spans are cut into requests must not depend on this machine's
    # speed, or a slow import would split a trace, or a call from its content logs.
    once = {"schedule_delay_millis": EXPORT_AT_END_MS}
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(roots)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{args.otlp}/v1/traces", headers=headers), **once
        )
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{args.otlp}/v1/logs", headers=headers), **once
        )
    )
    instrumentor = _instrumentor(args.library)
    instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)

    client = OpenAI(base_url=args.openai, api_key="standin", max_retries=0)
    tracer = tracer_provider.get_tracer("tests.otlp_apps.app")
    failed = 0
    try:
        for i in range(args.calls):
            with _prompt_template(args.library, args.prompt_version):
                try:
                    if args.rag:
                        with tracer.start_as_current_span("rag-request"):
                            _retrieve(args.library, tracer, tracer_provider, logger_provider)
                            _chat(client, args.model, rag_system(), QUESTION, args.stream)
                    else:
                        _chat(client, args.model, SYSTEM, question(i), args.stream)
                except APIError:
                    failed += 1
    finally:
        instrumentor.uninstrument()
        tracer_provider.force_flush()
        logger_provider.force_flush()
        tracer_provider.shutdown()
        logger_provider.shutdown()
    print(json.dumps({"library": args.library, "traces": roots.trace_ids, "failed": failed}))
    return 0


def _instrumentor(library: str) -> Any:
    if library.startswith("genai-"):
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        return OpenAIInstrumentor()
    if library == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIInstrumentor

        return OIInstrumentor()
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor as TraceloopInstrumentor

    return TraceloopInstrumentor(use_attributes=library == "openllmetry")


def _prompt_template(library: str, version: str) -> Any:
    """OpenInference puts a prompt template's version on the LLM spans made inside it."""
    if library != "openinference" or not version:
        return nullcontext()
    from openinference.instrumentation import using_prompt_template

    return using_prompt_template(template="{question}", version=version)


def _chat(client: Any, model: str, system: str, user: str, stream: bool) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if not stream:
        response = client.chat.completions.create(model=model, messages=messages)
        return str(response.choices[0].message.content)
    chunks = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    return "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].delta
    )


def _retrieve(library: str, tracer: Any, tracer_provider: Any, logger_provider: Any) -> None:
    """A retriever span with the documents' text, in the convention the library's users
    would write it in."""
    if library == "genai-spans":
        with _genai_retrieval(tracer_provider, logger_provider) as invocation:
            invocation.query_text = QUESTION
            invocation.documents = [
                {"id": f"doc-{i}", "score": round(1.0 - i / 10, 1), "content": text}
                for i, text in enumerate(DOCUMENTS)
            ]
        return
    from openinference.instrumentation import (
        get_input_attributes,
        get_retriever_attributes,
        get_span_kind_attributes,
    )

    attributes = {
        **get_span_kind_attributes("retriever"),
        **get_input_attributes(QUESTION),
        **get_retriever_attributes(
            documents=[
                {"id": f"doc-{i}", "score": round(1.0 - i / 10, 1), "content": text}
                for i, text in enumerate(DOCUMENTS)
            ]
        ),
    }
    with tracer.start_as_current_span("retrieve", attributes=attributes):
        pass


@contextmanager
def _genai_retrieval(tracer_provider: Any, logger_provider: Any) -> Iterator[Any]:
    from opentelemetry.util.genai.handler import TelemetryHandler

    handler = TelemetryHandler(tracer_provider=tracer_provider, logger_provider=logger_provider)
    with handler.retrieval(data_source_id="kb", provider="standin") as invocation:
        yield invocation


if __name__ == "__main__":
    sys.exit(main())
