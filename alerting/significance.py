"""Is a version worse than its baseline beyond chance, however often the rule looks?

A baseline rule is checked at every evaluation, every few seconds for the life of a
deploy. A fixed-level test repeated that often would fire on an A/A deploy sooner or
later (hundreds of looks at 5 % each). So the test here is a mixture sequential
probability ratio test (mSPRT; Robbins 1970, Johari et al. 2017, "Peeking at A/B
tests"): at each look it computes a likelihood ratio Λ of "the candidate is worse by
some θ > 0" against "no worse", averaged over a half-normal prior on θ of scale τ.
Under the null Λ is a nonnegative (super)martingale with mean 1, so by Ville's
inequality the chance that it *ever* reaches 1/alpha is at most alpha: 1/Λ is a p-value
that
stays valid under continuous monitoring. The estimate (the difference of two shares)
is asymptotically normal, which is the setting in which the mixture has this closed
form.

One test, one-sided in the direction the rule calls worse (:func:`proportion_test`):
the difference of two shares, with the pooled null variance p̄(1-p̄)(1/n₁+1/n₂). A
rate metric compares the shares of flagged events; a latency, TTFT or cost metric
compares the shares of events above the baseline's own quantile (its p95 for
``latency_p95``: 5 % of the baseline's events by construction, more of a slower
version's), so the test is about the tail the metric names.

The normal approximation fails for few flagged events (one flagged event among the
first 30 against a baseline at 0.1 % is "significant"), so a look is only judged
once each sample expects at least 5 flagged and 5 unflagged events at the pooled
share (the textbook rule for the approximation); before that the p-value is 1.
Seeded simulations (``tests/unit/test_significance.py``, ``bench/regression_alerts.py``)
check the false-alarm rate and the delay directly, rare rates included.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.errors import LlmpulseError

__all__ = [
    "MIN_EXPECTED",
    "RATE_TAU",
    "Effect",
    "EffectError",
    "TestResult",
    "msprt_p_value",
    "parse_effect",
    "proportion_test",
    "wilson_interval",
]

RATE_TAU = 0.05  # prior scale of a rate shift: most sensitive to a few percentage points
MIN_EXPECTED = 5.0  # flagged (and unflagged) events each sample must expect to be judged
Z95 = 1.959963984540054


class EffectError(LlmpulseError, ValueError):
    """A ``min_effect`` that cannot be read; the message says what is expected."""


@dataclass(frozen=True)
class Effect:
    """The smallest change worth an alert: ``absolute`` in the metric's unit (a share
    for rates: +5pp is 0.05), or ``relative``, a factor (x1.5)."""

    kind: str  # "absolute" | "relative"
    size: float
    text: str

    def met(self, baseline: float, candidate: float, higher_is_worse: bool) -> bool:
        if self.kind == "absolute":
            change = candidate - baseline if higher_is_worse else baseline - candidate
            return change >= self.size - 1e-12
        if higher_is_worse:
            return candidate >= self.size * baseline and candidate > baseline
        return candidate * self.size <= baseline and candidate < baseline


_PP = re.compile(r"\+?\s*(\d+(?:\.\d+)?)\s*pp")
_TIMES = re.compile("[x*\u00d7]\\s*(\\d+(?:\\.\\d+)?)")  # x1.5, *1.5 or the times sign
_PLAIN = re.compile(r"\+?\s*(\d+(?:\.\d+)?)")


def parse_effect(text: str, is_rate: bool) -> Effect:
    """``+5pp`` (rates only), ``x1.5`` (relative; the times sign works too), or a number
    in the metric's unit."""
    raw = str(text).strip().lower()
    if m := _PP.fullmatch(raw):
        if not is_rate:
            raise EffectError("pp (percentage points) applies to rate metrics only")
        return Effect("absolute", float(m.group(1)) / 100, text)
    if m := _TIMES.fullmatch(raw):
        factor = float(m.group(1))
        if factor <= 1:
            raise EffectError("a relative effect is a factor above 1, e.g. x1.5")
        return Effect("relative", factor, text)
    if m := _PLAIN.fullmatch(raw):
        size = float(m.group(1))
        if is_rate and size >= 1:
            raise EffectError("a rate's absolute effect is a share below 1; write +5pp")
        return Effect("absolute", size, text)
    raise EffectError("expected +Npp (rates), xN (relative) or a number in the metric's unit")


@dataclass(frozen=True)
class TestResult:
    """One look: the estimate in the worse direction, and its always-valid p-value."""

    estimate: float  # candidate share - baseline share, in the worse direction
    p_value: float  # 1/Λ, capped at 1; P(ever <= alpha | no worse) <= alpha
    method: str
    judged: bool = True  # False: too few flagged events expected for the test yet


def msprt_p_value(estimate: float, variance: float, tau: float) -> float:
    """1/Λ for a normal estimate of θ with ``variance``, against θ <= 0, mixing over a
    half-normal prior of scale ``tau`` on θ > 0."""
    if not variance > 0 or not math.isfinite(estimate):
        return 1.0
    if estimate <= 0:
        return 1.0  # Λ < 1 whenever the estimate points the other way
    v, t2 = variance, tau * tau
    log_lambda = (
        math.log(2.0)
        + 0.5 * math.log(v / (v + t2))
        + estimate * estimate * t2 / (2 * v * (v + t2))
        + math.log(_normal_cdf(estimate * tau / math.sqrt(v * (v + t2))))
    )
    return min(1.0, math.exp(-log_lambda)) if log_lambda < 700 else 0.0


def proportion_test(
    baseline_n: int, baseline_k: float, candidate_n: int, candidate_k: float,
    higher_is_worse: bool = True, tau: float = RATE_TAU,
) -> TestResult:  # fmt: skip
    """Is the candidate's share of flagged events worse than the baseline's?

    ``k`` may be a real number: for a model-score rate under load shedding it is the
    share weighted by 1 / sample_rate times n, the scored events (an approximation
    whose variance ignores the unequal weights; see :mod:`alerting.comparison`)."""
    method = "two-proportion mSPRT, one-sided"
    if baseline_n <= 0 or candidate_n <= 0:
        return TestResult(0.0, 1.0, method, judged=False)
    pb, pc = baseline_k / baseline_n, candidate_k / candidate_n
    estimate = pc - pb if higher_is_worse else pb - pc
    pooled = (baseline_k + candidate_k) / (baseline_n + candidate_n)
    expected = min(baseline_n, candidate_n) * min(pooled, 1 - pooled)
    if expected < MIN_EXPECTED:
        return TestResult(estimate, 1.0, method, judged=False)
    variance = pooled * (1 - pooled) * (1 / baseline_n + 1 / candidate_n)
    return TestResult(estimate, msprt_p_value(estimate, variance, tau), method)


def wilson_interval(n: int, k: float, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a share k/n ((0, 1) when n is 0); ``k`` may be a
    weighted share times n, as in :func:`proportion_test`."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends, not by rounding
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))
