"""``llmpulse score``: the worker's detectors over a JSON Lines file, no broker, no storage.

Used for backfills and offline evaluation. It calls the worker's own
``Scorer.score_events``; each event's scores depend on that event alone, not on
how lines are grouped into batches, so they match what the stream stores.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ingest.schema import Event, Rejection, parse_event
from processors.batch import EventScores, Scorer

__all__ = ["ScoreSummary", "score_lines", "scores_object"]


@dataclass
class ScoreSummary:
    scored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_rejected_line: int | None = None


def scores_object(s: EventScores) -> dict[str, Any]:
    """The ``scores`` key of an output line (a contract: the README documents it)."""
    text = s.text  # ``llmpulse score`` never sheds: every model ran
    assert text.toxicity is not None and text.hallucination is not None
    assert text.injection.score is not None
    return {
        "toxicity": {k: round(float(v), 6) for k, v in text.toxicity.scores.items()},
        "hallucination": None
        if text.hallucination.score is None
        else round(float(text.hallucination.score), 6),
        "unsupported": list(text.hallucination.unsupported),
        "pii": sorted(set(text.pii.input) | set(text.pii.output)),
        "injection": round(float(text.injection.score), 6),
        "cost_usd": s.cost.usd,
    }


def _batches(
    lines: IO[bytes], size: int, summary: ScoreSummary, advance: Callable[[int], None]
) -> Iterator[list[tuple[dict[str, Any], Event]]]:
    batch: list[tuple[dict[str, Any], Event]] = []
    for number, line in enumerate(lines, start=1):
        advance(len(line))
        payload = line.strip()
        if not payload:
            continue
        parsed = parse_event(payload)
        if isinstance(parsed, Rejection):
            summary.rejected[parsed.reason] += 1
            summary.first_rejected_line = summary.first_rejected_line or number
            continue
        batch.append((json.loads(payload), parsed))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_lines(
    scorer: Scorer,
    lines: IO[bytes],
    out: IO[str],
    batch_size: int = 256,
    advance: Callable[[int], None] = lambda _: None,
) -> ScoreSummary:
    """Score every valid line; write it back with a ``scores`` object added."""
    summary = ScoreSummary()
    for batch in _batches(lines, batch_size, summary, advance):
        scores = scorer.score_events([event for _, event in batch])
        for (original, _), s in zip(batch, scores, strict=True):
            original["scores"] = scores_object(s)
            out.write(json.dumps(original, ensure_ascii=False) + "\n")
        summary.scored += len(batch)
    return summary
