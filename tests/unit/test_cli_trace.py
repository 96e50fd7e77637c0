"""`llmpulse trace`: the span tree (rows to tree), its rendering, its JSON, its errors."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from llmpulse import cli_trace
from llmpulse.cli import main
from llmpulse.cli_trace import (
    Node,
    Span,
    Trace,
    UnknownTrace,
    build_tree,
    load_trace,
    parse_trace_id,
    render,
    timeline,
    trace_json,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_700_000_000_000_000  # µs since the epoch: 2023-11-14T22:13:20Z


def span(span_id: str, parent: str = "", at_ms: int = 0, ms: float = 10.0, **kw: Any) -> Span:
    kw.setdefault("name", f"step {span_id}")
    kw.setdefault("app", "bot")
    return Span(span_id=span_id, parent_span_id=parent, start_us=T0 + at_ms * 1000,
                duration_ms=ms, **kw)  # fmt: skip


def shape(nodes: list[Node]) -> list[Any]:
    """The tree as (span_id, orphan, children) tuples, for whole-tree assertions."""
    return [(n.span.span_id, n.orphan, shape(n.children)) for n in nodes]


def a_trace(spans: list[Span], scores: dict[str, dict[str, Any]] | None = None) -> Trace:
    return Trace(
        trace_id=TRACE,
        roots=build_tree(spans),
        start_us=min(s.start_us for s in spans),
        end_us=max(s.end_us for s in spans),
        scores=scores or {},
    )


# -- the tree ------------------------------------------------------------------------------


def test_children_hang_under_their_parent_in_start_order() -> None:
    spans = [span("c", "r", at_ms=300), span("r", at_ms=0, ms=500), span("a", "r", at_ms=100),
             span("g", "a", at_ms=150), span("b", "r", at_ms=200)]  # fmt: skip
    assert shape(build_tree(spans)) == [
        ("r", False, [("a", False, [("g", False, [])]), ("b", False, []), ("c", False, [])])
    ]


def test_spans_starting_together_are_ordered_by_span_id() -> None:
    spans = [span("r"), span("y", "r", at_ms=5), span("x", "r", at_ms=5)]
    assert shape(build_tree(spans)) == [("r", False, [("x", False, []), ("y", False, [])])]


def test_a_span_whose_parent_never_arrived_is_a_marked_top_level_node_in_start_order() -> None:
    spans = [span("r", at_ms=0), span("late", "missing", at_ms=50), span("early", "gone", at_ms=-5),
             span("kid", "late", at_ms=60)]  # fmt: skip
    assert shape(build_tree(spans)) == [
        ("early", True, []), ("r", False, []), ("late", True, [("kid", False, [])]),
    ]  # fmt: skip


def test_a_span_that_is_its_own_parent_is_an_orphan() -> None:
    assert shape(build_tree([span("s", "s")])) == [("s", True, [])]


def test_a_parent_loop_is_cut_at_its_earliest_span_and_loses_nothing() -> None:
    # x -> y -> z -> x: no root reaches them; the earliest (y) goes to the top level
    spans = [
        span("r"),
        span("x", "z", at_ms=30),
        span("y", "x", at_ms=10),
        span("z", "y", at_ms=20),
    ]
    assert shape(build_tree(spans)) == [
        ("r", False, []), ("y", True, [("z", False, [("x", False, [])])]),
    ]  # fmt: skip


# -- trace ids -----------------------------------------------------------------------------


def test_a_trace_id_in_upper_case_is_accepted_as_stored() -> None:
    assert parse_trace_id(" 4BF92F3577B34DA6A3CE929D0E0E4736 ") == TRACE


@pytest.mark.parametrize(
    "text",
    ["4bf92f3577b34da6a3ce929d0e0e473", "4bf92f3577b34da6a3ce929d0e0e47360",
     "4bf92f3577b34da6a3ce929d0e0e473g", "0" * 32, "00-4bf92f3577b34da6a3ce929d0e0e4736-01"],
)  # fmt: skip
def test_a_malformed_trace_id_is_refused(text: str) -> None:
    with pytest.raises(click.BadParameter, match="32 hex digits"):
        parse_trace_id(text)


def test_the_command_refuses_a_malformed_id_before_reading_storage(monkeypatch) -> None:
    monkeypatch.setattr(cli_trace, "rows_of", lambda settings: pytest.fail("storage was read"))
    result = CliRunner().invoke(main, ["trace", "not-a-trace"])
    assert result.exit_code == 2
    assert "'not-a-trace' is not a trace id" in result.output


# -- loading -------------------------------------------------------------------------------


class FakeStorage:
    """Answers the three queries of load_trace from lists, and records them."""

    def __init__(self, spans: list[dict], scores: list[dict], events: int = 0) -> None:
        self.spans, self.scores, self.events, self.sql = spans, scores, events, []

    def __call__(self, sql: str) -> list[dict[str, Any]]:
        self.sql.append(sql)
        if "count()" in sql:
            return [{"n": self.events}]
        return [dict(r) for r in (self.scores if "toxicity" in sql else self.spans)]


def span_row(span_id: str, parent: str = "", **kw: Any) -> dict[str, Any]:
    row = {"span_id": span_id, "parent_span_id": parent, "start_us": T0, "duration_ms": 5.0,
           "name": span_id, "kind": "internal", "operation": "", "app": "bot", "model": "",
           "status": "unset", "status_message": "", "error_type": "", "input_tokens": None,
           "output_tokens": None, "event_id": ""}  # fmt: skip
    return row | kw


def test_loading_a_trace_joins_each_llm_span_to_its_events_scores() -> None:
    storage = FakeStorage(
        spans=[span_row("r", duration_ms=100.0),
               span_row("llm", "r", start_us=T0 + 20_000, event_id="otlp-1")],
        scores=[{"event_id": "otlp-1", "toxicity": 0.25, "cost_usd": 0.002}],
    )  # fmt: skip
    found = load_trace(storage, TRACE)
    assert (found.start_us, found.end_us, found.duration_ms) == (T0, T0 + 100_000, 100.0)
    assert found.scores == {"otlp-1": {"toxicity": 0.25, "cost_usd": 0.002}}
    assert shape(found.roots) == [("r", False, [("llm", False, [])])]
    assert all(f"trace_id = '{TRACE}'" in sql for sql in storage.sql)


def test_an_unknown_trace_says_so_and_points_at_events_that_carry_its_id() -> None:
    with pytest.raises(UnknownTrace, match=f"no spans of trace {TRACE} are stored; 3 llm_events"):
        load_trace(FakeStorage(spans=[], scores=[], events=3), TRACE)


def test_the_command_exits_1_with_the_reason_for_an_unknown_trace(monkeypatch) -> None:
    monkeypatch.setattr(cli_trace, "rows_of", lambda settings: FakeStorage([], []))
    result = CliRunner().invoke(main, ["trace", TRACE.upper()])
    assert result.exit_code == 1
    assert f"no spans of trace {TRACE} are stored" in result.output


# -- the timeline bar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at_ms", "ms", "bar"),
    [(0, 1000, "━" * 10), (0, 500, "━" * 5 + " " * 5), (250, 500, "  " + "━" * 6 + "  "),
     (999, 0, " " * 9 + "━"), (400, 1, " " * 4 + "━" + " " * 5),
     (500, 0, " " * 5 + "━" + " " * 4), (1000, 0, " " * 9 + "━")],
)  # fmt: skip
def test_the_timeline_draws_every_cell_a_span_touches(at_ms: int, ms: float, bar: str) -> None:
    whole = span("r", ms=1000)
    part = span("s", "r", at_ms=at_ms, ms=ms)
    assert timeline(part, a_trace([whole, part]), width=10) == bar


# -- rendering -----------------------------------------------------------------------------

SCORES = {"otlp-9": {"toxicity": 0.75, "hallucination": 0.25, "injection": 0.0,
                     "answer_relevance": 0.8125, "context_relevance_max": 0.625,
                     "context_relevance_mean": 0.5, "context_source": "trace",
                     "pii": ["email"], "cost_usd": 0.00023}}  # fmt: skip


def rag_trace() -> Trace:
    return a_trace(
        [span("root", ms=1250.0, name="POST /ask", kind="server"),
         span("ret", "root", at_ms=5, ms=400.0, name="retrieve docs", operation="retrieval"),
         span("llm", "root", at_ms=410, ms=800.0, name="chat gpt-4o-mini", operation="chat",
              model="gpt-4o-mini", input_tokens=1200, output_tokens=85, status="ok",
              event_id="otlp-9"),
         span("tool", "root", at_ms=1210, ms=30.0, name="tool [bold]lookup[/]",
              operation="execute_tool", status="error", error_type="TimeoutError"),
         span("lost", "ffffffffffffffff", at_ms=100, ms=50.0, name="late embed",
              operation="embeddings", event_id="otlp-pending")],
        SCORES,
    )  # fmt: skip


def lines(trace: Trace) -> list[str]:
    console = Console(record=True, width=240)
    console.print(render(trace))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_the_header_sums_the_trace_up() -> None:
    assert lines(rag_trace())[0] == (
        f"trace {TRACE}  5 spans in 1.25 s, started 2023-11-14 22:13:20.000 UTC, app bot"
        "  1 error  1 orphan"
    )


def test_the_table_shows_the_tree_with_offsets_durations_tokens_and_status() -> None:
    columns, *rows = lines(rag_trace())[1:]
    assert columns.split() == ["span", "operation", "start", "duration", "timeline", "model",
                               "tokens", "status", "scores"]  # fmt: skip
    # names are text, never markup: the tool's brackets are printed as they came
    assert [row.split("  ")[0] for row in rows] == [
        "POST /ask", "├─ retrieve docs", "├─ chat gpt-4o-mini", "└─ tool [bold]lookup[/]",
        "late embed",
    ]  # fmt: skip
    root, ret, llm, tool, _ = rows
    assert "server" in root and "+0.0 ms    1.25 s" in root
    assert "retrieval" in ret and "+5.0 ms  400.0 ms" in ret
    assert "+410.0 ms  800.0 ms" in llm and "gpt-4o-mini  1200 → 85  ok" in llm
    assert "execute_tool" in tool and "+1.21 s   30.0 ms" in tool
    assert "error: TimeoutError" in tool


def test_an_llm_span_shows_its_scores_and_one_not_yet_stored_says_so() -> None:
    rows = lines(rag_trace())[2:]
    assert rows[2].endswith("tox 0.75  hal 0.25  inj 0.00  rel 0.81/0.62  pii email  $0.00023")
    assert "orphan (parent ffffffff… missing)" in rows[4]
    assert rows[4].endswith("unset                not scored yet")


def test_an_llm_span_without_retrieval_or_price_says_so() -> None:
    scores = {"e": {"toxicity": 0.0, "hallucination": None, "injection": 0.0,
                    "answer_relevance": 0.5, "context_relevance_max": None,
                    "context_source": "none", "pii": [], "cost_usd": None}}  # fmt: skip
    row = lines(a_trace([span("r", event_id="e")], scores))[2]
    assert row.endswith("tox 0.00  inj 0.00  rel 0.50/-  no retrieval  unpriced")


def test_an_error_and_a_flagged_score_are_red() -> None:
    console = Console(record=True, width=240, color_system="standard", force_terminal=True)
    console.print(render(rag_trace()))
    styled = console.export_text(styles=True)
    red = "\x1b[1;31m"
    assert f"{red}error: TimeoutError" in styled
    assert f"{red}tox 0.75" in styled and f"{red}hal" not in styled


def test_a_trace_from_several_apps_gets_an_app_column() -> None:
    spans = [span("r", app="gateway", ms=20.0), span("c", "r", at_ms=5, app="rag-bot")]
    header, columns, *rows = lines(a_trace(spans))
    assert header.endswith("app gateway, rag-bot")
    assert columns.split()[:2] == ["span", "app"]
    assert [cell for cell in rows[1].split("  ") if cell][:2] == ["└─ step c", "rag-bot"]


# -- JSON ----------------------------------------------------------------------------------


def test_the_json_tree_nests_children_with_times_status_and_rounded_scores() -> None:
    found = json.loads(json.dumps(trace_json(rag_trace())))
    assert {k: found[k] for k in ("trace_id", "start", "duration_ms", "spans", "errors",
                                  "orphans")} == {
        "trace_id": TRACE, "start": "2023-11-14T22:13:20.000000Z", "duration_ms": 1250.0,
        "spans": 5, "errors": 1, "orphans": 1,
    }  # fmt: skip
    root, lost = found["tree"]
    assert [c["span_id"] for c in root["children"]] == ["ret", "llm", "tool"]
    llm = root["children"][1]
    assert {k: llm[k] for k in ("parent_span_id", "start", "offset_ms", "duration_ms", "model",
                                "input_tokens", "output_tokens", "status", "orphan")} == {
        "parent_span_id": "root", "start": "2023-11-14T22:13:20.410000Z", "offset_ms": 410.0,
        "duration_ms": 800.0, "model": "gpt-4o-mini", "input_tokens": 1200,
        "output_tokens": 85, "status": "ok", "orphan": False,
    }  # fmt: skip
    assert llm["scores"]["toxicity"] == 0.75 and llm["scores"]["cost_usd"] == 0.00023
    assert root["children"][2]["error_type"] == "TimeoutError"
    assert (lost["orphan"], lost["parent_span_id"], lost["scores"]) == (
        True, "ffffffffffffffff", None,
    )  # fmt: skip


def test_float32_scores_come_out_at_four_places_and_costs_as_stored() -> None:
    as_float32 = 0.10000000149011612  # 0.1 stored as Float32 and read back
    scores = {"e": {"toxicity": as_float32, "hallucination": None, "cost_usd": 0.000123456}}
    found = trace_json(a_trace([span("r", event_id="e")], scores))
    assert found["tree"][0]["scores"] == {"toxicity": 0.1, "hallucination": None,
                                          "cost_usd": 0.000123456}  # fmt: skip


def test_the_command_prints_the_json_tree(monkeypatch) -> None:
    storage = FakeStorage(spans=[span_row("r"), span_row("c", "r", start_us=T0 + 1000)],
                          scores=[])  # fmt: skip
    monkeypatch.setattr(cli_trace, "rows_of", lambda settings: storage)
    result = CliRunner().invoke(main, ["trace", TRACE, "--format", "json"])
    assert result.exit_code == 0, result.output
    tree = json.loads(result.output)["tree"]
    assert [(n["span_id"], [c["span_id"] for c in n["children"]]) for n in tree] == [("r", ["c"])]
