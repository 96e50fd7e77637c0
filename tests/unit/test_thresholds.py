"""The flag threshold lives in core.thresholds; SQL that cannot import it must agree."""

from __future__ import annotations

import re
from pathlib import Path

from core.thresholds import FLAG_AT, flagged

VIEWS = Path(__file__).resolve().parents[2] / "storage" / "migrations" / "0006_views.sql"


def test_the_metric_views_flag_scores_at_the_shared_threshold() -> None:
    found = re.findall(r"e\.(toxicity|hallucination|injection) >= ([0-9.]+)", VIEWS.read_text())
    assert {column for column, _ in found} == {"toxicity", "hallucination", "injection"}
    assert {float(value) for _, value in found} == {FLAG_AT}


def test_a_null_score_is_never_flagged() -> None:
    assert (flagged(None), flagged(FLAG_AT), flagged(FLAG_AT - 1e-9)) == (False, True, False)
