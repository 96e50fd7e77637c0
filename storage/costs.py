"""Backfill of stored costs after the price table changes.

Rows are rewritten, not mutated: the new row has a later ``ingested_at`` and
replaces the old one in the ReplacingMergeTree. App-reported costs are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

from core.sql import quote
from storage.writer import EVENT_COLUMNS

__all__ = ["RecomputeSummary", "recompute_costs"]

CHUNK = 20_000


class CostTable(Protocol):
    version: str

    def cost(self, model: str, on: date, input_tokens: Any, output_tokens: Any,
             cached_tokens: Any = None) -> Any: ...  # fmt: skip


@dataclass(frozen=True)
class RecomputeSummary:
    rows: int
    changed: int
    unknown: int


def recompute_costs(
    client: Client,
    database: str,
    table: CostTable,
    since: date,
    progress: Callable[[int, int], None] | None = None,
) -> RecomputeSummary:
    where = f"ts >= toDateTime64('{since.isoformat()}', 3, 'UTC') AND cost_source != 'app'"
    total = int(client.command(f"SELECT count() FROM {database}.llm_events FINAL WHERE {where}"))
    cols = ", ".join(EVENT_COLUMNS)
    idx = {c: i for i, c in enumerate(EVENT_COLUMNS)}
    done = changed = unknown = 0
    last: tuple[str, str] | None = None
    while True:
        after = (
            "" if last is None else f" AND (app, event_id) > ({quote(last[0])}, {quote(last[1])})"
        )
        rows = client.query(
            f"SELECT {cols} FROM {database}.llm_events FINAL WHERE {where}{after} "
            f"ORDER BY app, event_id LIMIT {CHUNK}"
        ).result_rows
        if not rows:
            break
        rewritten = []
        for row in rows:
            new = list(row)
            cost = table.cost(
                row[idx["model"]], row[idx["ts"]].date(), row[idx["input_tokens"]],
                row[idx["output_tokens"]], row[idx["cached_tokens"]],
            )  # fmt: skip
            if cost.usd is None:
                unknown += 1
            if cost.usd != row[idx["cost_usd"]]:
                changed += 1
            new[idx["cost_usd"]] = cost.usd
            new[idx["cost_source"]] = cost.source
            new[idx["price_version"]] = table.version if cost.source == "price_table" else ""
            rewritten.append(new)
        client.insert(f"{database}.llm_events", rewritten, column_names=list(EVENT_COLUMNS))
        done += len(rows)
        last = (rows[-1][idx["app"]], rows[-1][idx["event_id"]])
        if progress:
            progress(done, total)
    return RecomputeSummary(done, changed, unknown)
