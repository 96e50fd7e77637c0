"""Batched, columnar, idempotent inserts.

Each batch carries an ``insert_deduplication_token`` derived from the Kafka
offsets it covers, so retrying the same batch after a timeout stores nothing
twice; a batch replayed after a crash may be cut differently, and then the
ReplacingMergeTree key (app, event_id) collapses the repeats.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client

__all__ = ["DEAD_LETTER_COLUMNS", "EMBEDDING_COLUMNS", "EVENT_COLUMNS", "Writer", "batch_token"]

EVENT_COLUMNS = (
    "event_id", "ts", "app", "environment", "provider", "model", "prompt_id",
    "prompt_version", "variant", "status", "error_type", "system", "input", "output",
    "context", "input_tokens", "output_tokens", "cached_tokens", "latency_ms", "ttft_ms",
    "generation_ms", "output_tokens_per_s", "cost_usd", "cost_source", "price_version",
    "toxicity", "toxicity_scores", "toxicity_model", "hallucination", "unsupported",
    "hallucination_method", "pii_input", "pii_output", "injection", "injection_signals",
    "redaction", "embedding_model", "user_id", "session_id", "trace_id", "span_id",
    "parent_span_id", "tags", "extra",
    "kafka_partition", "kafka_offset",
)  # fmt: skip

EMBEDDING_COLUMNS = ("event_id", "ts", "app", "prompt_version", "kind", "model", "vector")

DEAD_LETTER_COLUMNS = ("topic", "partition", "offset", "field", "reason", "payload", "payload_size")


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
        self, table: str, columns: Sequence[str], rows: list[Sequence[Any]], token: str
    ) -> None:
        """One columnar insert of ``rows`` with a dedup token; nothing when there are none."""
        if not rows:
            return
        self.client.insert(
            f"{self.database}.{table}",
            rows,
            column_names=list(columns),
            settings={"insert_deduplication_token": token},
        )

    def write_events(self, rows: list[Sequence[Any]], token: str) -> None:
        self.insert("llm_events", EVENT_COLUMNS, rows, token)

    def write_embeddings(self, rows: list[Sequence[Any]], token: str) -> None:
        self.insert("llm_embeddings", EMBEDDING_COLUMNS, rows, token)

    def write_dead_letters(self, rows: list[Sequence[Any]], token: str) -> None:
        self.insert("dead_letters", DEAD_LETTER_COLUMNS, rows, token)
