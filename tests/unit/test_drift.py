"""MMD drift test: exact statistic, valid p-values, honest false-alarm rate, BH, and files."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from analysis.offline_drift import DriftInputError, drift_files, read_texts
from core.settings import load_settings
from detectors.base import DetectorError
from detectors.drift import (
    METHOD,
    DriftResult,
    MMDDriftTest,
    benjamini_hochberg,
    centroid_distance,
    refine_permutations,
)
from detectors.redaction import Redactor

CONFIGURED_ALPHA = load_settings({}).drift_alpha


def gaussian(n: int, shift: float = 0.0, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, 0] += shift
    return x.astype(np.float32)


def unbiased_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Textbook unbiased MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 sigma^2)), in float64."""

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
        return np.exp(-d2 / (2.0 * sigma**2))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2.0 * k(x, y).mean()
    )


def median_distance(z: np.ndarray) -> float:
    """The median pooled pairwise distance (the lower middle value for an even count)."""
    d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=-1))
    pairs = np.sort(d[np.triu_indices(len(z), k=1)])
    return float(pairs[(len(pairs) - 1) // 2])


# --- the test on samples -------------------------------------------------------------------


def test_one_distribution_gives_no_drift_and_a_shifted_one_gives_drift() -> None:
    test = MMDDriftTest(alpha=0.01, permutations=500, seed=0, device="cpu")
    ref = gaussian(300, seed=1)
    same = test.test(ref, gaussian(150, seed=2))
    shifted = test.test(ref, gaussian(150, shift=1.0, seed=3))
    assert not same.drifted and same.p_value > 0.1
    assert shifted.drifted and shifted.p_value == pytest.approx(1 / 501)
    assert shifted.statistic > 10 * abs(same.statistic)
    assert (same.n_ref, same.n_cur, same.permutations, same.method) == (300, 150, 500, METHOD)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matmuls: one torch thread is several times faster than two fighting a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("alpha", [CONFIGURED_ALPHA, 0.05])
def test_false_alarms_over_200_no_drift_tests_are_within_the_binomial_99_interval(
    alpha: float,
) -> None:
    runs = 200
    alarms = sum(
        MMDDriftTest(alpha=alpha, permutations=200, seed=i, device="cpu")
        .test(gaussian(150, seed=2 * i), gaussian(75, seed=2 * i + 1))
        .drifted
        for i in range(runs)
    )
    low, high = binom.ppf(0.005, runs, alpha), binom.ppf(0.995, runs, alpha)
    assert low <= alarms <= high, f"{alarms} false alarms in {runs}, expected {low}..{high}"


def test_p_value_lies_between_one_over_permutations_plus_one_and_one() -> None:
    permutations = 99
    test = MMDDriftTest(permutations=permutations, seed=0, device="cpu")
    far = test.score(gaussian(40, seed=1), gaussian(40, shift=5.0, seed=2))
    assert far.p_value == 1 / (permutations + 1)  # nothing beats the observed split
    identical = test.score(np.ones((10, 4), np.float32), np.ones((7, 4), np.float32))
    assert identical.p_value == 1.0  # every split ties with the observed one
    for seed in range(20):
        p = test.score(gaussian(12, seed=seed), gaussian(9, seed=seed + 100)).p_value
        assert 1 / (permutations + 1) <= p <= 1.0
        assert p * (permutations + 1) == pytest.approx(round(p * (permutations + 1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistic_is_unbiased_mmd2_with_the_median_distance_as_bandwidth(seed: int) -> None:
    ref, cur = gaussian(30, seed=seed, d=5), gaussian(17, shift=0.7, seed=seed + 10, d=5)
    sigma = median_distance(np.concatenate([ref, cur]).astype(np.float64))
    score = MMDDriftTest(permutations=10, device="cpu").score(ref, cur)
    assert score.bandwidth == pytest.approx(sigma, rel=1e-5)
    assert score.statistic == pytest.approx(unbiased_mmd2(ref, cur, sigma), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_p_value_approaches_the_exact_one_over_all_56_splits(seed: int) -> None:
    ref, cur = gaussian(5, seed=seed, d=3), gaussian(3, shift=0.8, seed=seed + 10, d=3)
    z = np.concatenate([ref, cur]).astype(np.float64)
    sigma = median_distance(z)
    observed = unbiased_mmd2(z[:5], z[5:], sigma)
    splits = [
        unbiased_mmd2(z[list(left)], z[[i for i in range(8) if i not in left]], sigma)
        for left in itertools.combinations(range(8), 5)
    ]
    exact = float(np.mean(np.array(splits) >= observed - 1e-9))
    permutations = 20_000  # Monte Carlo standard error <= 0.0036
    p = MMDDriftTest(permutations=permutations, seed=seed, device="cpu").score(ref, cur).p_value
    assert p == pytest.approx((1 + permutations * exact) / (1 + permutations), abs=0.015)


@pytest.mark.parametrize(("alpha", "shift"), [(0.01, 0.0), (0.5, 0.0), (0.2, 0.3), (0.01, 5.0)])
def test_threshold_is_alpha_and_drifted_means_p_at_most_threshold(
    alpha: float, shift: float
) -> None:
    ref, cur = gaussian(40, seed=1), gaussian(30, shift=shift, seed=2)
    result = MMDDriftTest(alpha=alpha, permutations=99, seed=0, device="cpu").test(ref, cur)
    assert isinstance(result, DriftResult)
    assert result.threshold == alpha
    assert result.drifted is (result.p_value <= alpha)


def test_a_p_value_equal_to_alpha_counts_as_drift() -> None:
    test = MMDDriftTest(alpha=0.01, permutations=99, seed=0, device="cpu")
    result = test.test(gaussian(40, seed=1), gaussian(30, shift=5.0, seed=2))
    assert result.p_value == 1 / (99 + 1) == result.threshold
    assert result.drifted is True


def test_the_same_seed_gives_the_same_result_and_as_dict_has_the_contract_keys() -> None:
    ref, cur = gaussian(50, seed=1), gaussian(40, shift=0.3, seed=2)
    a = MMDDriftTest(permutations=300, seed=7, device="cpu").test(ref, cur)
    b = MMDDriftTest(permutations=300, seed=7, device="cpu").test(ref, cur)
    assert {**a.as_dict(), "seconds": 0} == {**b.as_dict(), "seconds": 0}
    contract = {"statistic", "p_value", "threshold", "drifted", "distance", "method", "n_ref",
                "n_cur", "explanation"}  # fmt: skip
    d = a.as_dict()
    assert contract <= set(d) and d["explanation"] is None
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [
        (np.zeros(8, np.float32), np.zeros((4, 2), np.float32), "expected a 2-d array"),
        (np.zeros((1, 2), np.float32), np.zeros((4, 2), np.float32), "at least 2 rows, got 1"),
        (np.zeros((4, 2), np.float32), np.zeros((0, 2), np.float32), "at least 2 rows, got 0"),
        (np.full((4, 2), np.nan, np.float32), np.zeros((4, 2), np.float32), "NaN or inf"),
        (np.zeros((4, 2), np.float32), np.full((4, 2), np.inf, np.float32), "NaN or inf"),
        (np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32), "different models"),
    ],
)
def test_bad_embeddings_raise_a_detector_error_that_says_what_is_wrong(
    ref: np.ndarray, cur: np.ndarray, message: str
) -> None:
    with pytest.raises(DetectorError, match=message):
        MMDDriftTest(device="cpu").score(ref, cur)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"alpha": 0.0}, "alpha must be in"), ({"alpha": 1.0}, "alpha must be in"),
     ({"permutations": 0}, "permutations must be >= 1")],
)  # fmt: skip
def test_bad_settings_raise_a_detector_error(kwargs: dict, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        MMDDriftTest(device="cpu", **kwargs)


def test_centroid_distance_is_0_for_identical_and_1_for_orthogonal_samples() -> None:
    x = gaussian(20, seed=1)
    assert centroid_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert centroid_distance(x, 3.0 * x) == pytest.approx(0.0, abs=1e-12)  # direction only
    e = np.eye(4, dtype=np.float32)
    assert centroid_distance(e[[0, 0, 0]], e[[1, 1]]) == pytest.approx(1.0)
    assert centroid_distance(e[[0, 1]], e[[2, 3]]) == pytest.approx(1.0)


# --- duplicates: LLM traffic repeats itself ---------------------------------------------------


def _two_unit_vectors(seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.random.default_rng(seed).normal(size=(2, 384)).astype(np.float32)
    return a / np.linalg.norm(a), b / np.linalg.norm(b)


def test_splits_that_tie_exactly_with_the_observed_one_count_as_exceeding_it() -> None:
    # Equal counts of two texts on both sides: no split is more balanced, so p must be 1.
    for seed in range(4):
        a, b = _two_unit_vectors(seed)
        sample = np.stack([a] * 200 + [b] * 200)
        assert MMDDriftTest(permutations=500, device="cpu").score(sample, sample).p_value == 1.0


TIES_SCRIPT = """
import numpy as np
from detectors.drift import MMDDriftTest
out = []
for seed in range(4):
    a, b = np.random.default_rng(seed).normal(size=(2, 384)).astype(np.float32)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    sample = np.stack([a] * 200 + [b] * 200)
    out.append(MMDDriftTest(permutations=500, device="cpu").score(sample, sample).p_value)
print(out)
"""


@pytest.mark.parametrize("instructions", ["SSE4_2", "AVX2"])
def test_ties_give_the_same_p_value_with_other_matmul_kernels(instructions: str) -> None:
    # MKL picks its kernels by CPU; forcing an older instruction set (every x86-64 CPU
    # has these) is how another CPU rounds. Float32 sums gave p = 0.954 under AVX2 here.
    # Where torch does not use MKL the variable is ignored and the check still holds.
    env = {**os.environ, "MKL_ENABLE_INSTRUCTIONS": instructions}
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", TIES_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120, cwd=root)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[1.0, 1.0, 1.0, 1.0]"


def _around(topic: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = topic + 0.3 * rng.normal(size=(n, len(topic))) / np.sqrt(len(topic))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_dominant_repeated_text_does_not_hide_a_change_in_the_rest() -> None:
    for seed in range(8):
        rng = np.random.default_rng(seed)
        hi, topic_a, topic_b = (v / np.linalg.norm(v) for v in rng.normal(size=(3, 384)))
        ref = np.concatenate([np.repeat(hi[None], 160, 0), _around(topic_a, 40, rng)])
        cur = np.concatenate([np.repeat(hi[None], 160, 0), _around(topic_b, 40, rng)])
        test = MMDDriftTest(alpha=0.01, permutations=500, device="cpu")
        assert test.test(ref.astype(np.float32), cur.astype(np.float32)).drifted, seed


# --- Benjamini-Hochberg and permutations for a family ----------------------------------------

# Benjamini & Hochberg (1995), section 4.1: 15 p-values of a clinical trial.
BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240,
           0.4262, 0.5719, 0.6528, 0.7590, 1.0000]  # fmt: skip


def test_benjamini_hochberg_rejects_four_of_the_classic_fifteen_at_q_005() -> None:
    rejected, cut = benjamini_hochberg(BH_1995, 0.05)
    assert rejected == [True] * 4 + [False] * 11  # Bonferroni (0.05/15) would keep 3
    assert cut == pytest.approx(4 * 0.05 / 15)


def test_benjamini_hochberg_order_of_the_p_values_does_not_matter() -> None:
    order = np.random.default_rng(0).permutation(len(BH_1995))
    rejected, cut = benjamini_hochberg([BH_1995[i] for i in order], 0.05)
    kept = sorted(BH_1995[i] for i, r in zip(order, rejected, strict=True) if r)
    assert kept == BH_1995[:4]
    assert cut == pytest.approx(4 * 0.05 / 15)


def test_benjamini_hochberg_step_up_rejects_below_a_larger_p_that_passes() -> None:
    # p_(1) = 0.04 > 1*q/3 = 0.0167, but p_(3) = 0.05 <= 3*q/3: step-up rejects all three.
    rejected, cut = benjamini_hochberg([0.05, 0.04, 0.045], 0.05)
    assert rejected == [True, True, True] and cut == pytest.approx(0.05)


def test_benjamini_hochberg_with_nothing_to_reject_cuts_at_q_over_m() -> None:
    assert benjamini_hochberg([0.5, 0.02, 0.9], 0.05) == ([False, False, False], 0.05 / 3)
    assert benjamini_hochberg([], 0.05) == ([], 0.05)


@pytest.mark.parametrize("seed", range(5))
def test_benjamini_hochberg_rejects_exactly_the_p_values_at_or_below_the_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 0.002, size=10)])
    p = [float(v) for v in rng.permutation(np.round(p, 4))]  # rounding makes ties
    rejected, cut = benjamini_hochberg(p, 0.1)
    assert rejected == [v <= cut for v in p]
    k = sum(rejected)
    assert k >= 10 and cut == pytest.approx(k * 0.1 / len(p))
    assert sorted(p)[k - 1] <= cut  # the k-th smallest passes its own BH line


