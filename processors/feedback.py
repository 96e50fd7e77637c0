"""Feedback ingestion: ``llm.feedback`` records become ``llm_feedback`` rows.

The same commit order as the score agent (see ``processors.handler``): dead letters
are produced and acked by the broker, then ``dead_letters`` and ``llm_feedback``
rows are inserted with tokens derived from the batch's offsets, and only then does
the agent ack. Storage failures are retried with backoff, forever, which pauses this
agent; a batch is never acked unstored. A replayed batch stores nothing twice (same
token), or collapses in the ReplacingMergeTree (one verdict per event and source).
No model runs here, so the work stays on the event loop and the engine thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import faust

from core.retry import Backoff
from core.settings import Settings
from ingest.schema import Feedback, Rejection, parse_feedback
from processors.batch import Record, dead_letter_row, records_of
from processors.handler import DeadLetterSink, send_dead_letters, write_until_stored
from storage.engine import Engine
from storage.rows import FEEDBACK_COLUMNS, DeadLetterRow, FeedbackRow
from storage.writer import Writer, batch_token

__all__ = ["FEEDBACK_COLUMNS", "FeedbackBatch", "FeedbackHandler", "install_feedback"]

log = logging.getLogger(__name__)


@dataclass
class FeedbackBatch:
    rows: list[FeedbackRow] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    rejected: list[tuple[Record, Rejection]] = field(default_factory=list)
    offsets: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class FeedbackStats:
    batches: int = 0
    stored: int = 0
    dead: int = 0
    storage_retries: int = 0


def feedback_row(record: Record, fb: Feedback, redact: Callable[[str], str]) -> FeedbackRow:
    return FeedbackRow(
        event_id=fb.event_id, ts=fb.ts, score=fb.score, comment=redact(fb.comment or ""),
        source=fb.source or "", kafka_partition=record.partition, kafka_offset=record.offset,
    )  # fmt: skip


class FeedbackHandler:
    """Validates, redacts and stores one micro-batch of feedback records.

    ``redact`` is applied to ``comment``, which users fill with whatever they like,
    PII included; pass the worker's redactor so feedback follows the same policy as
    event texts; the stored copy of a rejected payload is redacted the same way.
    """

    def __init__(
        self,
        engine: Engine,
        dead_letter_sink: DeadLetterSink,
        backoff: Backoff | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.engine = engine
        self.writer = Writer(engine.client, engine.database)
        self.dead_letter_sink = dead_letter_sink
        self.backoff = backoff or Backoff()
        self.redact = redact or (lambda text: text)
        self.stats = FeedbackStats()

    def split(self, records: Sequence[Record]) -> FeedbackBatch:
        """Rows for the valid records, dead letters for the others (pure, no I/O)."""
        batch = FeedbackBatch(offsets=[(r.topic, r.partition, r.offset) for r in records])
        for record in records:
            parsed = parse_feedback(record.value)
            if isinstance(parsed, Rejection):
                batch.rejected.append((record, parsed))
                batch.dead_letters.append(dead_letter_row(record, parsed, self.redact))
            else:
                batch.rows.append(feedback_row(record, parsed, self.redact))
        return batch

    async def handle(self, records: Sequence[Record]) -> FeedbackBatch:
        batch = self.split(records)
        await send_dead_letters(self.dead_letter_sink, batch.rejected)
        await self._store(batch)
        self.stats.batches += 1
        self.stats.stored += len(batch.rows)
        self.stats.dead += len(batch.dead_letters)
        return batch

    async def _store(self, batch: FeedbackBatch) -> None:
        if not batch.rows and not batch.dead_letters:
            return
        feedback_token = batch_token("feedback", batch.offsets)
        dead_token = batch_token("dead", batch.offsets)

        def write() -> None:
            self.writer.write_dead_letters(batch.dead_letters, dead_token)
            self.writer.insert("llm_feedback", FEEDBACK_COLUMNS, batch.rows, feedback_token)

        def retried() -> None:
            self.stats.storage_retries += 1

        await write_until_stored(self.engine, write, self.backoff, "feedback", retried)


def install_feedback(
    app: faust.App,
    settings: Settings,
    engine: Engine,
    send_dead_letter: DeadLetterSink,
    redact: Callable[[str], str] | None = None,
) -> FeedbackHandler:
    """Declare ``llm.feedback`` and its agent on ``app``; ack each batch once stored.

    ``noack_take`` and explicit acks, as the score agent does: Faust's ``take`` acks
    in a ``finally``, also when the batch failed or the worker is being cancelled.
    """
    handler = FeedbackHandler(engine, send_dead_letter, redact=redact)
    topic = app.topic(settings.topics.feedback, value_type=bytes, key_type=bytes)

    @app.agent(topic, name="feedback")
    async def feedback(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(settings.batch_max, within=settings.batch_within_s):
            await handler.handle(records_of(batch))
            for event in batch:
                await stream.ack(event)

    return handler
