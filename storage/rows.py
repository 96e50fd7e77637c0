"""Typed rows for the tables the worker writes, filled by keyword.

Each row's fields are its table's columns, in order, and the column lists are
derived from them, so swapping two string columns in one place cannot corrupt data:
a row is built by name, and the column list cannot disagree with it. A row iterates
over its values in column order, which is what the driver inserts.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

__all__ = [
    "ALERT_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "DRIFT_COLUMNS",
    "EMBEDDING_COLUMNS",
    "EVENT_COLUMNS",
    "FEEDBACK_COLUMNS",
    "SPAN_COLUMNS",
    "VECTOR_COLUMNS",
    "AlertRow",
    "DeadLetterRow",
    "DriftRow",
    "EmbeddingRow",
    "EventRow",
    "FeedbackRow",
    "ReferenceVectorRow",
    "SpanRow",
]


class _Row:
    """Values in column order, for the driver and for ``dict(zip(COLUMNS, row))``."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return iter(_values(type(self))(self))


@functools.cache
def _values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A row's values in column order, read by one attrgetter built once per row type
    (a writer iterates over every row of every batch: ``fields()`` each time cost more
    than the insert's own Python work)."""
    names = [f.name for f in fields(cls)]
    get = operator.attrgetter(*names)
    return get if len(names) > 1 else lambda row: (get(row),)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow(_Row):
    """One ``llm_events`` row (storage/migrations): the event, its scores, its offset."""

    event_id: str
    ts: datetime
    app: str
    environment: str
    provider: str
    model: str
    prompt_id: str
    prompt_version: str
    variant: str
    status: str
    error_type: str
    system: str
    input: str
    output: str
    context: list[str]
    context_source: str = ""  # '' as sent; 'trace' | 'span' | 'none' for OTLP LLM spans
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    latency_ms: float | None
    ttft_ms: float | None
    generation_ms: float | None
    output_tokens_per_s: float | None
    cost_usd: float | None
    cost_source: str
    price_version: str
    toxicity: float | None  # None: not model-scored (shed under load; see sample_rate)
    toxicity_scores: dict[str, float]
    toxicity_model: str
    hallucination: float | None
    unsupported: list[str]
    hallucination_method: str
    pii_input: list[str]
    pii_output: list[str]
    injection: float | None  # None: not model-scored; injection_signals are always set
    injection_signals: list[str]
    # cosine of question and answer, and of question and each chunk (max, mean); None
    # where not model-scored, or (context_*) where there is no context
    answer_relevance: float | None = None
    context_relevance_max: float | None = None
    context_relevance_mean: float | None = None
    sample_rate: float = 1.0  # the probability this event was model-scored with
    redaction: str
    embedding_model: str
    user_id: str
    session_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    tags: dict[str, str]
    extra: str
    kafka_partition: int
    kafka_offset: int
    envelope_line: int = 0  # 1-based line of the envelope it came in; 0: not an envelope


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingRow(_Row):
    """One ``llm_embeddings`` row: an input or output vector of an event."""

    event_id: str
    ts: datetime
    app: str
    prompt_version: str
    kind: str  # "input" | "output"
    model: str
    vector: list[float]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterRow(_Row):
    """One ``dead_letters`` row: a rejected payload (redacted), where it came from, why."""

    topic: str
    partition: int
    offset: int
    envelope_line: int = 0  # the bad line of an envelope (1-based); 0: the whole message
    field: str
    reason: str
    payload: bytes
    payload_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackRow(_Row):
    """One ``llm_feedback`` row: a user's verdict on an event, and its offset."""

    event_id: str
    ts: datetime
    score: float
    comment: str
    source: str
    kafka_partition: int
    kafka_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRow(_Row):
    """One ``alerts`` row: an alert's state; the row with the latest ``updated_at`` wins."""

    alert_id: str
    rule: str
    labels: dict[str, str]
    app: str
    prompt_version: str
    state: str
    active_at: float | None
    fired_at: float | None
    resolved_at: float | None
    value: float | None
    count: int
    notified_at: float | None
    notified_status: str
    notified_episode: float | None
    refreshed_at: float | None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftRow(_Row):
    """One ``llm_drift`` row: one kind of one window, tested against its reference."""

    key: str
    app: str
    prompt_version: str
    kind: str  # "input" | "output"
    window_start: datetime
    window_end: datetime
    n_ref: int
    n_cur: int
    statistic: float
    p_value: float
    threshold: float
    drifted: int
    distance: float
    explanation: str  # JSON, or "" when not drifted
    method: str
    version: int
    alpha: float
    family_size: int
    permutations: int
    bandwidth: float
    reference_id: str
    embedding_model: str
    kafka_partition: int
    first_offset: int
    last_offset: int
    tested_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceVectorRow(_Row):
    """One ``llm_drift_reference_vectors`` row: an event's vector and text in a reference."""

    reference_id: str
    kind: str
    event_id: str
    ts: datetime
    text: str
    vector: list[float]
    kafka_partition: int
    kafka_offset: int
    added_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanRow(_Row):
    """One ``llm_spans`` row (migration 0010): an OpenTelemetry span, redacted."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_span_id: str  # '' for a root span
    ts: datetime  # the span's start, UTC
    duration_ms: float
    name: str
    kind: str  # internal | server | client | producer | consumer | unspecified
    app: str
    environment: str
    scope: str  # the instrumentation scope's name
    operation: str  # chat, retrieval, embeddings, execute_tool, ... ('' if unknown)
    model: str
    status: str  # unset | ok | error
    status_message: str
    error_type: str
    input_tokens: int | None
    output_tokens: int | None
    event_id: str  # the llm_events row the span became; '' if none
    attributes: str  # the remaining attributes as a JSON object


EVENT_COLUMNS = tuple(f.name for f in fields(EventRow))
SPAN_COLUMNS = tuple(f.name for f in fields(SpanRow))
ALERT_COLUMNS = tuple(f.name for f in fields(AlertRow))
FEEDBACK_COLUMNS = tuple(f.name for f in fields(FeedbackRow))
EMBEDDING_COLUMNS = tuple(f.name for f in fields(EmbeddingRow))
DEAD_LETTER_COLUMNS = tuple(f.name for f in fields(DeadLetterRow))
DRIFT_COLUMNS = tuple(f.name for f in fields(DriftRow))
VECTOR_COLUMNS = tuple(f.name for f in fields(ReferenceVectorRow))
