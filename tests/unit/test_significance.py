"""The sequential test behind baseline rules, and the acceptance simulations.

Each simulated deploy runs an hour of traffic at one event a second, with the rule
looking every 5 seconds (720 looks) once both samples hold 100 events, as the
evaluator does. Seeds are fixed, so the figures are the same on every machine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from alerting.significance import (
    Effect,
    EffectError,
    msprt_p_value,
    parse_effect,
    proportion_test,
    rank_test,
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
    """Events of the candidate when the rule first fires; 0 when it never does."""
    cand = np.cumsum(rng.random(HOUR) < p_cand)
    base = np.cumsum(rng.random(HOUR) < p_base)
    for t in range(LOOK_EVERY, HOUR + 1, LOOK_EVERY):
        if t < MIN_EVENTS:
            continue
        nb, kb = (t, base[t - 1]) if concurrent else (HOUR, base[-1])  # stored: fixed sample
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
    assert fired <= hi  # never more false alarms than alpha allows
    # Measured with these seeds: 0.025 (concurrent) and 0.055 (stored baseline), in the
    # interval [0.015, 0.095]. The bound is conservative by design, so only the upper
    # end is a requirement; the lower one guards against a test that never fires.
    assert fired >= lo


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
    assert 300 <= float(np.median(caught)) <= 1200  # measured with this seed: 762.5 events


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


def test_the_mixture_matches_its_closed_form() -> None:
    # half-normal mixture: 2 sqrt(V/(V+t2)) exp(e^2 t2 / (2V(V+t2))) Phi(e tau / sqrt(V(V+t2)))
    e, v, tau = 0.03, 1e-4, 0.05
    t2 = tau * tau
    phi = 0.5 * math.erfc(-(e * tau / math.sqrt(v * (v + t2))) / math.sqrt(2))
    lam = 2 * math.sqrt(v / (v + t2)) * math.exp(e * e * t2 / (2 * v * (v + t2))) * phi
    assert msprt_p_value(e, v, tau) == pytest.approx(1 / lam)


def test_the_rank_test_reads_u_as_the_candidates_share_of_wins() -> None:
    n = 400
    assert rank_test(n, n, 0.5 * n * n).p_value == 1.0  # no shift
    assert rank_test(n, n, 0.62 * n * n).p_value < 1e-3  # wins 62 % of pairs
    assert rank_test(n, n, 0.38 * n * n, higher_is_worse=False).p_value < 1e-3


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
