"""Where a score counts as flagged: one place for the rates, reports, compare and alerts.

Every probability-like score (toxicity, hallucination, injection) is calibrated so
that 0.5 reads as even odds on the realistic dev sets in ``bench/devsets``, and
is flagged from there on. Alert rules may set their own ``score_threshold``; this
is its default. See docs/detectors.md for what each score's 0.5 means in practice.
"""

from __future__ import annotations

__all__ = ["FLAG_AT", "flagged"]

FLAG_AT = 0.5


def flagged(score: float | None, at: float = FLAG_AT) -> bool:
    """Whether ``score`` is flagged; a NULL score (not applicable) never is."""
    return score is not None and score >= at
