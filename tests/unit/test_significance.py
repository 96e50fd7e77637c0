"""The sequential test behind baseline rules, and the acceptance simulations.

Each simulated deploy runs an hour of traffic at one event a second, with the rule
looking every 5 seconds (720 looks) once both samples hold 100 events, as the
evaluator does. Seeds are fixed; the assertions are ranges around the measured
figures, far from where one look's rounding could move them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from alerting.significance import (
    Effect,
    EffectError,
    msprt_p_value,
    parse_effect,
    proportion_test,
    wilson_interval,
)

ALPHA = 0.05
DEPLOYS = 200
LOOK_EVERY, HOUR, MIN_EVENTS = 5, 3600, 100
# A detector that flags 10 % of good answers and 25 % of bad ones.
FPR, TPR = 0.10, 0.25


def observed(bad_share: float) -> float:
    return bad_share * TPR + (1 - bad_share) * FPR


def first_alarm(rng: np.random.Generator, p_base: float, p_cand: float, concurrent: bool) -> int:
    """Events of the candidate when the rule first fires; 0 when it never does.

    The baseline's sample is its last hour before the deploy (3,600 events) and, when
    it keeps serving beside the candidate (concurrent), what it serves since."""
    cand = np.cumsum(rng.random(HOUR) < p_cand)
    before = int((rng.random(HOUR) < p_base).sum())
    since = np.cumsum(rng.random(HOUR) < p_base)
    for t in range(LOOK_EVERY, HOUR + 1, LOOK_EVERY):
        if t < MIN_EVENTS:
            continue
        nb, kb = (HOUR + t, before + since[t - 1]) if concurrent else (HOUR, before)
        if proportion_test(nb, int(kb), t, int(cand[t - 1])).p_value <= ALPHA:
            return t
    return 0


def binomial_99(n: int, p: float) -> tuple[float, float]:
    """The 99 % two-sided interval of a Binomial(n, p) share (exact tails)."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    cdf = np.cumsum(pmf)
    lo = int(np.searchsorted(cdf, 0.005))
    hi = int(np.searchsorted(cdf, 0.995))
    return lo / n, hi / n


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "stored-baseline"])
def test_aa_deploys_fire_within_alphas_binomial_interval_over_an_hour_of_looks(
    concurrent: bool,
) -> None:
    rng = np.random.default_rng(20261205 + concurrent)
    p = observed(0.10)
    fired = sum(first_alarm(rng, p, p, concurrent) > 0 for _ in range(DEPLOYS)) / DEPLOYS
    lo, hi = binomial_99(DEPLOYS, ALPHA)
    # The acceptance: within alpha's binomial 99 % interval, [0.015, 0.095] for
    # 200 deploys. Measured with these seeds: 0.04 (concurrent) and 0.05 (stored);
    # bench/regression_alerts.py runs 1,000 per row (2.8 and 3.0 per 100).
    assert lo <= fired <= hi


@pytest.mark.parametrize("rate", [0.01, 0.001])
def test_rare_rates_against_a_stored_baseline_do_not_fire_on_aa_deploys_either(
    rate: float,
) -> None:
    """Where the normal approximation is worst: few flagged events, a fixed baseline.
    Without the expected-count rule 0.1 % fired on about 10 % of them."""
    rng = np.random.default_rng(5)
    fired = sum(first_alarm(rng, rate, rate, False) > 0 for _ in range(DEPLOYS)) / DEPLOYS
    assert fired <= ALPHA  # measured with this seed: 0.005 (1 %) and 0 (0.1 %)


def test_a_fixed_level_test_repeated_at_every_look_would_not_hold_alpha() -> None:
    """Why the sequential test: a plain one-sided z-test at 5 % on every look fires on
    most A/A deploys within the hour."""
    rng = np.random.default_rng(7)
    p = observed(0.10)
    fired = 0
    for _ in range(50):
        cand = np.cumsum(rng.random(HOUR) < p)
        base = np.cumsum(rng.random(HOUR) < p)
        for t in range(MIN_EVENTS, HOUR + 1, LOOK_EVERY):
            pooled = (cand[t - 1] + base[t - 1]) / (2 * t)
            se = math.sqrt(pooled * (1 - pooled) * 2 / t)
            if se and (cand[t - 1] - base[t - 1]) / t / se > 1.645:
                fired += 1
                break
    assert fired / 50 > 3 * ALPHA  # measured with this seed: 0.30


