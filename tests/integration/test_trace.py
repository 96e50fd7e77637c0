"""`llmpulse trace` and the view llm_trace_steps on the real engine.

A child process stores two traces of a RAG app through the worker's Writer (every span
twice, as a re-sent export would), then the CLI reads them like a user would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.otlp_model import otlp_event_id
from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

RAG = "4bf92f3577b34da6a3ce929d0e0e4736"  # root, retriever, LLM call, failing tool, orphan
SHORT = "0af7651916cd43dd8448eb211c80319c"  # root, two retrievals, LLM call
SDK_ONLY = "5b8efff798038103d269b633813fc60c"  # an SDK event carries it; no span does
# Ten minutes past an hour a day ago: the traces stay in one hour and inside the TTL.
T0 = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(days=1)

SCRIPT = r"""
import json, sys
from datetime import datetime, timedelta
from ingest.otlp_model import otlp_event_id
from storage.engine import Engine
from storage.migrations import migrate
from storage.rows import EventRow, SpanRow
from storage.writer import Writer

t0 = datetime.fromisoformat(json.loads(sys.stdin.read())["t0"])
RAG, SHORT, SDK_ONLY = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c", \
    "5b8efff798038103d269b633813fc60c"

def span(trace, span_id, parent, at_ms, ms, name, operation="", kind="internal", **kw):
    values = dict(trace_id=trace, span_id=span_id, parent_span_id=parent,
                  ts=t0 + timedelta(milliseconds=at_ms), duration_ms=ms, name=name, kind=kind,
                  app="rag-bot", environment="prod", scope="test", operation=operation, model="",
                  status="unset", status_message="", error_type="", input_tokens=None,
                  output_tokens=None, event_id="", attributes="{}")
    return SpanRow(**(values | kw))

def llm(trace, span_id, parent, at_ms, ms):
    return span(trace, span_id, parent, at_ms, ms, "chat gpt-4o-mini", "chat", "client",
                model="gpt-4o-mini", status="ok", input_tokens=1200, output_tokens=85,
                event_id=otlp_event_id(trace, span_id))

def event(event_id, trace, span_id, **scores):
    values = dict(event_id=event_id, ts=t0, app="rag-bot", environment="prod", provider="openai",
                  model="gpt-4o-mini", prompt_id="", prompt_version="", variant="", status="ok",
                  error_type="", system="", input="q", output="a", context=["doc"],
                  context_source="trace", input_tokens=1200, output_tokens=85, cached_tokens=None,
                  latency_ms=300.0, ttft_ms=None, generation_ms=None, output_tokens_per_s=None,
                  cost_usd=0.0001, cost_source="price_table", price_version="test",
                  toxicity=0.0, toxicity_scores={}, toxicity_model="m", hallucination=0.0,
                  unsupported=[], hallucination_method="m", pii_input=[], pii_output=[],
                  injection=0.0, injection_signals=[], redaction="mask", embedding_model="m",
                  user_id="", session_id="", trace_id=trace, span_id=span_id,
                  parent_span_id="", tags={}, extra="", kafka_partition=0, kafka_offset=0)
    return EventRow(**(values | scores))

spans = [
    span(RAG, "a000000000000001", "", 0, 1000.0, "POST /ask", kind="server"),
    span(RAG, "a000000000000002", "a000000000000001", 10, 600.0, "retrieve", "retrieval"),
    llm(RAG, "a000000000000003", "a000000000000001", 620, 300.0),
    span(RAG, "a000000000000004", "a000000000000001", 930, 50.0, "lookup_order", "execute_tool",
         status="error", error_type="TimeoutError"),
    span(RAG, "a000000000000005", "ffffffffffffffff", 5, 20.0, "rerank"),
    span(SHORT, "b000000000000001", "", 0, 500.0, "POST /ask", kind="server"),
    span(SHORT, "b000000000000002", "b000000000000001", 0, 50.0, "retrieve", "retrieval"),
    span(SHORT, "b000000000000003", "b000000000000001", 50, 50.0, "retrieve", "retrieval"),
    llm(SHORT, "b000000000000004", "b000000000000001", 100, 300.0),
]
events = [
    event(otlp_event_id(RAG, "a000000000000003"), RAG, "a000000000000003", toxicity=0.75,
          hallucination=0.25, answer_relevance=0.8125, context_relevance_max=0.625,
          context_relevance_mean=0.5, pii_output=["email"], cost_usd=0.00023),
    event(otlp_event_id(SHORT, "b000000000000004"), SHORT, "b000000000000004"),
    event("sdk-1", SDK_ONLY, "c000000000000001"),
]
with Engine(f"chdb://{sys.argv[1]}", "llmpulse") as engine:
    engine.call(migrate, engine.client, "llmpulse", ttl_days=30)
    writer = Writer(engine.client, "llmpulse")
    engine.call(writer.write_spans, spans, "export-1")
    engine.call(writer.write_spans, spans, "export-2")  # the same export, re-sent
    engine.call(writer.write_events, events, "events-1")
    stored = engine.call(engine.client.command, "SELECT count() FROM llmpulse.llm_spans")
