"""Trace assembly: hold a trace's spans and content logs until it is complete, then
say, for each LLM span, which documents were retrieved before it and which content logs
belong to it. Pure (no Faust, no I/O, the clock injected), so every rule is unit-tested.

Why a hold: an SDK batches spans as they end and logs on their own schedule, so a RAG
trace's retriever span, its LLM span and that span's content log records may arrive in
different export requests, seconds apart and in any order.

**Completion rule.** A trace is complete ``wait`` seconds after the last message that
brought it anything, and never later than ``MAX_HOLD_FACTOR * wait`` after its first
(a long agent run that keeps exporting is still scored in bounded time). With the
default ``wait`` of 5 s that is 5 to 20 s after the trace's first message.

**Bounds.** At most ``max_items`` spans and logs and ``max_traces`` traces are held;
past either, the traces held longest complete at once (early), and the caller logs it.
Completed traces' retriever documents are remembered (``max_recent`` traces,
``max_recent_chars`` characters, ``recent_s`` seconds), nothing else.

**Late arrivals.** A span or log arriving after its trace completed starts a new hold
for that trace. A late LLM span still gets the documents of the trace's retriever spans
that completed earlier, from that memory; a late retriever span cannot change an event
already published, and a late content log whose span completed earlier finds no span
(it is counted, nothing else). The memory is this process's: after a restart or a
rebalance, a late LLM span sees only the retriever spans that arrive with it.

**Acks.** Every message is held until each trace it brought something to has
completed and been stored (:meth:`TraceAssembler.finish`); a message that brought
nothing (only rejected spans, say) is free at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ingest.otlp_model import LlmCall, MappedLog, MappedSpan
from ingest.schema import LIMITS

__all__ = [
    "MAX_HOLD_FACTOR",
    "Completed",
    "LlmSpan",
    "Source",
    "TraceAssembler",
]

# (topic, partition, offset): the Kafka message a span or log came in.
Source = tuple[str, int, int]
MAX_HOLD_FACTOR = 4.0  # a trace completes at most this many waits after its first message


@dataclass(frozen=True, slots=True)
class LlmSpan:
    """An LLM span of a completed trace, with what its event is built from."""

    span: MappedSpan
    call: LlmCall
    logs: tuple[MappedLog, ...]  # its content log records, by time
    # the trace's retrieved documents that started before it, in start order; None when
    # the trace had no retriever span at all
    documents: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Completed:
    """One hold of one trace, complete: what the caller publishes and stores before it
    hands it back to :meth:`TraceAssembler.finish`."""

    trace_id: str
    spans: tuple[MappedSpan, ...]  # every span held, once each, by start
    calls: tuple[LlmSpan, ...]  # the LLM spans among them
    sources: frozenset[Source]  # the messages that brought it
    early: bool  # completed before its time because the hold was full
    orphan_logs: int  # content logs whose span was not in this hold (dropped)
    recalled: bool  # its LLM spans used documents of an earlier hold of the trace


@dataclass
class _Hold:
    trace_id: str
    first: float
    last: float
    spans: dict[str, MappedSpan] = field(default_factory=dict)  # by span_id
    logs: dict[str, MappedLog] = field(default_factory=dict)  # by identity (_log_key)
    sources: set[Source] = field(default_factory=set)

    @property
    def items(self) -> int:
        return len(self.spans) + len(self.logs)


@dataclass
class AssemblyStats:
    completed: int = 0
    early: int = 0  # completed before their time because the hold was full
    late: int = 0  # holds of a trace that had completed before (late spans or logs)
    orphan_logs: int = 0
    duplicates: int = 0  # spans or logs already held


def _log_key(log: MappedLog) -> str:
    """A log's identity: the same record sent twice is held once, two records are two."""
    content = json.dumps(log.content, sort_keys=True, default=str, ensure_ascii=False)
    digest = hashlib.blake2b(content.encode(), digest_size=12).hexdigest()
    return f"{log.span_id}|{log.time_ns}|{log.name}|{digest}"


