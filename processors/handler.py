"""What happens to one micro-batch, in the only order that loses nothing.

Commit order (the caller acks offsets only after ``handle`` returns):

1. score the batch (validation splits off dead letters) on the scoring thread,
   so the event loop keeps Kafka heartbeats and the SQL endpoint going; the
   models score every event, or a sample while the worker is behind
   (:mod:`processors.shedding`);
2. produce dead letters to ``llm.deadletter`` and wait for the broker's ack;
3. insert ``dead_letters``, ``llm_embeddings``, then ``llm_events`` rows, each
   with a dedup token (events last: a row there means its batch is complete);
4. produce one summary per stored event to ``llm.scored`` (keyed app|prompt_version)
   and wait for the broker's acks: the drift windows read vectors of stored rows;
5. return — the agent acks the batch's offsets, Faust commits them.

Step 1 of the next batch may run while steps 2-5 of this one do (:meth:`score`
then :meth:`finish`); ``finish`` calls stay in order, so offsets still commit
only after their batch is stored, and in order.

A crash anywhere before 5 replays the batch: the topics may get a dead letter or
a summary twice, the tables do not (dedup token, then ReplacingMergeTree). Storage
failures are retried here with backoff, forever, which pauses consumption; the
batch is never acked unstored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from core.retry import Backoff
from ingest.schema import Rejection
from processors.batch import Record, ScoredBatch, Scorer
from processors.shedding import LoadShedder
from storage.engine import Engine
from storage.writer import Writer, batch_token

__all__ = [
    "Backoff",
    "BatchHandler",
    "DeadLetterSink",
    "ScoredSink",
    "StoredOffsets",
    "error_chain",
    "send_dead_letters",
    "write_until_stored",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sends one dead letter (record, field, reason) and returns an awaitable for its delivery.
DeadLetterSink = Callable[[Record, str, str], Awaitable[Awaitable[object]]]
# Sends one llm.scored summary (key, value) and returns an awaitable for its delivery.
ScoredSink = Callable[[bytes, bytes], Awaitable[Awaitable[object]]]


@dataclass
class Stats:
    batches: int = 0
    stored: int = 0
    dead: int = 0
    storage_retries: int = 0


class StoredOffsets(Mapping[tuple[str, int], int]):
    """Per (topic, partition), one past the last record stored: what the group's committed
    offsets become once Faust commits (it commits only what was stored), known here without
    reading Faust's private state. Keys compare equal to Faust's and aiokafka's ``TP``.

    A partition this worker has stored nothing of yet starts from the broker's committed
    offset (:meth:`seed`); a broker that lost its logs starts it again (:meth:`forget`).
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def advance(self, offsets: Iterable[tuple[str, int, int]]) -> None:
        """Record that the records at these (topic, partition, offset) are stored."""
        for topic, partition, offset in offsets:
            key = (topic, partition)
            self._next[key] = max(self._next.get(key, 0), offset + 1)

    def seed(self, committed: Mapping[tuple[str, int], int | None]) -> None:
        """Raise partitions to the broker's committed offsets (None: nothing committed)."""
        for tp, offset in committed.items():
            if offset is not None and offset >= 0:
                key = (tp[0], tp[1])
                self._next[key] = max(self._next.get(key, 0), offset)

    def forget(self, tp: tuple[str, int]) -> None:
        self._next.pop((tp[0], tp[1]), None)

    def __getitem__(self, tp: tuple[str, int]) -> int:
        return self._next[(tp[0], tp[1])]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._next)

    def __len__(self) -> int:
        return len(self._next)