print(json.dumps({"stored": int(stored)}))
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("trace") / "home"
    stored = run_script(SCRIPT, home / "clickhouse", stdin=json.dumps({"t0": T0.isoformat()}))
    assert stored == {"stored": 18}  # both copies are in the table; FINAL reads one
    return home


def llmpulse(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMPULSE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "llmpulse.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def cells_in(row: str, *cells: str) -> bool:
    """The cells appear in this order, side by side, in a printed table row."""
    return re.search(r"\s+".join(re.escape(c) for c in cells), row) is not None


def test_trace_prints_the_span_tree_with_timing_status_and_scores(home: Path) -> None:
    run = llmpulse(home, "trace", RAG.upper())
    assert run.returncode == 0, run.stderr
    header, columns, *rows = [line.rstrip() for line in run.stdout.splitlines()]
    assert header == (
        f"trace {RAG}  5 spans in 1.00 s, started {T0:%Y-%m-%d %H:%M:%S}.000 UTC, app rag-bot"
        "  1 error  1 orphan"
    )
    assert columns.split()[0] == "span"
    # depth first; the orphan, whose parent never arrived, at the top level
    assert [row.split("  ")[0] for row in rows] == [
        "POST /ask", "├─ retrieve", "├─ chat gpt-4o-mini", "└─ lookup_order", "rerank",
    ]  # fmt: skip
    root, retrieve, chat, tool, orphan = rows
    assert cells_in(root, "server", "+0.0 ms", "1.00 s")
    assert cells_in(retrieve, "retrieval", "+10.0 ms", "600.0 ms")
    assert cells_in(chat, "chat", "+620.0 ms", "300.0 ms")
    assert cells_in(chat, "gpt-4o-mini", "1200 → 85", "ok")
    assert chat.endswith("tox 0.75  hal 0.25  inj 0.00  rel 0.81/0.62  pii email  $0.00023")
    assert cells_in(tool, "execute_tool", "+930.0 ms", "50.0 ms")
    assert "error: TimeoutError" in tool
    assert cells_in(orphan, "orphan (parent ffffffff… missing)", "internal", "+5.0 ms", "20.0 ms")


def test_trace_json_is_the_same_tree(home: Path) -> None:
    run = llmpulse(home, "trace", SHORT, "--format", "json")
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert (found["spans"], found["duration_ms"], found["errors"]) == (4, 500.0, 0)
    (root,) = found["tree"]
    assert [(c["name"], c["offset_ms"], c["duration_ms"]) for c in root["children"]] == [
        ("retrieve", 0.0, 50.0), ("retrieve", 50.0, 50.0), ("chat gpt-4o-mini", 100.0, 300.0),
    ]  # fmt: skip
    chat = root["children"][2]
    assert chat["event_id"] == otlp_event_id(SHORT, "b000000000000004")
    assert chat["scores"]["context_source"] == "trace" and chat["scores"]["cost_usd"] == 0.0001


def test_a_trace_without_spans_is_an_error_that_mentions_its_events(home: Path) -> None:
    run = llmpulse(home, "trace", SDK_ONLY)
    assert run.returncode == 1
    assert f"no spans of trace {SDK_ONLY} are stored; 1 llm_events rows" in run.stderr


def test_trace_steps_give_latency_and_trace_share_per_step(home: Path) -> None:
    sql = (
        "SELECT hour, environment, operation, kind, name, spans, traces, errors, error_rate, "
        "duration_p50_ms, duration_max_ms, duration_sum_ms, trace_share "
        "FROM llm_trace_steps WHERE app = 'rag-bot' ORDER BY name"
    )
    run = llmpulse(home, "sql", sql, "--format", "json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert {r["hour"] for r in rows} == {f"{T0:%Y-%m-%d %H}:00:00"}
    assert {r["environment"] for r in rows} == {"prod"}
    steps = {
        r["name"]: (r["operation"], r["kind"], r["spans"], r["traces"], r["errors"],
                    r["error_rate"], r["duration_p50_ms"], r["duration_max_ms"],
                    r["duration_sum_ms"], pytest.approx(r["trace_share"]))
        for r in rows
    }  # fmt: skip
    # shares: RAG's wall time is 1000 ms, SHORT's 500 ms; retrieve is 600 of 1000 in RAG
    # and 50 + 50 of 500 in SHORT, so (0.6 + 0.2) / 2 traces
    assert steps == {
        "POST /ask": ("", "server", 2, 2, 0, 0.0, 1000.0, 1000.0, 1500.0, 1.0),
        "chat gpt-4o-mini": ("chat", "client", 2, 2, 0, 0.0, 300.0, 300.0, 600.0, 0.45),
        "lookup_order": ("execute_tool", "internal", 1, 1, 1, 1.0, 50.0, 50.0, 50.0, 0.05),
        "rerank": ("", "internal", 1, 1, 0, 0.0, 20.0, 20.0, 20.0, 0.02),
        "retrieve": ("retrieval", "internal", 3, 2, 0, 0.0, 50.0, 600.0, 700.0, 0.4),
    }  # fmt: skip
