"""Rows are filled by keyword and written in their columns' order."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest

from storage.rows import EMBEDDING_COLUMNS, EmbeddingRow

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