class TraceAssembler:
    """Holds traces until complete (see the module docstring for the rule and bounds)."""

    def __init__(
        self,
        wait_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_items: int = 100_000,
        max_traces: int = 20_000,
        max_recent: int = 10_000,
        max_recent_chars: int = 32_000_000,
        recent_s: float = 600.0,
    ) -> None:
        self.wait_s = wait_s
        self.max_hold_s = MAX_HOLD_FACTOR * wait_s
        self.clock = clock
        self.max_items = max_items
        self.max_traces = max_traces
        self.max_recent = max_recent
        self.max_recent_chars = max_recent_chars
        self.recent_s = recent_s
        self.stats = AssemblyStats()
        self._holds: dict[str, _Hold] = {}  # by trace id, in order of first arrival
        self._early: list[_Hold] = []  # pushed out by the bounds, completed at next due()
        self._items = 0
        self._pending: dict[Source, int] = {}  # message -> holds not yet finished
        # completed traces' retriever spans: trace id -> (when, span_id -> (start, docs))
        self._recent: OrderedDict[str, tuple[float, dict[str, tuple[int, tuple[str, ...]]]]]
        self._recent = OrderedDict()
        self._recent_chars = 0
        self._finished: OrderedDict[str, None] = OrderedDict()  # ids seen complete (late count)

    # intake -------------------------------------------------------------------

    @property
    def held_items(self) -> int:
        return self._items

    @property
    def held_traces(self) -> int:
        return len(self._holds)

    def add(self, source: Source, spans: Sequence[MappedSpan], logs: Sequence[MappedLog]) -> bool:
        """Hold what one message brought. Returns False when it brought nothing to hold,
        so the caller may ack it at once (after its dead letters)."""
        if not spans and not logs:
            return False
        now = self.clock()
        touched: dict[str, _Hold] = {}
        for span in spans:
            hold = touched.get(span.trace_id) or self._hold(span.trace_id, now)
            touched[span.trace_id] = hold
            if span.span_id in hold.spans:
                self.stats.duplicates += 1
                continue
            hold.spans[span.span_id] = span
            self._items += 1
        for log in logs:
            hold = touched.get(log.trace_id) or self._hold(log.trace_id, now)
            touched[log.trace_id] = hold
            key = _log_key(log)
            if key in hold.logs:
                self.stats.duplicates += 1
                continue
            hold.logs[key] = log
            self._items += 1
        for hold in touched.values():
            hold.last = now
            if source not in hold.sources:
                hold.sources.add(source)
                self._pending[source] = self._pending.get(source, 0) + 1
        self._enforce_bounds()
        return True

    def _hold(self, trace_id: str, now: float) -> _Hold:
        hold = self._holds.get(trace_id)
        if hold is None:
            hold = self._holds[trace_id] = _Hold(trace_id, now, now)
            if trace_id in self._finished:
                self.stats.late += 1
        return hold

    def _enforce_bounds(self) -> None:
        """Past a bound, the traces held longest complete now (they lose their wait)."""
        while self._holds and (self._items > self.max_items or len(self._holds) > self.max_traces):
            trace_id = next(iter(self._holds))
            hold = self._holds.pop(trace_id)
            self._items -= hold.items
            self._early.append(hold)

    # completion ---------------------------------------------------------------

    def deadline(self, trace_id: str) -> float | None:
        """When a held trace completes (clock time); None if it is not held."""
        hold = self._holds.get(trace_id)
        if hold is None:
            return None
        return min(hold.last + self.wait_s, hold.first + self.max_hold_s)

    def due(self) -> list[Completed]:
        """The traces complete now: those pushed out by the bounds, then those whose time
        came, in order of first arrival. The caller stores them, then calls ``finish``."""
        now = self.clock()
        ready = [(h, True) for h in self._early]
        self._early = []
        for trace_id, hold in list(self._holds.items()):
            if now >= min(hold.last + self.wait_s, hold.first + self.max_hold_s):
                del self._holds[trace_id]
                self._items -= hold.items
                ready.append((hold, False))
        self._expire_recent(now)
        return [self._complete(hold, early, now) for hold, early in ready]

    def _complete(self, hold: _Hold, early: bool, now: float) -> Completed:
        spans = sorted(hold.spans.values(), key=lambda s: (s.start_ns, s.span_id))
        earlier = self._recent.get(hold.trace_id)
        retrievers: dict[str, tuple[int, tuple[str, ...]]] = dict(earlier[1]) if earlier else {}
        recalled_ids = set(retrievers)
        for span in spans:
            if span.documents is not None:
                retrievers[span.span_id] = (span.start_ns, span.documents)
                recalled_ids.discard(span.span_id)
        by_start = sorted(retrievers.items(), key=lambda r: (r[1][0], r[0]))
        logs: dict[str, list[MappedLog]] = {}
        for log in hold.logs.values():
            logs.setdefault(log.span_id, []).append(log)
        calls: list[LlmSpan] = []
        recalled = False
        for span in spans:
            if span.call is None:
                continue
            documents: tuple[str, ...] | None = None
            if retrievers:
                before = [(sid, docs) for sid, (start, docs) in by_start if start < span.start_ns]
                flat = tuple(doc for _, docs in before for doc in docs)
                # An event holds LIMITS.context_chunks chunks at most: keep the latest.
                documents = flat[-LIMITS.context_chunks :]
                recalled = recalled or any(sid in recalled_ids for sid, _ in before)
            own = sorted(logs.pop(span.span_id, []), key=lambda x: x.time_ns)
            calls.append(LlmSpan(span, span.call, tuple(own), documents))
        orphans = sum(len(v) for k, v in logs.items() if k not in hold.spans)
        self.stats.completed += 1
        self.stats.early += early
        self.stats.orphan_logs += orphans
        self._remember(hold.trace_id, retrievers, now)
        self._note_finished(hold.trace_id)
        return Completed(
            hold.trace_id, tuple(spans), tuple(calls), frozenset(hold.sources), early,
            orphans, recalled,
        )  # fmt: skip

    def finish(self, completed: Completed | Iterable[Completed]) -> list[Source]:
        """The trace(s) are stored: return the messages now free to ack (each message
        once, when the last trace it brought something to is finished)."""
        done = [completed] if isinstance(completed, Completed) else list(completed)
        free: list[Source] = []
        for item in done:
            for source in sorted(item.sources):
                left = self._pending.get(source)
                if left is None:
                    continue  # its partition was revoked: the new owner replays it
                if left <= 1:
                    del self._pending[source]
                    free.append(source)
                else:
                    self._pending[source] = left - 1
        return free

    # memory of completed traces -----------------------------------------------

    def _remember(
        self, trace_id: str, retrievers: dict[str, tuple[int, tuple[str, ...]]], now: float
    ) -> None:
        if not retrievers:
            return
        old = self._recent.pop(trace_id, None)
        if old is not None:
            self._recent_chars -= _chars(old[1])
        self._recent[trace_id] = (now, retrievers)
        self._recent_chars += _chars(retrievers)
        while self._recent and (
            len(self._recent) > self.max_recent or self._recent_chars > self.max_recent_chars
        ):
            _, (_, dropped) = self._recent.popitem(last=False)
            self._recent_chars -= _chars(dropped)

    def _expire_recent(self, now: float) -> None:
        while self._recent:
            trace_id, (at, docs) = next(iter(self._recent.items()))
            if now - at < self.recent_s:
                return
            del self._recent[trace_id]
            self._recent_chars -= _chars(docs)

    def _note_finished(self, trace_id: str) -> None:
        self._finished.pop(trace_id, None)
        self._finished[trace_id] = None
        while len(self._finished) > self.max_recent:
            self._finished.popitem(last=False)

    # outside changes ----------------------------------------------------------

    def drop_partitions(self, revoked: set[tuple[str, int]]) -> int:
        """Partitions this worker lost: their messages will be replayed by the new owner,
        so they are never acked here. A hold that came only from them is dropped (the
        replay holds it again); a hold that also came from kept partitions completes as
        usual, so those messages are acked. Returns the holds dropped."""
        gone = {s for s in self._pending if (s[0], s[1]) in revoked}
        for source in gone:
            del self._pending[source]

        def revoked_only(hold: _Hold) -> bool:
            return all((s[0], s[1]) in revoked for s in hold.sources)

        dropped = [h for h in self._early if revoked_only(h)]
        self._early = [h for h in self._early if not revoked_only(h)]
        for trace_id, hold in list(self._holds.items()):
            if revoked_only(hold):
                del self._holds[trace_id]
                self._items -= hold.items
                dropped.append(hold)
        for hold in [*self._holds.values(), *self._early]:
            # A kept hold forgets them too: if the partition comes back, its replayed
            # messages are held (and acked) again.
            hold.sources -= gone
        return len(dropped)


def _chars(retrievers: dict[str, tuple[int, tuple[str, ...]]]) -> int:
    return sum(len(doc) for _, docs in retrievers.values() for doc in docs)
