"""Trace assembly (processors/otlp_traces.py): when a trace completes, which documents
and content logs each LLM span gets, the memory bound, late spans, and which messages
may be acked. A fake clock stands in for time; spans and logs are built by hand."""

from __future__ import annotations

from ingest.otlp_model import LlmCall, MappedLog, MappedSpan, otlp_event_id
from processors.otlp_traces import TraceAssembler

TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER = "4bf92f3577b34da6a3ce929d0e0e4736"
WAIT = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def span(
    span_id: str,
    start: int,
    *,
    trace: str = TRACE,
    llm: bool = False,
    docs: tuple[str, ...] | None = None,
) -> MappedSpan:
    call = LlmCall({"event_id": otlp_event_id(trace, span_id)}) if llm else None
    columns = {"trace_id": trace, "span_id": span_id, "parent_span_id": ""}
    return MappedSpan(columns, start_ns=start, end_ns=start + 50, call=call, documents=docs)


def log(span_id: str, time_ns: int, text: str, *, trace: str = TRACE) -> MappedLog:
    return MappedLog(trace, span_id, time_ns, "gen_ai.user.message", {"content": text})


def msg(offset: int, partition: int = 0) -> tuple[str, int, int]:
    return ("llm.otlp", partition, offset)


def assembler(clock: Clock, **bounds: int) -> TraceAssembler:
    return TraceAssembler(WAIT, clock, **bounds)


def test_a_retriever_span_in_a_later_request_gives_the_llm_span_its_documents() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1), [span("llm", 200, llm=True)], [])
    clock.now += 3
    traces.add(msg(2), [span("ret", 100, docs=("Paris is in France.", "It is the capital."))], [])

    clock.now += WAIT - 0.1
    assert traces.due() == []  # the retriever's message restarted the wait
    clock.now += 0.1
    (done,) = traces.due()
    assert [c.span.span_id for c in done.calls] == ["llm"]
    assert done.calls[0].documents == ("Paris is in France.", "It is the capital.")
    assert [s.span_id for s in done.spans] == ["ret", "llm"]  # by start, not arrival


def test_a_trace_without_a_retriever_span_gives_documents_none() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1), [span("root", 100), span("llm", 200, llm=True)], [])
    clock.now += WAIT
    (done,) = traces.due()
    assert done.calls[0].documents is None


def test_only_retrievers_that_started_before_the_llm_span_count_in_start_order() -> None:
    clock = Clock()
    traces = assembler(clock)
    # arrival order: after, second, llm, first
    traces.add(msg(1), [span("after", 500, docs=("later",))], [])
    traces.add(msg(2), [span("second", 200, docs=("b1", "b2"))], [])
    traces.add(msg(3), [span("llm", 300, llm=True), span("early-llm", 50, llm=True)], [])
    traces.add(msg(4), [span("first", 100, docs=("a",))], [])
    clock.now += WAIT
    (done,) = traces.due()
    documents = {c.span.span_id: c.documents for c in done.calls}
    assert documents == {"llm": ("a", "b1", "b2"), "early-llm": ()}


def test_content_logs_join_their_span_by_span_id_in_time_order() -> None:
    clock = Clock()
    traces = assembler(clock)
    # the logs come first, as a log exporter flushes sooner than a span exporter
    traces.add(msg(1), [], [log("b", 30, "second of b"), log("a", 10, "of a"), log("b", 20, "b")])
    clock.now += 4
    traces.add(msg(2), [span("a", 100, llm=True), span("b", 200, llm=True)], [])
    clock.now += WAIT
    (done,) = traces.due()
    joined = {c.span.span_id: [x.content["content"] for x in c.logs] for c in done.calls}
    assert joined == {"a": ["of a"], "b": ["b", "second of b"]}
    assert done.orphan_logs == 0


def test_a_log_whose_span_never_comes_is_counted_as_an_orphan() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1), [span("a", 100, llm=True)], [log("a", 1, "x"), log("zz", 2, "lost")])
    clock.now += WAIT
    (done,) = traces.due()
    assert done.orphan_logs == 1
    assert traces.stats.orphan_logs == 1
    assert [x.span_id for x in done.calls[0].logs] == ["a"]


def test_a_trace_that_keeps_arriving_completes_four_waits_after_its_first_message() -> None:
    clock = Clock()
    traces = assembler(clock)
    first = clock.now
    for i in range(10):
        traces.add(msg(i), [span(f"s{i}", i)], [])
        assert traces.due() == [], f"completed after {clock.now - first} s"
        clock.now += 2.5
        if clock.now - first >= 4 * WAIT:
            break
    (done,) = traces.due()
    assert clock.now - first == 4 * WAIT
    assert len(done.spans) == 8  # added at 0, 2.5, ..., 17.5 s


def test_traces_complete_separately_each_after_its_own_wait() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1), [span("a", 1, trace=TRACE)], [])
    clock.now += 2
    traces.add(msg(2), [span("b", 1, trace=OTHER)], [])
    clock.now += 3
    assert [d.trace_id for d in traces.due()] == [TRACE]
    clock.now += 2
    assert [d.trace_id for d in traces.due()] == [OTHER]


def test_when_the_hold_is_full_the_trace_held_longest_completes_early() -> None:
    clock = Clock()
    traces = assembler(clock, max_items=3)
    traces.add(msg(1), [span("a1", 1, trace=TRACE), span("a2", 2, trace=TRACE)], [])
    clock.now += 1
    traces.add(msg(2), [span("b1", 1, trace=OTHER), span("b2", 2, trace=OTHER)], [])

    (done,) = traces.due()  # no time passed: only the one pushed out
    assert (done.trace_id, done.early) == (TRACE, True)
    assert (traces.held_items, traces.held_traces) == (2, 1)
    assert traces.stats.early == 1


