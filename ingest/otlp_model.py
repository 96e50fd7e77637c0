"""What the OTLP mapping hands the worker: spans and content log records, decoded and
classified, before a trace is assembled.

The receiver (``ingest/otlp_receiver.py``) and a Collector's Kafka exporter write OTLP
export requests to Kafka; ``ingest/otlp_mapping.py`` turns each request into these
records; ``processors/otlp.py`` waits for a trace's retriever spans and content logs,
then builds one ``llm_events`` payload per LLM span and one ``llm_spans`` row per span.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OTLP_HEADER",
    "OTLP_REJECTED",
    "LlmCall",
    "MappedLog",
    "MappedSpan",
    "Rejected",
    "otlp_event_id",
]

# Kafka header on llm.otlp messages: b"traces" (ExportTraceServiceRequest) or b"logs"
# (ExportLogsServiceRequest), protobuf-encoded, as a Collector's otlp_proto encoding.
OTLP_HEADER = "llmpulse.otlp"
# The header's value on a message that lists what the receiver refused (JSON), so the
# worker can store it in dead_letters: the receiver writes only to Kafka.
OTLP_REJECTED = b"rejected"


def otlp_event_id(trace_id: str, span_id: str) -> str:
    """The event_id of the llm_events row an LLM span becomes: the same span sent twice,
    or replayed, is the same event (and so stored once)."""
    digest = hashlib.blake2b(f"{trace_id}:{span_id}".encode(), digest_size=16).hexdigest()
    return f"otlp-{digest}"


@dataclass(frozen=True, slots=True)
class LlmCall:
    """What an LLM span says of its call, as Event v1 fields (``ingest/schema.py``),
    JSON-ready: event_id, ts, app, model, input, output, system, usage, latency_ms,
    ttft_ms, status, error_type, environment, provider, prompt_version, trace_id, span_id,
    parent_span_id, tags. Content that a library sends as log records instead of span
    attributes is merged in by ``otlp_mapping.build_event``."""

    event: dict[str, Any]
    context: tuple[str, ...] | None = None  # documents the LLM span itself carried


@dataclass(frozen=True, slots=True)
class MappedSpan:
    """One span: its ``llm_spans`` columns (``storage.rows.SpanRow``'s fields by name,
    text not yet redacted; ingest may not import storage, so the worker builds the row),
    and what the trace needs of it: the call if it is an LLM span, its documents if it
    is a retriever span."""

    columns: dict[str, Any]
    start_ns: int
    end_ns: int
    call: LlmCall | None = None
    documents: tuple[str, ...] | None = None  # a retriever span's documents, by rank

    @property
    def trace_id(self) -> str:
        return str(self.columns["trace_id"])

    @property
    def span_id(self) -> str:
        return str(self.columns["span_id"])

    @property
    def parent_span_id(self) -> str:
        return str(self.columns["parent_span_id"])


@dataclass(frozen=True, slots=True)
class MappedLog:
    """A GenAI content log record (or span event in log form), joined to its span by
    ``span_id``; ``content`` is what ``otlp_mapping.build_event`` reads."""

    trace_id: str
    span_id: str
    time_ns: int
    name: str  # the event name, e.g. gen_ai.client.inference.operation.details
    content: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A span or log record refused, and why: the reason goes to the OTLP response's
    partial_success (receiver) or to dead_letters (worker)."""

    trace_id: str  # as received (hex), '' when missing
    span_id: str
    reason: str
