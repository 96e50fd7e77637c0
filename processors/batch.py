"""From raw Kafka records to storage rows: validate, score, split off dead letters.

Synchronous and free of Kafka and ClickHouse, so it is unit-tested on plain bytes
and reused by ``llmpulse score`` and the benchmarks. Each model runs once over the
whole batch; text is redacted after scoring and before it becomes a row.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.keys import version_key
from core.settings import Settings
from detectors.base import TextBatch
from detectors.cost import Cost, CostDetector, PriceTable
from detectors.latency import Latency, LatencyDetector
from detectors.redaction import redact_json
from detectors.suite import DetectorSuite, SuiteConfig, TextScores
from ingest.envelope import envelope_version, split_envelope
from ingest.schema import LIMITS, Event, Rejection, parse_event
from processors.shedding import Sampling
from storage.rows import DeadLetterRow, EmbeddingRow, EventRow

__all__ = [
    "DEAD_LETTER_PAYLOAD_BYTES",
    "EventScores",
    "Record",
    "ScoredBatch",
    "Scorer",
    "build_scorer",
    "event_records",
    "micro_batches",
    "records_of",
    "scored_key",
    "scored_summary",
    "suite_config",
]

# Oversize payloads are kept in part: enough to debug, bounded in storage.
DEAD_LETTER_PAYLOAD_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class Record:
    """One event to validate: a Kafka message, or one line of an envelope (``line``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes  # the event's bytes as sent (one line, for an envelope)
    timestamp: float = 0.0  # Kafka timestamp, epoch seconds (0: unknown)
    line: int = 0  # 1-based line of the envelope this event came in; 0: not an envelope
    envelope: bytes | None = None  # the llmpulse.envelope header, for envelope records
    refused: Rejection | None = None  # an envelope refused as a whole: its record is one


@dataclass(frozen=True)
class EventScores:
    cost: Cost
    latency: Latency
    text: TextScores


@dataclass
class ScoredBatch:
    rows: list[EventRow] = field(default_factory=list)
    embeddings: list[EmbeddingRow] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    rejected: list[tuple[Record, Rejection]] = field(default_factory=list)
    offsets: list[tuple[str, int, int]] = field(default_factory=list)
    # (key, value) for llm.scored, one per model-scored event: key app|prompt_version,
    # so each key's windows live on one partition and so on one worker.
    summaries: list[tuple[bytes, bytes]] = field(default_factory=list)
    sample_rate: float = 1.0  # the probability each event had of being model-scored
    modelled: int = 0  # events the models scored
    model_seconds: float = 0.0  # time the text detectors took


class Scorer:
    """Turns a micro-batch of records into ``llm_events``, ``llm_embeddings`` and
    ``dead_letters`` rows."""

    def __init__(self, prices: PriceTable, suite: DetectorSuite) -> None:
        self.cost = CostDetector(prices)
        self.latency = LatencyDetector()
        self.suite = suite

    @property
    def price_version(self) -> str:
        return self.cost.table.version

    def score_events(
        self, events: Sequence[Event], chosen: Sequence[bool] | None = None
    ) -> list[EventScores]:
        """Every detector over valid events; what ``llmpulse score`` prints. With
        ``chosen`` (load shedding), the models score only the chosen events."""
        if not events:
            return []
        if not self.suite.config.models:
            chosen = [False] * len(events)  # nothing loaded: the cheap detectors only
        usage = [e.usage for e in events]
        out_tokens = [u.output_tokens if u else None for u in usage]
        costs = self.cost.score(
            [e.model for e in events], [e.ts.date() for e in events],
            [u.input_tokens if u else None for u in usage], out_tokens,
            [u.cached_tokens if u else None for u in usage], [e.cost_usd for e in events],
        )  # fmt: skip
        latencies = self.latency.score(
            [e.latency_ms for e in events], [e.ttft_ms for e in events], out_tokens
        )
        texts = TextBatch(
            [e.input for e in events], [e.output for e in events], [e.context for e in events]
        )
        text = self.suite.score(texts, chosen)
        return [EventScores(*p) for p in zip(costs, latencies, text, strict=True)]

    def score(self, records: Sequence[Record], sampling: Sampling | None = None) -> ScoredBatch:
        """The batch's rows; ``sampling`` (one flag per record) says which events the
        models score, the cheap detectors scoring all of them."""
        rate = 1.0 if sampling is None else sampling.rate
        if not self.suite.config.models:
            rate = 0.0  # the probability a row was model-scored: none is
        # The Kafka messages the batch holds, once each (an envelope's lines share one):
        # their set makes the batch's dedup tokens, and envelopes are never split.
        offsets = dict.fromkeys((r.topic, r.partition, r.offset) for r in records)
        batch = ScoredBatch(offsets=list(offsets), sample_rate=rate)
        flags = sampling.chosen if sampling else (True,) * len(records)
        events: list[tuple[Record, Event]] = []
        chosen: list[bool] = []  # per valid event, whether the models score it
        redact = self.suite.redactor.redact
        for record, pick in zip(records, flags, strict=True):
            parsed = record.refused or parse_event(record.value)
            if isinstance(parsed, Rejection):
                batch.rejected.append((record, parsed))
                batch.dead_letters.append(dead_letter_row(record, parsed, redact))
            else:
                events.append((record, parsed))
                chosen.append(pick)
        started = time.perf_counter()
        scores = self.score_events([e for _, e in events], chosen if sampling else None)
        batch.model_seconds = time.perf_counter() - started
        batch.modelled = sum(s.text.modelled for s in scores)
        version = self.price_version
        mode = self.suite.config.redaction
        model = self.suite.embedding_model
        for (record, e), sc in zip(events, scores, strict=True):
            cost, lat, text = sc.cost, sc.latency, sc.text
            usage = e.usage
            tox, grounded, rel = text.toxicity, text.hallucination, text.relevance
            batch.rows.append(EventRow(
                event_id=e.event_id, ts=e.ts, app=e.app, environment=e.environment or "",
                provider=e.provider or "", model=e.model, prompt_id=e.prompt_id or "",
                prompt_version=e.prompt_version or "", variant=e.variant or "",
                status=e.status, error_type=e.error_type or "", system=redact(e.system or ""),
                input=redact(e.input), output=redact(e.output),
                context=[redact(c) for c in e.context or []],
                context_source=e.context_source or "",
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
                cached_tokens=usage.cached_tokens if usage else None,
                cache_write_tokens=usage.cache_write_tokens if usage else None,
                reasoning_tokens=usage.reasoning_tokens if usage else None,
                latency_ms=e.latency_ms, ttft_ms=e.ttft_ms, generation_ms=lat.generation_ms,
                output_tokens_per_s=lat.output_tokens_per_s, cost_usd=cost.usd,
                cost_source=cost.source,
                price_version=version if cost.source == "price_table" else "",
                toxicity=tox.scores.get("toxicity", 0.0) if tox else None,
                toxicity_scores=tox.scores if tox else {}, toxicity_model=tox.model if tox else "",
                hallucination=grounded.score if grounded else None,
                unsupported=self.suite.redactor.redact_quotes(e.output, grounded.unsupported)
                if grounded else [],
                hallucination_method=grounded.method if grounded else "", pii_input=text.pii.input,
                pii_output=text.pii.output, injection=text.injection.score,
                injection_signals=text.injection.signals,
                answer_relevance=rel.answer if rel else None,
                context_relevance_max=rel.context_max if rel else None,
                context_relevance_mean=rel.context_mean if rel else None,
                redaction=mode, embedding_model=model,
                user_id=e.user_id or "", session_id=e.session_id or "",
                trace_id=e.trace_id or "", span_id=e.span_id or "",
                parent_span_id=e.parent_span_id or "",
                tags={k: redact(v) for k, v in (e.tags or {}).items()},
                extra=json.dumps(redact_json(e.extra, redact), ensure_ascii=False)
                if e.model_extra else "",
                kafka_partition=record.partition, kafka_offset=record.offset,
                envelope_line=record.line, sample_rate=rate,
            ))  # fmt: skip
            if text.input_vector is None or text.output_vector is None:
                continue  # not model-scored: no vectors, so nothing for the drift windows
            batch.summaries.append(scored_summary(e, sc))
            for kind, vector in (("input", text.input_vector), ("output", text.output_vector)):
                batch.embeddings.append(EmbeddingRow(
                    event_id=e.event_id, ts=e.ts, app=e.app, prompt_version=e.prompt_version or "",
                    kind=kind, model=model, vector=vector.tolist(),
                ))  # fmt: skip
        return batch


def records_of(events: Sequence[Any]) -> list[Record]:
    """Faust events of one ``take`` as plain records, one per message (no envelopes:
    ``llm.feedback``), so handlers stay Faust-free."""
    m = [e.message for e in events]
    return [Record(x.topic, x.partition, x.offset, x.key, x.value, x.timestamp or 0.0) for x in m]


def event_records(message: Any) -> list[Record]:
    """The events of one ``llm.events`` message: itself, or one record per line of an
    envelope (:mod:`ingest.envelope`), or one refused record for a bad envelope."""
    x = message
    ts = x.timestamp or 0.0
    version = envelope_version(x.headers)
    if version is None:
        return [Record(x.topic, x.partition, x.offset, x.key, x.value, ts)]
    lines = split_envelope(x.value, version)
    if isinstance(lines, Rejection):
        return [Record(x.topic, x.partition, x.offset, x.key, x.value, ts, 0, version, lines)]
    topic, partition, offset, key = x.topic, x.partition, x.offset, x.key
    return [
        Record(topic, partition, offset, key, value, ts, i, version)
        for i, value in enumerate(lines, start=1)
    ]


def micro_batches(
    events: Sequence[Any], max_records: int
) -> Iterator[tuple[list[Any], list[Record]]]:
    """The Faust events of one ``take`` in batches of at most ``max_records`` records,
    each with the events (messages) it holds in full. An envelope is never split: a
    batch's dedup tokens come from the set of messages in it, so two batches must never
    share a message. A batch holding a larger envelope than ``max_records`` is that one
    envelope. Messages without envelopes make one batch per take, as they always did."""
    group: list[Any] = []
    records: list[Record] = []
    for event in events:
        expanded = event_records(event.message)
        if records and len(records) + len(expanded) > max_records:
            yield group, records
            group, records = [], []
        group.append(event)
        records.extend(expanded)
    if group:
        yield group, records


def scored_key(app: str, prompt_version: str) -> bytes:
    return version_key(app, prompt_version).encode()


def scored_summary(e: Event, s: EventScores) -> tuple[bytes, bytes]:
    """One llm.scored message: the event's identity and scores, no text or vectors.

    Windows read vectors from ``llm_embeddings`` by event_id; keeping them out of
    the topic keeps it small and the stored rows the one source of truth.
    """
    text, rel = s.text, s.text.relevance
    assert text.toxicity is not None and text.hallucination is not None
    value = {
        "event_id": e.event_id,
        "ts": int(e.ts.timestamp() * 1000),
        "app": e.app,
        "prompt_version": e.prompt_version or "",
        "model": e.model,
        "status": e.status,
        "toxicity": round(float(text.toxicity.scores.get("toxicity", 0.0)), 6),
        "hallucination": None
        if text.hallucination.score is None
        else round(float(text.hallucination.score), 6),
        "injection": None if text.injection.score is None else round(text.injection.score, 6),
        "pii": bool(text.pii.input or text.pii.output),
        "cost_usd": s.cost.usd,
        "latency_ms": e.latency_ms,
        # the retrieval the drift monitor tests beside the vectors (None: no context)
        "context_relevance": rel.context_max if rel else None,
        "chunks": rel.chunks if rel else 0,
        "chunk_chars": rel.chunk_chars if rel else None,
    }
    return scored_key(e.app, e.prompt_version or ""), json.dumps(value).encode()


def suite_config(settings: Settings) -> SuiteConfig:
    def path(p: object) -> str | None:
        return str(p) if p else None

    return SuiteConfig(
        device=settings.device,
        precision=settings.precision,
        embedding_model=path(settings.embedding_model),
        toxicity_checkpoint=path(settings.toxicity_checkpoint),
        toxicity_config=path(settings.toxicity_config),
        hallucination_nli=path(settings.hallucination_nli),
        injection_classifier=path(settings.injection_classifier),
        redaction=settings.redaction,
        redaction_salt=settings.redaction_salt,
        models=settings.models,
    )


def build_scorer(settings: Settings, *, models: bool | None = None) -> Scorer:
    """The scorer the worker runs; ``llmpulse score`` builds the same one with
    ``models=True`` (its output is the model scores, whatever LLMPULSE_MODELS says)."""
    config = suite_config(settings)
    if models is not None:
        config = dataclasses.replace(config, models=models)
    return Scorer(PriceTable.load(settings.prices), DetectorSuite(config))


def _redacted_payload(value: bytes, redact: Callable[[str], str]) -> bytes:
    """The payload with PII masked; the very bytes sent when there was none to mask."""
    if len(value) <= LIMITS.payload_bytes:
        try:
            decoded = json.loads(value)
            redacted = redact_json(decoded, redact)
            if redacted == decoded:
                return value
            return json.dumps(redacted, ensure_ascii=False).encode()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            pass
    head = value[: DEAD_LETTER_PAYLOAD_BYTES + 256]
    text = head.decode("utf-8", "surrogateescape")
    redacted_text = redact(text)
    return head if redacted_text == text else redacted_text.encode("utf-8", "surrogateescape")


def dead_letter_row(
    record: Record, rejection: Rejection, redact: Callable[[str], str] | None = None
) -> DeadLetterRow:
    """The stored copy of a rejected payload, redacted like event text.

    JSON is redacted string by string and written again (in the raw text an escape such
    as ``\\n`` hides the value after it from the patterns); anything else is redacted
    as text, bytes that are not UTF-8 kept. The dead-letter topic keeps the original
    bytes, for replay.
    """
    payload = record.value[:DEAD_LETTER_PAYLOAD_BYTES]
    if redact is not None:
        if record.refused is not None and len(record.value) <= LIMITS.payload_bytes:
            # a refused envelope: JSON Lines, each line redacted as JSON
            lines = record.value.split(b"\n")
            payload = b"\n".join(_redacted_payload(line, redact) for line in lines)
        else:
            payload = _redacted_payload(record.value, redact)
    return DeadLetterRow(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        envelope_line=record.line,
        field=rejection.field,
        reason=rejection.reason,
        payload=payload[:DEAD_LETTER_PAYLOAD_BYTES],
        payload_size=len(record.value),
    )
