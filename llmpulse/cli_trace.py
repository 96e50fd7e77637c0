"""``llmpulse trace``: one trace's span tree, with the scores of its LLM spans.

Failures of an LLM app often start in a retrieval or a tool step, not in the model: the
tree shows every stored span of the request path in order, with its timing and status,
beside the scores the worker gave the LLM calls in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from core.errors import LlmpulseError
from llmpulse.cli_common import load_cli_settings
from llmpulse.query import rows_of
from storage.engine import StorageError

__all__ = [
    "Node",
    "Span",
    "Trace",
    "UnknownTrace",
    "build_tree",
    "load_trace",
    "parse_trace_id",
    "render",
    "timeline",
    "trace",
    "trace_json",
]

out = Console()

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLAGGED = 0.5  # a toxicity, hallucination or injection score at or above it is shown red
TIMELINE_WIDTH = 20
_FLOAT32 = {"toxicity", "hallucination", "injection", "answer_relevance",
            "context_relevance_max", "context_relevance_mean"}  # fmt: skip

Query = Callable[[str], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """The ``llm_spans`` columns the tree shows; the start in integer microseconds, so
    offsets are exact."""

    span_id: str
    parent_span_id: str = ""
    start_us: int
    duration_ms: float
    name: str
    kind: str = ""
    operation: str = ""
    app: str = ""
    model: str = ""
    status: str = "unset"
    status_message: str = ""
    error_type: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    event_id: str = ""

    @property
    def end_us(self) -> int:
        return self.start_us + round(self.duration_ms * 1000)


@dataclass(slots=True)
class Node:
    """A span in the tree. ``orphan``: it has a parent id but hangs at the top level,
    because that parent never arrived (or the parent links loop)."""

    span: Span
    children: list[Node] = field(default_factory=list)
    orphan: bool = False


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace as stored: its tree, its extent, and the scores of its LLM spans by
    event_id (an LLM span whose event is not stored yet has none)."""

    trace_id: str
    roots: list[Node]
    start_us: int
    end_us: int
    scores: dict[str, dict[str, Any]]

    @property
    def duration_ms(self) -> float:
        return (self.end_us - self.start_us) / 1000

    def walk(self) -> Iterator[tuple[Node, str, str]]:
        """Each node in display order, with the tree guide drawn before its name and the
        guide its own children continue from."""
        stack: list[tuple[Node, str, str]] = [(n, "", "") for n in reversed(self.roots)]
        while stack:
            node, guide, indent = stack.pop()
            yield node, guide, indent
            last = len(node.children) - 1
            for i, child in reversed(list(enumerate(node.children))):
                child_guide = indent + ("└─ " if i == last else "├─ ")
                child_indent = indent + ("   " if i == last else "│  ")
                stack.append((child, child_guide, child_indent))


def parse_trace_id(text: str) -> str:
    """The id as stored (32 lowercase hex digits); the W3C all-zero id is invalid."""
    candidate = text.strip()
    if not _TRACE_ID.fullmatch(candidate) or not candidate.strip("0"):
        raise click.BadParameter(
            f"{text!r} is not a trace id: expected 32 hex digits, not all zero "
            "(e.g. 4bf92f3577b34da6a3ce929d0e0e4736)",
            param_hint="TRACE_ID",
        )
    return candidate.lower()


def build_tree(spans: Iterable[Span]) -> list[Node]:
    """Parents above children, siblings and top-level nodes by start time (then span id).

    A span whose parent is missing goes to the top level, marked orphan, so nothing
    stored is hidden; so does one caught in a parent loop (broken instrumentation), the
    earliest of the loop first.
    """
    nodes = {s.span_id: Node(s) for s in spans}
    order = sorted(nodes.values(), key=_start_key)
    top: list[Node] = []
    for node in order:
        parent = node.span.parent_span_id
        if not parent:
            top.append(node)
        elif parent == node.span.span_id or parent not in nodes:
            node.orphan = True
            top.append(node)
        else:
            nodes[parent].children.append(node)  # in start order, as `order` is
    reached = _reachable(top)
    for node in order:  # what is left hangs in a loop: cut it at its earliest span
        if node.span.span_id in reached:
            continue
        nodes[node.span.parent_span_id].children.remove(node)
        node.orphan = True
        top.append(node)
        reached |= _reachable([node])
    return sorted(top, key=_start_key)


def _start_key(node: Node) -> tuple[int, str]:
    return node.span.start_us, node.span.span_id


def _reachable(nodes: list[Node]) -> set[str]:
    seen: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        seen.add(node.span.span_id)
        stack.extend(node.children)
    return seen