def test_the_hold_also_bounds_the_number_of_traces() -> None:
    clock = Clock()
    traces = assembler(clock, max_traces=2)
    for i, trace in enumerate((TRACE, OTHER, "f" * 32)):
        traces.add(msg(i), [span("s", 1, trace=trace)], [])
    assert [(d.trace_id, d.early) for d in traces.due()] == [(TRACE, True)]
    assert traces.held_traces == 2


def test_a_late_llm_span_still_gets_the_documents_of_its_completed_trace() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1), [span("ret", 100, docs=("doc",)), span("llm1", 200, llm=True)], [])
    clock.now += WAIT
    (first,) = traces.due()
    assert traces.finish(first) == [msg(1)]
    assert first.calls[0].documents == ("doc",)
    assert not first.recalled

    clock.now += 60
    traces.add(msg(2), [span("llm2", 300, llm=True)], [])  # a new hold for the trace
    clock.now += WAIT
    (late,) = traces.due()
    assert late.calls[0].documents == ("doc",)
    assert [s.span_id for s in late.spans] == ["llm2"]  # the retriever is not stored again
    assert late.recalled
    assert traces.stats.late == 1


def test_remembered_documents_expire() -> None:
    clock = Clock()
    traces = TraceAssembler(WAIT, clock, recent_s=100.0)
    traces.add(msg(1), [span("ret", 100, docs=("doc",))], [])
    clock.now += WAIT
    traces.due()
    clock.now += 100
    traces.add(msg(2), [span("llm", 300, llm=True)], [])
    clock.now += WAIT
    (late,) = traces.due()
    assert late.calls[0].documents is None


def test_remembered_documents_are_bounded_in_characters_oldest_forgotten_first() -> None:
    clock = Clock()
    traces = TraceAssembler(WAIT, clock, max_recent_chars=10)
    traces.add(msg(1), [span("ret", 100, trace=TRACE, docs=("123456",))], [])
    traces.add(msg(2), [span("ret", 100, trace=OTHER, docs=("abcdef",))], [])
    clock.now += WAIT
    traces.due()
    traces.add(msg(3), [span("llm", 300, trace=TRACE, llm=True)], [])
    traces.add(msg(4), [span("llm", 300, trace=OTHER, llm=True)], [])
    clock.now += WAIT
    documents = {d.trace_id: d.calls[0].documents for d in traces.due()}
    assert documents == {TRACE: None, OTHER: ("abcdef",)}


def test_a_message_is_acked_only_when_every_trace_it_brought_is_finished() -> None:
    clock = Clock()
    traces = assembler(clock)
    # a Collector's message may hold several traces
    traces.add(msg(1), [span("a", 1, trace=TRACE), span("b", 1, trace=OTHER)], [])
    clock.now += 1
    traces.add(msg(2), [span("b2", 2, trace=OTHER)], [])
    clock.now += WAIT - 1
    (first,) = traces.due()
    assert first.trace_id == TRACE
    assert traces.finish(first) == []  # message 1 still carries OTHER
    clock.now += 1
    (second,) = traces.due()
    assert sorted(traces.finish(second)) == [msg(1), msg(2)]


def test_a_message_that_brought_nothing_to_hold_is_free_at_once() -> None:
    traces = assembler(Clock())
    assert traces.add(msg(1), [], []) is False
    assert traces.held_items == 0


def test_the_same_span_and_log_sent_twice_are_held_once_and_both_messages_acked() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1), [span("llm", 1, llm=True)], [log("llm", 5, "hi")])
    traces.add(msg(2), [span("llm", 1, llm=True)], [log("llm", 5, "hi")])
    clock.now += WAIT
    (done,) = traces.due()
    assert len(done.spans) == 1 and len(done.calls[0].logs) == 1
    assert traces.stats.duplicates == 2
    assert sorted(traces.finish(done)) == [msg(1), msg(2)]


def test_an_event_gets_at_most_64_documents_the_latest_ones() -> None:
    clock = Clock()
    traces = assembler(clock)
    old = tuple(f"old{i}" for i in range(10))
    new = tuple(f"new{i}" for i in range(60))
    traces.add(msg(1), [span("r1", 1, docs=old), span("r2", 2, docs=new)], [])
    traces.add(msg(1), [span("llm", 3, llm=True)], [])
    clock.now += WAIT
    (done,) = traces.due()
    assert done.calls[0].documents == old[-4:] + new


def test_a_revoked_partition_s_traces_are_dropped_and_its_messages_never_acked() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1, partition=0), [span("a", 1, trace=TRACE)], [])
    traces.add(msg(1, partition=1), [span("b", 1, trace=OTHER)], [])
    traces.add(msg(2, partition=1), [span("c", 1, trace=TRACE)], [])  # TRACE spans both
    assert traces.drop_partitions({("llm.otlp", 1)}) == 1  # OTHER came only from there
    clock.now += WAIT
    (done,) = traces.due()
    assert done.trace_id == TRACE
    assert traces.finish(done) == [msg(1, partition=0)]


def test_a_message_replayed_after_its_partition_came_back_is_acked_again() -> None:
    clock = Clock()
    traces = assembler(clock)
    traces.add(msg(1, partition=0), [span("a", 1)], [])
    traces.add(msg(1, partition=1), [span("b", 1)], [])  # the same trace, another partition
    traces.drop_partitions({("llm.otlp", 1)})
    traces.add(msg(1, partition=1), [span("b", 1)], [])  # reassigned: Faust replays it
    clock.now += WAIT
    (done,) = traces.due()
    assert sorted(traces.finish(done)) == [msg(1, partition=0), msg(1, partition=1)]
