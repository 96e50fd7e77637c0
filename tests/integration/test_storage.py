"""Storage on the real ClickHouse engine (chdb, in this process, one directory)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detectors.cost import PriceTable
from storage.costs import recompute_costs
from storage.engine import Engine
from storage.migrations import applied_versions, available, migrate
from storage.writer import EVENT_COLUMNS, Writer

pytestmark = pytest.mark.integration
DB = "llmpulse_test"
# Rows are a day old whatever today is: a fixed date would age past the tables' TTL.
TS = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    # chdb allows one engine directory per process: every test here shares it.
    path: Path = tmp_path_factory.mktemp("chdb")
    with Engine(f"chdb://{path}", DB) as e:
        e.call(migrate, e.client, DB, ttl_days=90)
        yield e


def row(event_id: str, model: str = "gpt-4o", tokens: int = 1_000_000, **over) -> list:
    values = dict.fromkeys(EVENT_COLUMNS, "")
    values.update(
        event_id=event_id, ts=TS, app="a", model=model,
        context=[], input_tokens=tokens, output_tokens=0, cached_tokens=0, cache_write_tokens=None,
        reasoning_tokens=None, answer_relevance=None, context_relevance_max=None,
        context_relevance_mean=None, latency_ms=None,
        ttft_ms=None, generation_ms=None, output_tokens_per_s=None, cost_usd=0.0,
        cost_source="price_table", tags={}, kafka_partition=0, kafka_offset=0, envelope_line=0,
        toxicity=0.0, toxicity_scores={}, hallucination=None, unsupported=[], pii_input=[],
        pii_output=[], injection=0.0, injection_signals=[], sample_rate=1.0,
    )  # fmt: skip
    values.update(over)
    return [values[c] for c in EVENT_COLUMNS]


def count(engine: Engine, where: str, final: bool = True) -> int:
    sql = f"SELECT count() FROM {DB}.llm_events {'FINAL' if final else ''} WHERE {where}"
    return int(engine.call(engine.client.command, sql))


def test_migrations_are_recorded_and_idempotent(engine: Engine) -> None:
    assert engine.call(migrate, engine.client, DB, ttl_days=90) == []
    assert engine.call(applied_versions, engine.client, DB) == {m.version for m in available()}


def test_retry_with_the_same_token_stores_nothing_twice(engine: Engine) -> None:
    writer = Writer(engine.client, DB)
    rows = [row(f"tok-{i}") for i in range(50)]
    engine.call(writer.write_events, rows, "events-abc")
    engine.call(writer.write_events, rows, "events-abc")
    assert count(engine, "event_id LIKE 'tok-%'", final=False) == 50


def test_a_replayed_event_collapses_to_one_row(engine: Engine) -> None:
    writer = Writer(engine.client, DB)
    engine.call(writer.write_events, [row("rep-1", kafka_offset=1)], "t1")
    engine.call(writer.write_events, [row("rep-1", kafka_offset=9)], "t2")
    assert count(engine, "event_id = 'rep-1'", final=False) == 2
    assert count(engine, "event_id = 'rep-1'") == 1


def test_retention_setting_changes_the_table_ttl(engine: Engine) -> None:
    engine.call(migrate, engine.client, DB, ttl_days=30)
    ddl = engine.call(engine.client.command,
                      f"SELECT create_table_query FROM system.tables WHERE database='{DB}' "
                      "AND name='llm_events'")  # fmt: skip
    assert "toIntervalDay(30)" in ddl
    engine.call(migrate, engine.client, DB, ttl_days=90)


def test_event_rows_are_the_tables_columns_in_order(engine: Engine) -> None:
    columns = engine.call(engine.client.query,
        f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = 'llm_events' "
        "ORDER BY position").result_rows  # fmt: skip
    assert [c for (c,) in columns if c != "ingested_at"] == list(EVENT_COLUMNS)


def test_an_event_not_model_scored_keeps_null_scores_and_its_sample_rate(engine: Engine) -> None:
    writer = Writer(engine.client, DB)
    shed = row("shed-1", toxicity=None, injection=None, injection_signals=["role_play"],
               sample_rate=0.25)  # fmt: skip
    engine.call(writer.write_events, [shed, row("kept-1")], "shed")
    sql = (
        f"SELECT event_id, toxicity, injection, injection_signals, sample_rate "
        f"FROM {DB}.llm_events FINAL WHERE event_id IN ('shed-1', 'kept-1') ORDER BY event_id"
    )
    assert engine.call(engine.client.query, sql).result_rows == [
        ("kept-1", 0.0, 0.0, [], 1.0), ("shed-1", None, None, ["role_play"], 0.25),
    ]  # fmt: skip
    # rewriting costs reads and writes whole rows: the shed row stays shed
    no_prices = PriceTable.parse({"version": "v", "models": []})
    engine.call(recompute_costs, engine.client, DB, no_prices, (TS - timedelta(days=1)).date())
    assert engine.call(engine.client.query, sql).result_rows[1] == (
        "shed-1",
        None,
        None,
        ["role_play"],
        0.25,
    )


def test_costs_recompute_rewrites_table_costs_and_keeps_app_costs(engine: Engine) -> None:
    writer = Writer(engine.client, DB)
    engine.call(writer.write_events, [
        row("rc-1", model="gpt-4o", cost_usd=999.0),
        row("rc-2", model="gpt-4o", cost_usd=7.0, cost_source="app"),
        row("rc-3", model="no-such-model", cost_usd=None, cost_source="unknown_model"),
    ], "rc")  # fmt: skip
    table = PriceTable.parse(
        {
            "version": "new",
            "models": [
                {
                    "model": "gpt-4o",
                    "prices": [
                        {"effective": "2020-01-01", "input": 3.0, "output": 9.0, "source": "test"}
                    ],
                }
            ],
        }
    )
    since = (TS - timedelta(days=30)).date()
    summary = engine.call(recompute_costs, engine.client, DB, table, since)
    costs = dict(engine.call(engine.client.query,
        f"SELECT event_id, cost_usd FROM {DB}.llm_events FINAL WHERE event_id LIKE 'rc-%'"
    ).result_rows)  # fmt: skip
    assert costs == {"rc-1": pytest.approx(3.0), "rc-2": 7.0, "rc-3": None}
    assert summary.unknown >= 1 and summary.changed >= 1
    version = engine.call(
        engine.client.command,
        f"SELECT price_version FROM {DB}.llm_events FINAL WHERE event_id='rc-1'",
    )
    assert version == "new"