_SPANS_SQL = """
SELECT span_id, parent_span_id, toUnixTimestamp64Micro(ts) AS start_us, duration_ms, name,
       kind, operation, app, model, status, status_message, error_type, input_tokens,
       output_tokens, event_id
FROM llm_spans FINAL WHERE trace_id = '{trace_id}'
"""
_SCORES_SQL = """
SELECT event_id, toxicity, hallucination, injection, arrayConcat(pii_input, pii_output) AS pii,
       cost_usd, answer_relevance, context_relevance_max, context_relevance_mean,
       context_source
FROM llm_events FINAL
WHERE event_id IN (SELECT event_id FROM llm_spans FINAL
                   WHERE trace_id = '{trace_id}' AND event_id != '')
"""
_EVENTS_SQL = "SELECT count() AS n FROM llm_events FINAL WHERE trace_id = '{trace_id}'"


class UnknownTrace(LlmpulseError, LookupError):
    """No span of the trace is stored."""


def load_trace(query: Query, trace_id: str) -> Trace:
    """The stored spans of ``trace_id`` (already validated) as a tree, with scores."""
    spans = [Span(**row) for row in query(_SPANS_SQL.format(trace_id=trace_id))]
    if not spans:
        events = int(query(_EVENTS_SQL.format(trace_id=trace_id))[0]["n"])
        hint = (
            f"; {events} llm_events rows carry this trace id (events sent through the SDK "
            "have no spans: query them with llmpulse sql)"
            if events
            else "; spans are stored once the worker has consumed their export"
        )
        raise UnknownTrace(f"no spans of trace {trace_id} are stored{hint}")
    scores: dict[str, dict[str, Any]] = {}
    for row in query(_SCORES_SQL.format(trace_id=trace_id)):
        event_id = row.pop("event_id")
        scores[event_id] = row
    return Trace(
        trace_id=trace_id,
        roots=build_tree(spans),
        start_us=min(s.start_us for s in spans),
        end_us=max(s.end_us for s in spans),
        scores=scores,
    )


