"""The price table: effective dates, cached tokens, unknown models, validation."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from detectors.cost import CostDetector, PriceTable, PriceTableError

TABLE = {
    "version": "t1",
    "models": [
        {
            "model": "m-a",
            "aliases": ["m-a-2024"],
            "prices": [
                {"effective": "2024-01-01", "input": 10, "output": 30, "cached_input": 5,
                 "source": "x"},
                {"effective": "2025-01-01", "input": 2, "output": 8, "cached_input": None,
                 "source": "x"},
            ],
        }
    ],
}  # fmt: skip


@pytest.fixture
def table() -> PriceTable:
    return PriceTable.parse(TABLE)


def test_price_in_force_on_the_event_day_applies(table: PriceTable) -> None:
    assert table.cost("m-a", date(2024, 6, 1), 1_000_000, 0).usd == pytest.approx(10.0)
    assert table.cost("m-a", date(2025, 6, 1), 1_000_000, 0).usd == pytest.approx(2.0)
    assert table.cost("m-a", date(2025, 1, 1), 0, 1_000_000).usd == pytest.approx(8.0)


def test_aliases_and_case_resolve_to_the_same_prices(table: PriceTable) -> None:
    assert table.cost("M-A-2024", date(2024, 6, 1), 100, 100).usd == pytest.approx(
        table.cost("m-a", date(2024, 6, 1), 100, 100).usd
    )


def test_cached_tokens_use_the_cached_price_or_the_input_price(table: PriceTable) -> None:
    # 2024: 600k uncached at 10 + 400k cached at 5 = 6 + 2
    assert table.cost("m-a", date(2024, 6, 1), 1_000_000, 0, 400_000).usd == pytest.approx(8.0)
    # 2025 has no cached price: cached tokens cost the input price
    assert table.cost("m-a", date(2025, 6, 1), 1_000_000, 0, 400_000).usd == pytest.approx(2.0)


def test_unknown_model_costs_null_and_is_counted_and_logged(
    table: PriceTable, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        first = table.cost("mystery", date(2025, 1, 1), 10, 10)
        table.cost("mystery", date(2025, 1, 1), 10, 10)
    assert first.usd is None and first.source == "unknown_model"
    assert table.unknown["mystery"] == 2
    assert sum("mystery" in r.message for r in caplog.records) == 1


def test_missing_usage_is_null_not_zero(table: PriceTable) -> None:
    assert table.cost("m-a", date(2025, 1, 1), None, None).usd is None


def test_app_reported_cost_wins(table: PriceTable) -> None:
    costs = CostDetector(table).score(
        ["m-a", "m-a"], [date(2025, 1, 1)] * 2, [10, 1_000_000], [0, 0], [None, None], [0.5, None]
    )
    assert [(c.usd, c.source) for c in costs] == [(0.5, "app"), (2.0, "price_table")]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"models": "nope"}, "expected a mapping"),
        ({"models": [{"model": "a", "prices": [{"effective": "2024-01-01"}]}]}, "models[0]"),
        ({"models": [{"model": "a", "prices": []}]}, "no prices"),
        ({"models": [{"model": "a", "prices": [{"effective": "2024-01-01", "input": -1,
                                                "output": 1}]}]}, "negative"),
        ({"models": [TABLE["models"][0], TABLE["models"][0]]}, "appears twice"),
    ],
)  # fmt: skip
def test_malformed_tables_are_refused_with_the_place(broken: dict, message: str) -> None:
    with pytest.raises(PriceTableError, match=message.replace("[", r"\[").replace("]", r"\]")):
        PriceTable.parse(broken)


def test_shipped_table_covers_the_major_providers() -> None:
    table = PriceTable.load()
    for model in ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "gemini-2.0-flash",
                  "mistral-large-latest", "llama-3.3-70b-versatile"]:  # fmt: skip
        assert table.lookup(model, date(2025, 9, 1)) is not None, model
    # gpt-4o was repriced in August 2024
    assert table.lookup("gpt-4o", date(2024, 6, 1)).input == 5.0
    assert table.lookup("gpt-4o", date(2024, 9, 1)).input == 2.5


def test_shipped_table_prices_the_dated_names_providers_answer_with() -> None:
    """OTLP spans carry the response model, a dated snapshot: it prices as its alias,
    and a snapshot the table does not list stays unknown (NULL), never $0."""
    table = PriceTable.load()
    day = date(2025, 9, 1)
    dated = table.cost("gpt-4o-mini-2024-07-18", day, 1_000_000, 1_000_000, 500_000)
    assert dated == table.cost("gpt-4o-mini", day, 1_000_000, 1_000_000, 500_000)
    assert dated.usd == pytest.approx(0.5 * 0.15 + 0.5 * 0.075 + 0.60)
    assert table.cost("gpt-4o-2024-08-06", day, 1_000_000, 0).usd == pytest.approx(2.5)
    unlisted = table.cost("gpt-4o-mini-2099-01-01", day, 1_000_000, 1_000_000)
    assert (unlisted.usd, unlisted.source) == (None, "unknown_model")
