"""OTLP on the worker: export requests from Kafka become ``llm_spans`` rows, and each LLM
span an Event v1 on ``llm.events``, scored there like any SDK event.

Sources: ``llm.otlp`` (the receiver; header ``llmpulse.otlp`` says traces or logs, key the
trace id) and, when set, a Collector's Kafka exporter topics (``otlp_proto`` encoding, the
signal given by the topic). Every message is decoded and mapped (``ingest.otlp_mapping``)
off the event loop, then held by :class:`~processors.otlp_traces.TraceAssembler` until its
traces are complete.

Commit order, per round of completed traces (the messages stay unacked until 4):

1. each LLM span's event is built from its call, its content logs and the documents of
   the trace's earlier retriever spans; the events are produced to ``llm.events`` (one
   alone keyed by its event_id, several as an envelope) and the broker's acks awaited;
2. dead letters for events that cannot be built are produced and acked;
3. the spans' rows (redacted) and those dead letters are inserted, with dedup tokens
   derived from the source messages and the spans they hold, retried until stored;
4. each message whose every trace is now stored is acked; Faust commits it.

A message that does not decode, and each span or log record the mapping rejects, is a
dead letter, produced and stored before the message is held (a message that brought
nothing else is acked then). A crash anywhere replays the unacked messages: the same
events (event_id from trace and span id) and rows (``(trace_id, span_id)``) collapse in
storage, so replays are idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from core.retry import Backoff
from core.settings import Settings
from detectors.redaction import redact_json
from ingest.envelope import ENVELOPE_HEADER, ENVELOPE_VERSION
from ingest.otlp_mapping import EVENT_MAX_BYTES
from ingest.otlp_model import OTLP_HEADER, OTLP_REJECTED, LlmCall, MappedLog, MappedSpan, Rejected
from ingest.schema import Rejection
from processors.batch import DEAD_LETTER_PAYLOAD_BYTES, Record, dead_letter_row
from processors.handler import DeadLetterSink, send_dead_letters, write_until_stored
from processors.otlp_traces import Completed, LlmSpan, Source, TraceAssembler
from storage.engine import Engine
from storage.rows import DeadLetterRow, SpanRow
from storage.writer import Writer

__all__ = [
    "Incoming",
    "OtlpHandler",
    "OtlpMapping",
    "decode_message",
    "incoming_of",
    "install_otlp",
    "otlp_topics",
    "span_row",
]

log = logging.getLogger(__name__)

Ack = Callable[[], Awaitable[Any]]
# Sends one message to llm.events (key, value, headers); returns its delivery awaitable.
EventSink = Callable[[bytes | None, bytes, dict[str, bytes]], Awaitable[Awaitable[object]]]
EVENTS_PER_ENVELOPE = 100
ENVELOPE_BYTES = 512 * 1024
# envelope_line of an event-level dead letter: this bit and 28 bits of the span id, so it
# never meets the 1-based rank of a span the mapping rejected in the same message.
_SPAN_LINE = 0x8000_0000
EARLY_LOG_S = 60.0  # the hold-full warning comes once a minute at most


@dataclass(frozen=True)
class OtlpMapping:
    """The mapping from OTLP to llmpulse records (``ingest.otlp_mapping``); tests pass fakes."""

    map_spans: Callable[[ExportTraceServiceRequest], tuple[list[MappedSpan], list[Rejected]]]
    map_logs: Callable[[ExportLogsServiceRequest], tuple[list[MappedLog], list[Rejected]]]
    build_event: Callable[[LlmCall, Sequence[MappedLog], Sequence[str] | None], dict[str, Any]]

    @classmethod
    def default(cls) -> OtlpMapping:
        from ingest import otlp_mapping

        return cls(otlp_mapping.map_spans, otlp_mapping.map_logs, otlp_mapping.build_event)


@dataclass
class Decoded:
    """One message, decoded and mapped: what to hold, and what is a dead letter."""

    record: Record
    spans: list[MappedSpan] = field(default_factory=list)
    logs: list[MappedLog] = field(default_factory=list)
    dead: list[Rejection] = field(default_factory=list)  # in the message's order

    @property
    def source(self) -> Source:
        return (self.record.topic, self.record.partition, self.record.offset)


@dataclass(frozen=True)
class Incoming:
    """A Kafka message as the handler needs it, Faust-free; ``ack`` acks it."""

    record: Record
    headers: Sequence[tuple[str, bytes]]
    ack: Ack


def incoming_of(message: Any, ack: Ack) -> Incoming:
    """A consumed message as the handler takes it; a null value (a tombstone) is empty
    bytes, which the handler refuses or skips like any other bad message."""
    record = Record(
        message.topic, message.partition, message.offset, message.key,
        message.value or b"", message.timestamp or 0.0,
    )  # fmt: skip
    return Incoming(record, message.headers or (), ack)


@dataclass
class OtlpStats:
    messages: int = 0
    spans: int = 0
    events: int = 0
    dead: int = 0
    storage_retries: int = 0


def otlp_topics(settings: Settings) -> dict[str, str | None]:
    """Topic -> signal: None where a header says it (``llm.otlp``), else the signal."""
    topics: dict[str, str | None] = {settings.topics.otlp: None}
    if settings.otlp_collector_traces_topic:
        topics.setdefault(settings.otlp_collector_traces_topic, "traces")
    if settings.otlp_collector_logs_topic:
        topics.setdefault(settings.otlp_collector_logs_topic, "logs")
    return topics


def _header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value) if value is not None else b""
    return None


def decode_message(
    record: Record,
    headers: Iterable[tuple[str, bytes]] | None,
    signal: str | None,
    mapping: OtlpMapping,
) -> Decoded:
    """Decode and map one message; never raises on bad input (it becomes dead letters)."""
    decoded = Decoded(record)
    if signal is None:
        raw = _header(headers, OTLP_HEADER)
        said = "missing" if raw is None else repr(raw.decode("utf-8", "replace")[:16])
        if raw == OTLP_REJECTED:
            decoded.dead.extend(_receiver_rejections(record.value))
            return decoded
        if raw not in (b"traces", b"logs"):
            decoded.dead.append(Rejection(OTLP_HEADER, f"header {said}: expected traces or logs"))
            return decoded
        signal = raw.decode()
    try:
        if signal == "traces":
            spans, rejected = mapping.map_spans(ExportTraceServiceRequest.FromString(record.value))
            decoded.spans = list(spans)
        else:
            logs, rejected = mapping.map_logs(ExportLogsServiceRequest.FromString(record.value))
            decoded.logs = list(logs)
    except DecodeError as exc:
        decoded.dead.append(Rejection("payload", f"not an OTLP {signal} export request: {exc}"))
        return decoded
    except Exception as exc:  # a mapping bug must not stop the worker: the message waits
        log.exception("OTLP %s message %s could not be mapped", signal, decoded.source)
        decoded.dead.append(Rejection("payload", f"could not be mapped: {type(exc).__name__}"))
        return decoded
    noun = "span" if signal == "traces" else "log_record"
    for item in rejected:
        where = f"{item.span_id or '?'} of trace {item.trace_id or '?'}"
        decoded.dead.append(Rejection(noun, f"{where}: {item.reason}"))
    return decoded


def _receiver_rejections(value: bytes) -> list[Rejection]:
    """The dead letters of what the receiver refused (``ingest.otlp_codec.
    rejection_message``): one per reason it listed, naming the span and trace."""
    try:
        listed = json.loads(value)
        signal, items = listed["signal"], listed["rejected"]
        noun = "span" if signal == "traces" else "log_record"
        found = [
            Rejection(noun, f"{i['span_id'] or '?'} of trace {i['trace_id'] or '?'}: "
                      f"{i['reason']} (refused by the OTLP receiver)")
            for i in items
        ]  # fmt: skip
        unlisted = int(listed.get("count", len(found))) - len(found)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        return [Rejection("payload", "not a list of the receiver's rejections")]
    if unlisted > 0:
        found.append(Rejection(noun, f"and {unlisted} more, not listed"))
    return found


def _redact_attributes(text: str, redact: Callable[[str], str]) -> str:
    """The attributes JSON redacted string by string (an escape such as ``\\n`` would
    hide what follows it from the patterns in the raw text); else as text."""
    if not text:
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return redact(text)
    redacted = redact_json(value, redact)
    return text if redacted == value else json.dumps(redacted, ensure_ascii=False)


def span_row(span: MappedSpan, redact: Callable[[str], str]) -> SpanRow:
    """The ``llm_spans`` row of a mapped span, its text redacted like event text."""
    columns = dict(span.columns)
    for name in ("name", "status_message"):
        columns[name] = redact(str(columns.get(name) or ""))
    columns["attributes"] = _redact_attributes(str(columns.get("attributes") or ""), redact)
    if span.call is not None:
        columns["event_id"] = str(span.call.event.get("event_id") or "")
    columns.setdefault("event_id", "")
    return SpanRow(**columns)


def _span_line(span_id: str) -> int:
    try:
        low = int(span_id[-7:], 16)
    except ValueError:
        low = int.from_bytes(hashlib.blake2b(span_id.encode(), digest_size=4).digest()) >> 4
    return _SPAN_LINE | low


def _token(kind: str, sources: Iterable[Source], keys: Iterable[str]) -> str:
    """A dedup token for an insert: the messages it came from and what it holds, so two
    inserts from one message (a Collector's message holds many traces) never share one."""
    digest = hashlib.sha256(kind.encode())
    for topic, partition, offset in sorted(set(sources)):
        digest.update(f"|{topic}:{partition}:{offset}".encode())
    for key in sorted(keys):
        digest.update(f"|{key}".encode())
    return f"{kind}-{digest.hexdigest()[:32]}"


@dataclass
class _Round:
    """What one round of completed traces stores and publishes."""

    events: list[tuple[bytes, bytes]] = field(default_factory=list)  # (event_id, json)
    rows: list[SpanRow] = field(default_factory=list)
    dead: list[tuple[Record, Rejection]] = field(default_factory=list)
    dead_rows: list[DeadLetterRow] = field(default_factory=list)


class OtlpHandler:
    """Decodes, holds, publishes, stores and acks OTLP messages (module docstring)."""

    def __init__(
        self,
        assembler: TraceAssembler,
        engine: Engine,
        mapping: OtlpMapping,
        dead_letter_sink: DeadLetterSink,
        event_sink: EventSink,
        redact: Callable[[str], str],
        topics: dict[str, str | None],
        backoff: Backoff | None = None,
    ) -> None:
        self.assembler = assembler
        self.engine = engine
        self.writer = Writer(engine.client, engine.database)
        self.mapping = mapping
        self.dead_letter_sink = dead_letter_sink
        self.event_sink = event_sink
        self.redact = redact
        self.topics = topics
        self.backoff = backoff or Backoff()
        self.lock = asyncio.Lock()  # intake, completion and revocation, one at a time
        self.stats = OtlpStats()
        self._acks: dict[Source, Ack] = {}
        self._unfinished: list[Completed] = []  # a round that failed, tried again first
        self._early_unreported = 0
        self._early_reported_at = -EARLY_LOG_S

    # intake -------------------------------------------------------------------

    def _decode_all(self, messages: Sequence[Incoming]) -> list[Decoded]:
        return [
            decode_message(m.record, m.headers, self.topics.get(m.record.topic), self.mapping)
            for m in messages
        ]

    async def intake(self, messages: Sequence[Incoming]) -> None:
        """Decode (off the event loop), dead-letter what is refused, hold the rest; ack
        at once the messages that brought nothing to hold."""
        if not messages:
            return
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(None, self._decode_all, messages)
        async with self.lock:
            dead: list[tuple[Record, Rejection]] = []
            rows: list[DeadLetterRow] = []
            for d in decoded:
                for rank, rejection in enumerate(d.dead, start=1):
                    full, sent = self._dead_records(d.record, rejection, rank)
                    dead.append((sent, rejection))
                    rows.append(dead_letter_row(full, rejection, self.redact))
            await self._dead_letters(dead, rows)
            for message, d in zip(messages, decoded, strict=True):
                self.stats.messages += 1
                if self.assembler.add(d.source, d.spans, d.logs):
                    self._acks[d.source] = message.ack
                else:
                    await message.ack()

    def _dead_records(
        self, record: Record, rejection: Rejection, rank: int
    ) -> tuple[Record, Record]:
        """The record stored in ``dead_letters`` and the one sent to the topic: a refused
        message as sent (the topic's copy cut to 64 KiB), a rejected span or log as a
        small JSON object naming it, at its 1-based rank in the message."""
        if rejection.field in ("span", "log_record"):
            body = json.dumps({"field": rejection.field, "reason": rejection.rule})
            one = Record(record.topic, record.partition, record.offset, record.key,
                         body.encode(), record.timestamp, rank)  # fmt: skip
            return one, one
        cut = Record(record.topic, record.partition, record.offset, record.key,
                     record.value[:DEAD_LETTER_PAYLOAD_BYTES], record.timestamp)  # fmt: skip
        return record, cut

    async def _dead_letters(
        self, dead: list[tuple[Record, Rejection]], rows: list[DeadLetterRow]
    ) -> None:
        if not dead:
            return
        await send_dead_letters(self.dead_letter_sink, dead)
        token = _token("otlp-dead", ((r.topic, r.partition, r.offset) for r, _ in dead),
                       (f"{r.envelope_line}" for r in rows))  # fmt: skip
        await write_until_stored(
            self.engine, lambda: self.writer.write_dead_letters(rows, token), self.backoff,
            "otlp dead letters", self._retried,
        )  # fmt: skip
        self.stats.dead += len(dead)

    def _retried(self) -> None:
        self.stats.storage_retries += 1

    # completion ---------------------------------------------------------------

    async def complete(self) -> int:
        """Publish and store the traces complete now, then ack their messages; returns
        how many traces completed. A round that fails (Kafka unavailable, say) is kept
        and tried again, whole, at the next call: its messages stay unacked meanwhile."""
        async with self.lock:
            done = self._unfinished + self.assembler.due()
            if not done:
                return 0
            self._unfinished = done
            self._report_early(sum(c.early for c in done))
            loop = asyncio.get_running_loop()
            work = await loop.run_in_executor(None, self._build, done)
            await self._publish(work.events)
            await send_dead_letters(self.dead_letter_sink, work.dead)
            await self._store(done, work)
            self._unfinished = []
            for source in self.assembler.finish(done):
                ack = self._acks.pop(source, None)
                if ack is not None:
                    await ack()
            self.stats.spans += len(work.rows)
            self.stats.events += len(work.events)
            self.stats.dead += len(work.dead)
            return len(done)

    def _report_early(self, early: int) -> None:
        """One log line a minute at most while the hold is full, with the count since."""
        self._early_unreported += early
        now = time.monotonic()
        if not self._early_unreported or now - self._early_reported_at < EARLY_LOG_S:
            return
        log.warning(
            "OTLP trace hold full (%d spans and logs or %d traces): %d traces completed "
            "before their %.1fs wait since the last report; retriever spans or content logs "
            "of theirs that come later are missing from their events",
            self.assembler.max_items, self.assembler.max_traces, self._early_unreported,
            self.assembler.wait_s,
        )  # fmt: skip
        self._early_unreported = 0
        self._early_reported_at = now

    def _build(self, done: Sequence[Completed]) -> _Round:
        """Events and rows of completed traces (mapping and redaction: CPU work)."""
        work = _Round()
        for trace in done:
            for call in trace.calls:
                self._event(trace, call, work)
            for span in trace.spans:
                try:
                    work.rows.append(span_row(span, self.redact))
                except Exception as exc:  # a mapping bug: retrying the round cannot help
                    log.exception("OTLP span %s of trace %s: no row", span.span_id,
                                  trace.trace_id)  # fmt: skip
                    problem = Rejection("span", f"{span.span_id}: no row ({type(exc).__name__})")
                    self._event_dead(trace, span, problem, b"", work)
        return work

    def _event(self, trace: Completed, call: LlmSpan, work: _Round) -> None:
        span = call.span
        try:
            event = self.mapping.build_event(call.call, call.logs, call.documents)
            value = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
        except Exception as exc:  # a mapping bug: a dead letter, not a stopped worker
            log.exception("OTLP span %s of trace %s: no event built", span.span_id, trace.trace_id)
            problem = Rejection("span", f"{span.span_id}: no event built ({type(exc).__name__})")
            self._event_dead(trace, span, problem, b"", work)
            return
        data = value.encode()
        if len(data) > EVENT_MAX_BYTES:  # the mapping cuts to it: only a bug gets here
            problem = Rejection("payload", f"larger than {EVENT_MAX_BYTES} bytes")
            self._event_dead(trace, span, problem, data, work)
            return
        work.events.append((str(event.get("event_id", "")).encode(), data))

    def _event_dead(
        self, trace: Completed, span: MappedSpan, problem: Rejection, value: bytes, work: _Round
    ) -> None:
        topic, partition, offset = min(trace.sources)
        record = Record(topic, partition, offset, trace.trace_id.encode(), value, 0.0,
                        _span_line(span.span_id))  # fmt: skip
        work.dead_rows.append(dead_letter_row(record, problem, self.redact))
        cut = Record(topic, partition, offset, record.key, value[:DEAD_LETTER_PAYLOAD_BYTES],
                     0.0, record.line)  # fmt: skip
        work.dead.append((cut, problem))

    async def _publish(self, events: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce the events (envelopes where several fit) and await every ack."""
        deliveries = []
        for group in _envelopes(events):
            if len(group) == 1:
                key, value = group[0]
                deliveries.append(await self.event_sink(key, value, {}))
            else:
                value = b"\n".join(v for _, v in group)
                headers = {ENVELOPE_HEADER: ENVELOPE_VERSION}
                deliveries.append(await self.event_sink(None, value, headers))
        await asyncio.gather(*deliveries)

    async def _store(self, done: Sequence[Completed], work: _Round) -> None:
        sources = [s for trace in done for s in trace.sources]
        span_token = _token("otlp-spans", sources, (f"{r.trace_id}:{r.span_id}" for r in work.rows))
        dead_token = _token("otlp-dead", sources, (f"{r.envelope_line}" for r in work.dead_rows))

        def write() -> None:
            self.writer.write_dead_letters(work.dead_rows, dead_token)
            self.writer.write_spans(work.rows, span_token)

        await write_until_stored(self.engine, write, self.backoff, "otlp spans", self._retried)

    # outside changes ----------------------------------------------------------

    async def revoked(self, partitions: set[tuple[str, int]]) -> None:
        """Forget what this worker held of partitions it lost; their new owner replays it."""
        async with self.lock:
            dropped = self.assembler.drop_partitions(partitions)
            for source in [s for s in self._acks if (s[0], s[1]) in partitions]:
                del self._acks[source]
            # a failed round's traces too: their new owner publishes and stores them
            self._unfinished = [
                c
                for c in self._unfinished
                if any((t, p) not in partitions for t, p, _ in c.sources)
            ]
            if dropped:
                log.info("OTLP: %d held traces of revoked partitions dropped", dropped)


def _envelopes(events: Sequence[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
    """Events in groups that fit one envelope (``ingest.envelope``); a large one alone."""
    groups: list[list[tuple[bytes, bytes]]] = []
    group: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in events:
        if group and (len(group) >= EVENTS_PER_ENVELOPE or size + len(value) + 1 > ENVELOPE_BYTES):
            groups.append(group)
            group, size = [], 0
        group.append((key, value))
        size += len(value) + 1
    if group:
        groups.append(group)
    return groups


def install_otlp(
    app: faust.App,
    settings: Settings,
    engine: Engine,
    redact: Callable[[str], str],
    send_dead_letter: DeadLetterSink,
    mapping: OtlpMapping | None = None,
) -> OtlpHandler:
    """Declare the OTLP topics, their agent and the task that completes held traces.

    ``noack_take`` and explicit acks, as the score agent: a message is acked only once
    every trace it brought something to is published and stored.
    """
    topics = otlp_topics(settings)
    events = app.topic(settings.topics.events, value_type=bytes, key_type=bytes)

    async def send_event(key: bytes | None, value: bytes, headers: dict[str, bytes]) -> Any:
        return await events.send(key=key, value=value, headers=headers or None, force=True)

    handler = OtlpHandler(
        TraceAssembler(settings.otlp_trace_wait_s), engine, mapping or OtlpMapping.default(),
        send_dead_letter, send_event, redact, topics,
    )  # fmt: skip
    source = app.topic(*topics, value_type=bytes, key_type=bytes)

    @app.agent(source, name="otlp")
    async def otlp(stream: faust.StreamT) -> None:
        async for taken in stream.noack_take(settings.batch_max, within=settings.batch_within_s):
            incoming = [incoming_of(e.message, functools.partial(stream.ack, e)) for e in taken]
            await handler.intake(incoming)
            await complete()

    tick = min(1.0, max(0.05, settings.otlp_trace_wait_s / 4))
    slowdown = Backoff(tick, 30.0, jitter="none")
    failures = 0

    async def complete() -> None:
        nonlocal failures
        try:
            await handler.complete()
            failures = 0
        except Exception:  # Kafka unavailable, say: the round is kept and tried again
            failures = min(failures + 1, 10)
            log.exception("OTLP traces not published; tried again in %.1fs",
                          slowdown.bound(failures))  # fmt: skip

    @app.task
    async def otlp_traces() -> None:
        # A loop, not a timer: a round may wait for storage and outlast the tick.
        while not app.should_stop:
            await asyncio.sleep(slowdown.bound(failures + 1) if failures else tick)
            await complete()

    @app.on_partitions_revoked.connect
    async def forget_revoked_otlp(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await handler.revoked({(tp.topic, tp.partition) for tp in revoked if tp.topic in topics})

    return handler