def timeline(span: Span, trace: Trace, width: int = TIMELINE_WIDTH) -> str:
    """Where the span lies in the trace, as a bar of ``width`` cells: every cell the
    span touches is drawn, at least one (integer arithmetic: the same bar anywhere)."""
    total = trace.end_us - trace.start_us
    if total <= 0:
        return "━" * width
    first = (span.start_us - trace.start_us) * width // total
    last = -(-(span.end_us - trace.start_us) * width // total)  # ceiling
    first = min(first, width - 1)
    last = max(last, first + 1)
    return " " * first + "━" * (last - first) + " " * (width - last)


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if abs(value) < 1000 else f"{value / 1000:.2f} s"


def _tokens(span: Span) -> str:
    if span.input_tokens is None and span.output_tokens is None:
        return ""
    pair = ("-" if n is None else str(n) for n in (span.input_tokens, span.output_tokens))
    return " → ".join(pair)


def _status(span: Span) -> Text:
    if span.status != "error":
        return Text(span.status, style="dim" if span.status == "unset" else "green")
    detail = span.error_type or span.status_message
    return Text(f"error: {detail}" if detail else "error", style="bold red")


def _scores(span: Span, trace: Trace) -> Text:
    if not span.event_id:
        return Text("")
    found = trace.scores.get(span.event_id)
    if found is None:
        return Text("not scored yet", style="dim")
    text = Text()
    for label, key in (("tox", "toxicity"), ("hal", "hallucination"), ("inj", "injection")):
        value = found.get(key)
        if value is not None:
            text.append(f"{label} {value:.2f}", style="bold red" if value >= _FLAGGED else "")
            text.append("  ")
    relevance = [found.get("answer_relevance"), found.get("context_relevance_max")]
    if any(v is not None for v in relevance):
        answer, context = ("-" if v is None else f"{v:.2f}" for v in relevance)
        text.append(f"rel {answer}/{context}  ")
    if found.get("context_source") == "none":
        text.append("no retrieval  ", style="yellow")
    if found.get("pii"):
        text.append(f"pii {','.join(sorted(set(found['pii'])))}  ", style="yellow")
    cost = found.get("cost_usd")
    text.append("unpriced" if cost is None else "$" + _usd(cost))
    return text


def _usd(cost: float) -> str:
    """Calls cost fractions of a cent: six places, trailing zeros dropped."""
    return f"{cost:.6f}".rstrip("0").rstrip(".")


def render(trace: Trace) -> Group:
    """A header line and the span table; text is never read as rich markup."""
    spans = [node for node, _, _ in trace.walk()]
    errors = sum(n.span.status == "error" for n in spans)
    orphans = sum(n.orphan for n in spans)
    apps = sorted({n.span.app for n in spans if n.span.app})
    started = _EPOCH + timedelta(microseconds=trace.start_us)
    header = Text(f"trace {trace.trace_id}  ", style="bold")
    header.append(f"{len(spans)} span{'s' * (len(spans) != 1)} in {_ms(trace.duration_ms)}, ")
    header.append(f"started {started:%Y-%m-%d %H:%M:%S}.{started.microsecond // 1000:03d} UTC")
    if apps:
        header.append(f", app {', '.join(apps)}")
    if errors:
        header.append(f"  {errors} error{'s' * (errors != 1)}", style="bold red")
    if orphans:
        header.append(f"  {orphans} orphan{'s' * (orphans != 1)}", style="yellow")

    table = Table(header_style="bold", box=None, pad_edge=False)
    table.add_column("span", no_wrap=True)
    if len(apps) > 1:
        table.add_column("app")
    for name in ("operation", "start", "duration"):
        table.add_column(name, justify="left" if name == "operation" else "right")
    table.add_column("timeline", no_wrap=True)
    for name in ("model", "tokens", "status", "scores"):
        table.add_column(name, justify="right" if name == "tokens" else "left")
    for node, guide, _ in trace.walk():
        span = node.span
        label = Text(guide, style="dim")
        label.append(span.name or "(no name)", style="bold red" if span.status == "error" else "")
        if node.orphan:
            label.append(f"  orphan (parent {span.parent_span_id[:8]}… missing)", style="yellow")
        cells: list[Text] = [label]
        if len(apps) > 1:
            cells.append(Text(span.app))
        cells += [
            Text(span.operation) if span.operation else Text(span.kind, style="dim"),
            Text(f"+{_ms((span.start_us - trace.start_us) / 1000)}"),
            Text(_ms(span.duration_ms)),
            Text(timeline(span, trace), style="red" if span.status == "error" else "cyan"),
            Text(span.model),
            Text(_tokens(span)),
            _status(span),
            _scores(span, trace),
        ]
        table.add_row(*cells)
    return Group(header, table)


def trace_json(trace: Trace) -> dict[str, Any]:
    """The tree as plain JSON values: times in ISO 8601 UTC and milliseconds."""
    spans = [node for node, _, _ in trace.walk()]

    def node_json(node: Node) -> dict[str, Any]:
        span = node.span
        scores = trace.scores.get(span.event_id) if span.event_id else None
        return {
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "name": span.name,
            "kind": span.kind,
            "operation": span.operation,
            "app": span.app,
            "model": span.model,
            "start": _iso(span.start_us),
            "offset_ms": (span.start_us - trace.start_us) / 1000,
            "duration_ms": span.duration_ms,
            "status": span.status,
            "status_message": span.status_message,
            "error_type": span.error_type,
            "input_tokens": span.input_tokens,
            "output_tokens": span.output_tokens,
            "event_id": span.event_id,
            "scores": None if scores is None else _rounded(scores),
            "orphan": node.orphan,
            "children": [node_json(child) for child in node.children],
        }

    return {
        "trace_id": trace.trace_id,
        "start": _iso(trace.start_us),
        "duration_ms": trace.duration_ms,
        "spans": len(spans),
        "errors": sum(n.span.status == "error" for n in spans),
        "orphans": sum(n.orphan for n in spans),
        "tree": [node_json(root) for root in trace.roots],
    }


def _iso(us: int) -> str:
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    """The Float32 scores to 4 places: 0.1 rather than 0.10000000149011612."""
    return {k: round(v, 4) if k in _FLOAT32 and v is not None else v for k, v in scores.items()}


@click.command()
@click.argument("trace_id")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json"]))  # fmt: skip
def trace(trace_id: str, fmt: str) -> None:
    """Print the span tree of TRACE_ID (32 hex digits, as in a traceparent header).

    Each span: its offset from the trace's start, duration, operation, model, tokens
    and status; each LLM span: the scores of its llm_events row (tox, hal, inj, rel
    answer/context relevance, cost). Spans whose parent never arrived are listed at the
    top level, marked orphan.
    """
    from clickhouse_connect.driver.exceptions import ClickHouseError

    wanted = parse_trace_id(trace_id)
    settings = load_cli_settings()
    try:
        found = load_trace(rows_of(settings), wanted)
    except (StorageError, ClickHouseError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps(trace_json(found), ensure_ascii=False))
        return
    Console(width=None if out.is_terminal else 240).print(render(found))
