"""Rows are filled by keyword and written in their columns' order."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest

from storage.rows import EMBEDDING_COLUMNS, EVENT_COLUMNS, EmbeddingRow, EventRow

TS = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_row_iterates_over_its_values_in_column_order() -> None:
    row = EmbeddingRow(event_id="e", ts=TS, app="a", prompt_version="v1", kind="input",
                       model="m", vector=[0.5])  # fmt: skip
    assert dict(zip(EMBEDDING_COLUMNS, row, strict=True)) == {
        "event_id": "e", "ts": TS, "app": "a", "prompt_version": "v1", "kind": "input",
        "model": "m", "vector": [0.5],
    }  # fmt: skip


def test_a_row_cannot_be_filled_by_position_or_changed() -> None:
    with pytest.raises(TypeError):
        EmbeddingRow("e", TS, "a", "v1", "input", "m", [0.5])  # type: ignore[misc]
    row = EmbeddingRow(event_id="e", ts=TS, app="a", prompt_version="v1", kind="input",
                       model="m", vector=[0.5])  # fmt: skip
    with pytest.raises(FrozenInstanceError):
        row.app = "b"  # type: ignore[misc]


def test_an_event_row_is_model_scored_unless_it_says_otherwise() -> None:
    values: dict = dict.fromkeys(EVENT_COLUMNS, "")
    del values["sample_rate"]
    row = EventRow(**values | {"toxicity": None, "injection": None})
    assert row.sample_rate == 1.0
    as_columns = dict(zip(EVENT_COLUMNS, row, strict=True))
    assert (as_columns["toxicity"], as_columns["injection"]) == (None, None)
    # the column follows injection_signals and the relevance columns, as migrations
    # 0007 and 0010 add them
    assert EVENT_COLUMNS.index("sample_rate") == EVENT_COLUMNS.index("injection_signals") + 4
