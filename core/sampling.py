"""Model-score rates under load shedding: one estimator for views, alerts, compare, report.

When the worker falls behind, the models score a uniform Bernoulli sample of each batch
with probability ``sample_rate`` (stored on every row); the other rows keep NULL model
scores. Within one batch the flagged share of the scored rows is unbiased, but a window
that spans batches scored at different rates is not: the first minutes scored in full
and the next at 20 % give the fully scored minutes five times their weight. So a
model-score rate weights each scored row by 1 / sample_rate, the number of events it
stands for (the ratio, or Hájek, estimator)::

    rate = sumIf(1 / sample_rate, flagged) / sumIf(1 / sample_rate, score IS NOT NULL)

With one sample rate in the window this is the plain flagged / scored, and a row scored
at sample_rate 1 (the worker keeping up) weighs 1. A scored row never has sample_rate 0
(the cheap path scores nothing and stores 0), but the weight is floored at
``MIN_SAMPLE_RATE`` so no expression divides by zero. The number of scored rows stays
what a value rests on: counts, ``min_events`` and the tests' sample sizes use it.

A median of a model score (relevance) is weighted the same way: the weighted median,
which with one sample rate is the plain lower median.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "MIN_SAMPLE_RATE",
    "weight",
    "weight_sql",
    "weighted_hits_sql",
    "weighted_median_sql",
    "weighted_rate",
    "weighted_rate_sql",
]

MIN_SAMPLE_RATE = 1e-6  # floor of the divisor: a scored row weighs at most a million events


def weight_sql(sample_rate: str = "sample_rate") -> str:
    """The SQL weight of a row: 1 / its sample rate (floored)."""
    return f"1 / greatest({sample_rate}, {MIN_SAMPLE_RATE!r})"


def weighted_rate_sql(flag: str, score: str, sample_rate: str = "sample_rate") -> str:
    """The weighted share of the rows carrying ``score`` that ``flag`` flags; NULL where
    no row carries it. ``flag`` must be false where ``score`` is NULL."""
    w = weight_sql(sample_rate)
    return f"if(count({score}) = 0, NULL, sumIf({w}, {flag}) / sumIf({w}, {score} IS NOT NULL))"


def weighted_hits_sql(flag: str, score: str, sample_rate: str = "sample_rate") -> str:
    """The weighted rate times the scored rows: the flagged rows a test on (hits, scored)
    reads (0 where nothing was scored). Written so that rows of weight 1 give exactly
    ``countIf(flag)``."""
    w = weight_sql(sample_rate)
    return (
        f"if(count({score}) = 0, 0, "
        f"sumIf({w}, {flag}) * count({score}) / sumIf({w}, {score} IS NOT NULL))"
    )


def weighted_median_sql(score: str, sample_rate: str = "sample_rate") -> str:
    """The median of ``score`` over the rows carrying it, each weighing 1 / sample_rate;
    NULL where no row carries it. ``quantileExactWeighted`` takes whole weights, so the
    weight is counted in thousandths (a relative error below 1e-3 for any sample rate);
    with one sample rate it is the lower median, what ``quantileExactLow(0.5)`` gives.
    Migration 0011's views spell out the same expression."""
    whole = f"toUInt64(round(1000 / greatest({sample_rate}, {MIN_SAMPLE_RATE!r})))"
    return f"if(count({score}) = 0, NULL, quantileExactWeighted(0.5)({score}, {whole}))"


def weight(sample_rate: float | None) -> float:
    """A row's weight in Python; a row without a sample rate (stored before it existed)
    was scored in full."""
    return 1.0 / max(1.0 if sample_rate is None else float(sample_rate), MIN_SAMPLE_RATE)


def weighted_rate(rows: Iterable[tuple[bool, float | None]]) -> tuple[int, float | None, float]:
    """(scored rows, weighted rate, hits = rate x scored rows) of the scored rows given
    as (flagged, sample_rate); (0, None, 0.0) when there are none. Rows of weight 1 give
    exactly (n, k / n, k)."""
    n, flagged, total = 0, 0.0, 0.0
    for hit, rate in rows:
        w = weight(rate)
        n, total = n + 1, total + w
        flagged += w if hit else 0.0
    if n == 0:
        return 0, None, 0.0
    return n, flagged / total, flagged * n / total