def test_a_version_that_quadruples_the_bad_answers_is_caught_through_a_noisy_detector() -> None:
    """10 % -> 40 % bad answers shows as 11.5 % -> 16 % flagged."""
    rng = np.random.default_rng(11)
    delays = [first_alarm(rng, observed(0.10), observed(0.40), True) for _ in range(DEPLOYS)]
    caught = [d for d in delays if d]
    assert len(caught) / DEPLOYS >= 0.95
    assert 200 <= float(np.median(caught)) <= 1000  # measured with this seed: 342.5 events


def test_the_p_value_is_one_when_the_candidate_looks_better() -> None:
    assert proportion_test(1000, 200, 1000, 100).p_value == 1.0
    assert proportion_test(1000, 100, 1000, 200, higher_is_worse=False).p_value == 1.0


def test_lower_is_worse_mirrors_higher_is_worse() -> None:
    up = proportion_test(1000, 100, 1000, 150)
    down = proportion_test(1000, 150, 1000, 100, higher_is_worse=False)
    assert down.p_value == pytest.approx(up.p_value) and down.estimate == pytest.approx(0.05)


def test_more_evidence_of_the_same_shift_gives_a_smaller_p_value() -> None:
    ps = [proportion_test(n, n // 10, n, int(n * 0.14)).p_value for n in (500, 2000, 8000)]
    assert ps[0] > ps[1] > ps[2] and ps[2] < 1e-6


@pytest.mark.parametrize(("estimate", "variance"), [(0.03, 1e-4), (0.01, 4e-4), (0.2, 1e-3)])
def test_the_mixture_is_the_likelihood_ratio_averaged_over_the_half_normal_prior(
    estimate: float, variance: float
) -> None:
    """Checked against numerical integration, not the closed form the code uses."""
    tau = 0.05

    def weighted_ratio(theta: float) -> float:
        ratio = math.exp((theta * estimate - theta * theta / 2) / variance)
        prior = 2 * math.exp(-theta * theta / (2 * tau * tau)) / (tau * math.sqrt(2 * math.pi))
        return ratio * prior

    lam, _ = quad(weighted_ratio, 0, 20 * tau, limit=200)
    assert msprt_p_value(estimate, variance, tau) == pytest.approx(min(1.0, 1 / lam), rel=1e-6)


def test_too_few_flagged_events_expected_are_not_judged() -> None:
    """One flagged event among 30 against a baseline at 0.1 % is not evidence."""
    early = proportion_test(3600, 4, 30, 1)
    assert (early.judged, early.p_value) == (False, 1.0)
    later = proportion_test(3600, 360, 300, 60)  # 10 % vs 20 %: plenty expected
    assert later.judged and later.p_value < 0.05


def test_wilson_interval_covers_the_share_and_stays_in_0_1() -> None:
    lo, hi = wilson_interval(200, 23)
    assert lo == pytest.approx(0.0782, abs=1e-3) and hi == pytest.approx(0.1667, abs=1e-3)
    assert wilson_interval(10, 0)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize(
    ("text", "is_rate", "effect"),
    [
        ("+5pp", True, Effect("absolute", 0.05, "+5pp")),
        ("x1.5", True, Effect("relative", 1.5, "x1.5")),
        ("\u00d72", False, Effect("relative", 2.0, "\u00d72")),
        ("+200", False, Effect("absolute", 200.0, "+200")),
        ("0.03", True, Effect("absolute", 0.03, "0.03")),
    ],
)
def test_min_effect_reads_points_factors_and_plain_numbers(
    text: str, is_rate: bool, effect: Effect
) -> None:
    assert parse_effect(text, is_rate) == effect


@pytest.mark.parametrize(
    ("text", "is_rate", "message"),
    [("+5pp", False, "rate metrics only"), ("x0.9", True, "above 1"),
     ("5", True, r"write \+5pp"), ("lots", True, "expected")],
)  # fmt: skip
def test_a_min_effect_that_cannot_work_says_why(text: str, is_rate: bool, message: str) -> None:
    with pytest.raises(EffectError, match=message):
        parse_effect(text, is_rate)


def test_an_effect_is_met_in_the_direction_that_is_worse() -> None:
    pp = Effect("absolute", 0.05, "+5pp")
    assert pp.met(0.10, 0.15, higher_is_worse=True) and not pp.met(0.10, 0.14, True)
    assert pp.met(0.15, 0.10, higher_is_worse=False)
    times = Effect("relative", 1.5, "x1.5")
    assert times.met(200.0, 300.0, True) and not times.met(200.0, 290.0, True)
    assert times.met(300.0, 200.0, higher_is_worse=False)
