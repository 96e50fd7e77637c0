"""Batched, columnar, idempotent inserts.

Each batch carries an ``insert_deduplication_token`` derived from the Kafka
offsets it covers, so retrying the same batch after a timeout stores nothing
twice; a batch replayed after a crash may be cut differently, and then the
ReplacingMergeTree key (app, event_id) collapses the repeats.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

from storage.rows import DEAD_LETTER_COLUMNS, EMBEDDING_COLUMNS, EVENT_COLUMNS, SPAN_COLUMNS

__all__ = ["DEAD_LETTER_COLUMNS", "EMBEDDING_COLUMNS", "EVENT_COLUMNS", "Writer", "batch_token"]


def batch_token(kind: str, offsets: Sequence[tuple[str, int, int]]) -> str:
    """A stable id for a batch: its kind and the (topic, partition, offset) it holds."""
    digest = hashlib.sha256(kind.encode())
    for topic, partition, offset in sorted(offsets):
        digest.update(f"|{topic}:{partition}:{offset}".encode())
    return f"{kind}-{digest.hexdigest()[:32]}"


class Writer:
    """Writes one batch per table per call; callers retry with the same token."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Iterable[Any]], token: str
    ) -> None:
        """One columnar insert of ``rows`` (typed rows or value lists in column order)
        with a dedup token; nothing when there are none."""
        if not rows:
            return
        self.client.insert(
            f"{self.database}.{table}",
            [tuple(row) for row in rows],
            column_names=list(columns),
            settings={"insert_deduplication_token": token},
        )

    def write_events(self, rows: Sequence[Iterable[Any]], token: str) -> None:
        self.insert("llm_events", EVENT_COLUMNS, rows, token)

    def write_embeddings(self, rows: Sequence[Iterable[Any]], token: str) -> None:
        self.insert("llm_embeddings", EMBEDDING_COLUMNS, rows, token)

    def write_dead_letters(self, rows: Sequence[Iterable[Any]], token: str) -> None:
        self.insert("dead_letters", DEAD_LETTER_COLUMNS, rows, token)

    def write_spans(self, rows: Sequence[Iterable[Any]], token: str) -> None:
        self.insert("llm_spans", SPAN_COLUMNS, rows, token)