@pytest.mark.parametrize(("m", "q"), [(1, 0.01), (10, 0.05), (37, 0.01), (300, 0.05), (3, 0.1)])
def test_refine_permutations_lets_a_lone_drifting_segment_pass_bh(m: int, q: float) -> None:
    permutations = refine_permutations(m, q)
    assert permutations == int(np.ceil(m / q))
    smallest = 1 / (permutations + 1)
    assert smallest <= q / m
    p_values = [smallest] + [1.0] * (m - 1)
    assert benjamini_hochberg(p_values, q)[0][0]


def test_refine_permutations_is_capped() -> None:
    assert refine_permutations(10_000, 0.01) == 20_000
    assert refine_permutations(10_000, 0.01, cap=5_000) == 5_000


# --- llmpulse drift: files in, one object out (a fake model, so no weights load) -----------


class TopicModel:
    """Unit vectors that depend on the topic word of a text, with per-text jitter."""

    dim = 16
    topics = ("recipe", "refund", "weather")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            topic = next((i for i, w in enumerate(self.topics) if w in text), len(self.topics))
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            v = 0.3 * rng.normal(size=self.dim)
            v[topic] += 1.0
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def write_events(path: Path, lines: Sequence[object]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def events(topic: str, n: int, extra: str = "") -> list[dict]:
    return [{"event_id": f"{topic}-{i}", "input": f"question {i} about a {topic}{extra}",
             "output": f"answer {i}"} for i in range(n)]  # fmt: skip


def drift(ref: Path, cur: Path, **kwargs: object) -> dict:
    test = MMDDriftTest(alpha=0.01, permutations=200, seed=0, device="cpu")
    return drift_files(ref, cur, model=TopicModel(), test=test, **kwargs)  # type: ignore[arg-type]


def test_drift_files_skips_bad_lines_counts_them_and_names_the_first(tmp_path: Path) -> None:
    ref = write_events(tmp_path / "ref.jsonl", events("recipe", 30))
    bad = ["", "{not json", json.dumps({"input": 3}), "[1, 2]", json.dumps({"output": "x"})]
    cur = write_events(tmp_path / "cur.jsonl", events("recipe", 2) + bad + events("recipe", 20))
    notes: list[str] = []
    out = drift(ref, cur, notify=notes.append)
    assert notes == ["skipped 4 lines of " + str(cur) + " without a string 'input' (first: line 4)"]
    assert (out["n_ref"], out["n_cur"], out["kind"]) == (30, 22, "input")
    assert out["drifted"] is False and out["explanation"] is None


def test_drift_files_with_fewer_than_two_usable_lines_names_the_file(tmp_path: Path) -> None:
    ref = write_events(tmp_path / "ref.jsonl", events("recipe", 30))
    cur = write_events(tmp_path / "few.jsonl", [*events("refund", 1), {"input": None}, ""])
    with pytest.raises(DriftInputError, match=r"few\.jsonl: 1 usable line\(s\) with a string"):
        drift(ref, cur)


def test_drift_files_compares_the_kind_asked_for(tmp_path: Path) -> None:
    same_inputs = [{**e, "output": "the weather is fine"} for e in events("recipe", 30)]
    ref = write_events(tmp_path / "ref.jsonl", events("recipe", 30))
    cur = write_events(tmp_path / "cur.jsonl", same_inputs)
    assert read_texts(cur, "output").texts == ["the weather is fine"] * 30
    assert drift(ref, cur, kind="input")["drifted"] is False
    by_output = drift(ref, cur, kind="output")
    assert by_output["drifted"] is True and by_output["kind"] == "output"


@pytest.mark.parametrize(
    ("redactor", "shown"),
    [(Redactor("mask"), "[EMAIL]"), (None, "[EMAIL]"), (Redactor("hash", "salt"), "[EMAIL:"),
     (Redactor("keep"), "jane.doe@example.com")],
)  # fmt: skip
def test_drift_files_redacts_the_examples_of_the_explanation(
    tmp_path: Path, redactor: Redactor | None, shown: str
) -> None:
    ref = write_events(tmp_path / "ref.jsonl", events("recipe", 40))
    cur = write_events(tmp_path / "cur.jsonl", events("refund", 30, " from jane.doe@example.com"))
    out = drift(ref, cur, redactor=redactor, clusters=2)
    assert out["drifted"] is True and out["p_value"] <= out["threshold"]
    grew = next(c for c in out["explanation"]["top"] if c["direction"] == "grew")
    assert grew["examples"] and all(shown in t for t in grew["examples"])
    if redactor is None or redactor.mode != "keep":
        assert "jane" not in json.dumps(out)  # neither in examples nor in terms


def test_drift_files_reads_the_json_array_that_llmpulse_sql_prints(tmp_path: Path) -> None:
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps([{"input": f"recipe {i}"} for i in range(5)] + [{}], indent=1))
    texts = read_texts(ref)
    assert texts.texts == [f"recipe {i}" for i in range(5)]
    assert texts.skipped_message() == f"skipped 1 item of {ref} without a string 'input' " \
                                      "(first: item 6)"  # fmt: skip


def test_json_lines_that_start_with_an_array_line_are_still_read_as_lines(tmp_path: Path) -> None:
    path = write_events(tmp_path / "x.jsonl", ["[1, 2]", *events("recipe", 3)])
    texts = read_texts(path)
    assert (len(texts.texts), texts.skipped, texts.first_skipped, texts.unit) == (3, 1, 1, "line")


def test_exact_ties_give_the_hypergeometric_p_value() -> None:
    # Two distinct texts: the statistic orders splits by how many "a" land in the
    # reference, so the permutation p-value estimates a one-sided hypergeometric tail.
    from scipy.stats import hypergeom

    a, b = _two_unit_vectors(1)
    ref = np.stack([a] * 113 + [b] * 87)
    cur = np.stack([a] * 87 + [b] * 113)
    result = MMDDriftTest(alpha=0.01, permutations=5000, device="cpu").test(ref, cur)
    # |count of a in ref - expected| >= observed, both tails (MMD is symmetric).
    dist = hypergeom(400, 200, 200)
    exact = dist.sf(112) + dist.cdf(87)
    assert result.p_value == pytest.approx(exact, abs=0.004)
    assert result.drifted is False