class BatchHandler:
    def __init__(
        self,
        scorer: Scorer,
        engine: Engine,
        dead_letter_sink: DeadLetterSink,
        backoff: Backoff | None = None,
        scored_sink: ScoredSink | None = None,
        shedder: LoadShedder | None = None,
    ) -> None:
        self.scorer = scorer
        self.engine = engine
        self.writer = Writer(engine.client, engine.database)
        self.dead_letter_sink = dead_letter_sink
        self.scored_sink = scored_sink
        self.backoff = backoff or Backoff()
        self.stats = Stats()
        self.stored = StoredOffsets()
        self.shedder = shedder or LoadShedder(0.0)  # 0: never shed
        # One thread per device: models are not re-entrant and a GPU gains nothing
        # from two batches at once.
        device = scorer.suite.embeddings.device
        self._scoring = ThreadPoolExecutor(1, thread_name_prefix=f"llmpulse-score-{device}")

    def close(self) -> None:
        self._scoring.shutdown(wait=True)

    async def compute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the scoring thread: drift tests share the device with the models."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._scoring, lambda: fn(*args, **kwargs))

    async def handle(self, records: Sequence[Record]) -> ScoredBatch:
        """Score, then store: the whole of one batch, steps 1 to 4."""
        return await self.finish(await self.score(records))

    async def score(self, records: Sequence[Record]) -> ScoredBatch:
        """Step 1: validate and score on the scoring thread, sampled if behind."""
        sampling = self.shedder.plan([r.timestamp for r in records])
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self._scoring, self.scorer.score, records, sampling)
        events = len(batch.rows) + len(batch.dead_letters)
        self.shedder.observe(events, batch.modelled, batch.model_seconds)
        return batch

    async def finish(self, batch: ScoredBatch) -> ScoredBatch:
        """Steps 2 to 4 for a scored batch; the caller acks its offsets afterwards."""
        await send_dead_letters(self.dead_letter_sink, batch.rejected)
        await self._store(batch)
        self.stored.advance(batch.offsets)
        if self.scored_sink is not None and batch.summaries:
            sends = [await self.scored_sink(key, value) for key, value in batch.summaries]
            await asyncio.gather(*sends)
        self.stats.batches += 1
        self.stats.stored += len(batch.rows)
        self.stats.dead += len(batch.dead_letters)
        return batch

    async def _store(self, batch: ScoredBatch) -> None:
        events_token = batch_token("events", batch.offsets)
        dead_token = batch_token("dead", batch.offsets)
        vectors_token = batch_token("embeddings", batch.offsets)

        def write() -> None:
            self.writer.write_dead_letters(batch.dead_letters, dead_token)
            self.writer.write_embeddings(batch.embeddings, vectors_token)
            self.writer.write_events(batch.rows, events_token)

        def retried() -> None:
            self.stats.storage_retries += 1

        await write_until_stored(self.engine, write, self.backoff, "storage", retried)


async def send_dead_letters(
    sink: DeadLetterSink, rejected: Sequence[tuple[Record, Rejection]]
) -> None:
    """Produce every dead letter, then wait for all the broker's acks (step 2)."""
    deliveries = [await sink(record, rej.field, rej.reason) for record, rej in rejected]
    await asyncio.gather(*deliveries)


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and then each error behind it (``__cause__``, else ``__context__``), once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _describe_error(exc: BaseException, limit: int = 300) -> str:
    """The error, shortened, and its root cause: a driver's message can bury the cause
    (a refused connection) behind a long URL."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > limit:
        text = text[:limit] + "…"
    *_, root = error_chain(exc)
    if root is not exc:
        text += f" (cause: {type(root).__name__}: {str(root)[:limit]})"
    return text


async def write_until_stored(
    engine: Engine,
    write: Callable[[], None],
    backoff: Backoff,
    what: str,
    on_retry: Callable[[], None] | None = None,
) -> None:
    """Run ``write`` on the engine until it succeeds. Every storage failure is retried
    with backoff, none is dropped; the caller does not ack meanwhile, so consumption
    pauses. The log says when writes start failing (again only if the error changes)
    and when they recover, with the outage's length and failed attempts."""
    delay = backoff.delays()
    failing_since: float | None = None
    failures = 0
    last_error = ""
    while True:
        try:
            await engine.run(write)
        except Exception as exc:
            text = _describe_error(exc)
            if failing_since is None:
                failing_since = time.monotonic()
            failures += 1
            if text != last_error:
                log.warning("%s write failed, consumption paused, retrying: %s", what, text)
                last_error = text
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(delay())
            continue
        if failing_since is not None:
            log.warning(
                "%s write succeeded after %.1fs of failures (%d failed attempts); "
                "consumption resumes",
                what, time.monotonic() - failing_since, failures,
            )  # fmt: skip
        return
