"""Bootstrap 95 % intervals for figures measured on small hand-written dev sets.

A dev set of 100 rows gives a figure that moves by several points from one sample of
traffic to the next, so every dev-set figure is reported with the percentile interval
of 2,000 resamples of its rows (seeded: the same file gives the same interval).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["bootstrap"]

T = TypeVar("T")


def bootstrap(
    rows: Sequence[T],
    statistic: Callable[[Sequence[T]], float | None],
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The statistic on ``rows`` and its 2.5-97.5 percentile interval over resamples."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    values = []
    for _ in range(resamples):
        value = statistic([rows[i] for i in rng.integers(0, n, n)])
        if value is not None:
            values.append(value)
    point = statistic(rows)
    low, high = np.percentile(values, [2.5, 97.5]) if values else (None, None)
    return {
        "value": None if point is None else round(point, 4),
        "ci95": [
            None if low is None else round(float(low), 4),
            None if high is None else round(float(high), 4),
        ],
        "n": n,
    }
