"""From raw Kafka records to storage rows: validate, score, split off dead letters.

Pure and synchronous: no Kafka, no ClickHouse, so it is unit-tested on plain
bytes and reused by the benchmark. Each detector runs once over the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.cost import CostDetector, PriceTable
from detectors.latency import LatencyDetector
from ingest.schema import Event, Rejection, parse_event

__all__ = ["DEAD_LETTER_PAYLOAD_BYTES", "Record", "ScoredBatch", "Scorer"]

# Oversize payloads are kept in part: enough to debug, bounded in storage.
DEAD_LETTER_PAYLOAD_BYTES = 65_536


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class ScoredBatch:
    rows: list[list[Any]] = field(default_factory=list)
    dead_letters: list[list[Any]] = field(default_factory=list)
    rejected: list[tuple[Record, Rejection]] = field(default_factory=list)
    offsets: list[tuple[str, int, int]] = field(default_factory=list)


class Scorer:
    """Turns a micro-batch of records into ``llm_events`` and ``dead_letters`` rows."""

    def __init__(self, prices: PriceTable) -> None:
        self.cost = CostDetector(prices)
        self.latency = LatencyDetector()

    @property
    def price_version(self) -> str:
        return self.cost.table.version

    def score(self, records: Sequence[Record]) -> ScoredBatch:
        batch = ScoredBatch(offsets=[(r.topic, r.partition, r.offset) for r in records])
        events: list[tuple[Record, Event]] = []
        for record in records:
            parsed = parse_event(record.value)
            if isinstance(parsed, Rejection):
                batch.rejected.append((record, parsed))
                batch.dead_letters.append(dead_letter_row(record, parsed))
            else:
                events.append((record, parsed))
        if not events:
            return batch

        evs = [e for _, e in events]
        usage = [e.usage for e in evs]
        inp = [u.input_tokens if u else None for u in usage]
        out = [u.output_tokens if u else None for u in usage]
        cached = [u.cached_tokens if u else None for u in usage]
        costs = self.cost.score(
            [e.model for e in evs], [e.ts.date() for e in evs], inp, out, cached,
            [e.cost_usd for e in evs],
        )  # fmt: skip
        latencies = self.latency.score([e.latency_ms for e in evs], [e.ttft_ms for e in evs], out)
        version = self.price_version
        for i, (record, e) in enumerate(events):
            cost, lat = costs[i], latencies[i]
            batch.rows.append([
                e.event_id, e.ts, e.app, e.environment or "", e.provider or "", e.model,
                e.prompt_id or "", e.prompt_version or "", e.variant or "", e.status,
                e.error_type or "", e.system or "", e.input, e.output, e.context or [],
                inp[i], out[i], cached[i], e.latency_ms, e.ttft_ms,
                lat.generation_ms, lat.output_tokens_per_s,
                cost.usd, cost.source, version if cost.source == "price_table" else "",
                e.user_id or "", e.session_id or "", e.trace_id or "", e.span_id or "",
                e.parent_span_id or "", e.tags or {},
                json.dumps(e.extra, ensure_ascii=False) if e.model_extra else "",
                record.partition, record.offset,
            ])  # fmt: skip
        return batch


def dead_letter_row(record: Record, rejection: Rejection) -> list[Any]:
    return [
        record.topic,
        record.partition,
        record.offset,
        rejection.field,
        rejection.reason,
        record.value[:DEAD_LETTER_PAYLOAD_BYTES],
        len(record.value),
    ]
