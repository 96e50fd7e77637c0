"""docs/event-schema.md against the migrations: every column of ``llm_spans``, every
``llm_events`` column that migration 0010 adds and every column of the view
``llm_trace_steps`` is documented, so a column added to the DDL cannot go unexplained."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "event-schema.md"
MIGRATIONS = ROOT / "storage" / "migrations"


def section(title: str) -> str:
    text = DOC.read_text()
    assert f"## {title}\n" in text, f"no section {title!r} in {DOC.name}"
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def undocumented(columns: list[str], text: str) -> list[str]:
    return [c for c in columns if f"`{c}`" not in text]


def spans_columns() -> list[str]:
    ddl = (MIGRATIONS / "0010_otlp.sql").read_text()
    body = ddl.split("llm_spans\n(", 1)[1].split("\n)", 1)[0]
    return re.findall(r"^\s+(\w+)\s+\w", body, re.M)


def added_event_columns() -> list[str]:
    ddl = (MIGRATIONS / "0010_otlp.sql").read_text()
    return re.findall(r"ADD COLUMN IF NOT EXISTS (\w+)", ddl)


def trace_steps_columns() -> list[str]:
    ddl = (MIGRATIONS / "0012_trace_steps.sql").read_text()
    select = ddl.split("CREATE OR REPLACE VIEW", 1)[1].split("FROM", 1)[0]
    return re.findall(r"\bAS (\w+),?\s*$", select, re.M)


def test_the_columns_found_in_the_ddl_are_the_ones_expected() -> None:
    # the readers above find columns, not nothing: a changed DDL layout fails here
    assert spans_columns()[:3] == ["trace_id", "span_id", "parent_span_id"]
    assert "cache_write_tokens" in added_event_columns()
    assert trace_steps_columns()[:2] == ["hour", "app"]


def test_every_llm_spans_column_is_in_its_table() -> None:
    assert undocumented(spans_columns(), section("OpenTelemetry spans (table `llm_spans`)")) == []


def test_every_llm_events_column_of_migration_0010_is_documented() -> None:
    text = section("What OTLP and relevance add to `llm_events`")
    assert undocumented(added_event_columns(), text) == []


def test_every_llm_trace_steps_column_is_documented() -> None:
    assert undocumented(trace_steps_columns(), section("Analyst views")) == []
