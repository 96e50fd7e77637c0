"""Embedding drift: an MMD two-sample permutation test on the device, and BH across segments.

Why this test: MMD with a Gaussian kernel compares whole distributions of
embeddings, so a new topic that takes 5% of the traffic shows up even when the
centroid barely moves. The permutation p-value needs no asymptotics and is exact
under "no drift" (reference and window exchangeable); with the +1 correction,
``P(p <= a) <= a`` for every ``a``, which is what keeps the false-alarm rate honest.

How it stays cheap: the kernel matrix of the pooled sample is built once, and
for a random split with indicator ``e`` every block sum the statistic needs is
``e @ K @ e``, ``e @ K @ 1`` or ``1 @ K @ 1``. All permutations therefore cost one
``(P x N) @ (N x N)`` matmul, chunked only when memory asks for it.

Scoring is separate from deciding: :meth:`MMDDriftTest.score` returns numbers,
:meth:`MMDDriftTest.test` applies ``alpha``, :func:`benjamini_hochberg` applies
a family's threshold when many segments are tested at once.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from detectors.base import DetectorError

__all__ = [
    "KS_METHOD",
    "METHOD",
    "DriftResult",
    "DriftScore",
    "KSDriftTest",
    "MMDDriftTest",
    "benjamini_hochberg",
    "centroid_distance",
    "observed_quantile",
    "proportional_sample",
    "refine_permutations",
]

METHOD = "mmd-gaussian-perm"
METHOD_VERSION = 1
KS_METHOD = "ks-perm"  # one number per event: retrieval drift (KSDriftTest)
_KS_CELLS = 1 << 22  # permutations x rows per chunk of the KS test (16 MB of int32 sums)
# Above this many pooled rows the N x N kernel no longer fits comfortably; samples
# are subsampled (seeded) and the result says how many rows were used.
MAX_ROWS = 10_000
_CPU_CHUNK_BYTES = 256 << 20
MEDIAN_ROWS = 2_000
# Permuted statistics within this of the observed one tie (count as exceeding it).
# The sums are float64, so splits that tie exactly in the mathematics (duplicated
# texts) differ by ~1e-13 on any CPU; float32 sums differed by up to ~1e-6 depending
# on the CPU's matmul kernels, which made p-values CPU-dependent.
TIE_TOLERANCE = 1e-9
_F64_BLOCK_ROWS = 1024  # kernel rows converted to float64 at a time
MEDIAN_PAIRS = MEDIAN_ROWS * (MEDIAN_ROWS - 1) // 2


@dataclass(frozen=True)
class DriftScore:
    """The numbers of one test, before any threshold."""

    statistic: float  # unbiased MMD^2
    p_value: float  # (1 + #{permuted >= observed}) / (1 + permutations)
    distance: float  # 1 - cosine(centroid_ref, centroid_cur), for dashboards
    bandwidth: float  # Gaussian sigma (median pooled distance)
    permutations: int
    n_ref: int
    n_cur: int
    seconds: float
    method: str = METHOD
    version: int = METHOD_VERSION


@dataclass(frozen=True)
class DriftResult:
    """A decided test: ``drifted`` is ``p_value <= threshold``."""

    statistic: float
    p_value: float
    threshold: float
    drifted: bool
    distance: float
    method: str
    n_ref: int
    n_cur: int
    bandwidth: float
    permutations: int
    seconds: float
    version: int = METHOD_VERSION
    explanation: dict[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def decide(cls, score: DriftScore, threshold: float) -> DriftResult:
        return cls(
            **dataclasses.asdict(score), threshold=threshold, drifted=score.p_value <= threshold
        )

    def with_explanation(self, explanation: dict[str, Any] | None) -> DriftResult:
        return replace(self, explanation=explanation)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def proportional_sample(
    n_ref: int, n_cur: int, cap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices keeping at most ``cap`` rows in all, each side in proportion
    (at least 2 each); every row when the two fit."""
    if n_ref + n_cur <= cap:
        return np.arange(n_ref), np.arange(n_cur)
    share = cap / (n_ref + n_cur)
    keep_ref = max(2, int(n_ref * share))
    keep_cur = min(n_cur, max(2, cap - keep_ref))
    return (
        np.sort(rng.choice(n_ref, keep_ref, replace=False)),
        np.sort(rng.choice(n_cur, keep_cur, replace=False)),
    )


def centroid_distance(ref: np.ndarray, cur: np.ndarray) -> float:
    """Cosine distance of the two centroids: 0 for the same mean direction."""
    a = np.asarray(ref, dtype=np.float64).mean(axis=0)
    b = np.asarray(cur, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 0.0
    return float(max(0.0, 1.0 - float(a @ b) / norm))


def _check(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise DetectorError(f"{name}: expected a 2-d array of embeddings, got shape {x.shape}")
    if len(x) < 2:
        raise DetectorError(f"{name}: a two-sample test needs at least 2 rows, got {len(x)}")
    if not np.isfinite(x).all():
        raise DetectorError(f"{name}: embeddings contain NaN or inf")
    return x


class MMDDriftTest:
    """MMD^2 (Gaussian kernel, median-heuristic bandwidth) with a permutation p-value.

    ``permutations`` bounds the smallest possible p-value at ``1/(permutations+1)``;
    callers that correct for many segments ask for more with ``score(...,
    permutations=)`` (see :func:`refine_permutations`).
    """

    def __init__(
        self,
        alpha: float = 0.05,
        permutations: int = 1000,
        seed: int = 0,
        device: str = "cpu",
        max_rows: int = MAX_ROWS,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise DetectorError(f"alpha must be in (0, 1), got {alpha}")
        if permutations < 1:
            raise DetectorError(f"permutations must be >= 1, got {permutations}")
        from detectors.device import resolve_device

        self.alpha = alpha
        self.permutations = permutations
        self.seed = seed
        self.device = resolve_device(device)
        self.max_rows = max_rows

    def test(self, ref: np.ndarray, cur: np.ndarray) -> DriftResult:
        return DriftResult.decide(self.score(ref, cur), self.alpha)

    def score(
        self, ref: np.ndarray, cur: np.ndarray, *, permutations: int | None = None
    ) -> DriftScore:
        import torch

        started = time.perf_counter()
        ref, cur = _check("reference", ref), _check("current", cur)
        if ref.shape[1] != cur.shape[1]:
            raise DetectorError(
                f"reference has {ref.shape[1]}-d vectors, current {cur.shape[1]}-d: "
                "were they embedded by different models?"
            )
        rng = np.random.default_rng(self.seed)
        ref, cur = self._cap(ref, cur, rng)
        n, m = len(ref), len(cur)
        perms = self.permutations if permutations is None else permutations
        if perms < 1:
            raise DetectorError(f"permutations must be >= 1, got {perms}")
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        with torch.inference_mode():
            z = torch.from_numpy(np.concatenate([ref, cur])).to(self.device)
            kernel, sigma = _gaussian_kernel(z)
            # Centring leaves the unbiased MMD^2 unchanged (every mean shifts by the same
            # constant) and keeps the sums in splits @ K small.
            shift = float(kernel.mean())
            kernel.sub_(shift)
            diagonal = 1.0 - shift
            row_sums = kernel.sum(dim=1, dtype=torch.float64)
            total = float(row_sums.sum())
            observed = torch.zeros(1, n + m, device=self.device)
            observed[0, :n] = 1.0
            args = (kernel, diagonal, row_sums, total, n, m)
            stat = float(_mmd_of_splits(observed, *args)[0])
            exceed = 0
            chunk = self._chunk(n + m)
            done = 0
            while done < perms:
                size = min(chunk, perms - done)
                splits = self._random_splits(size, n, m, rng, gen)
                stats = _mmd_of_splits(splits, *args)
                exceed += int((stats >= stat - TIE_TOLERANCE).sum())
                done += size
        return DriftScore(
            statistic=stat,
            p_value=(1 + exceed) / (1 + perms),
            distance=centroid_distance(ref, cur),
            bandwidth=sigma,
            permutations=perms,
            n_ref=n,
            n_cur=m,
            seconds=time.perf_counter() - started,
        )

    def _random_splits(self, size: int, n: int, m: int, rng: np.random.Generator, gen: Any) -> Any:
        """``size`` uniformly random reference/current splits as 0/1 rows (exact shuffles)."""
        import torch

        if self.device == "cpu":
            # numpy's per-row Fisher-Yates is ~2.5x faster than sorting random keys on CPU.
            base = np.zeros((size, n + m), dtype=np.uint8)
            base[:, :n] = 1
            return torch.from_numpy(rng.permuted(base, axis=1)).to(torch.float64)
        keys = torch.rand(size, n + m, generator=gen, device=self.device)
        picked = keys.argsort(dim=1)[:, :n]
        return torch.zeros_like(keys).scatter_(1, picked, 1.0)

    def _cap(
        self, ref: np.ndarray, cur: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(ref) + len(cur) <= self.max_rows:
            return ref, cur  # no copy in the usual case
        pick_ref, pick_cur = proportional_sample(len(ref), len(cur), self.max_rows, rng)
        return ref[pick_ref], cur[pick_cur]

    def _chunk(self, rows: int) -> int:
        """Permutations per matmul: all of them when memory allows."""
        if self.device.startswith("cuda"):
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            budget = free // 4
        else:
            budget = _CPU_CHUNK_BYTES
        # keys, argsort (int64), float32 and float64 splits, float64 splits @ K, one float64
        # block product and the (splits @ K) * splits temporary, per permutation row.
        per_row = rows * (4 + 8 + 4 + 8 + 8 + 8 + 8)
        return max(1, int(budget // per_row))


def _gaussian_kernel(z: Any) -> tuple[Any, float]:
    """exp(-d^2 / (2 sigma^2)) with sigma the median pairwise distance of the pool."""
    import torch

    # Distances between distinct rows only, then spread to every copy: a matmul may round
    # the same dot product differently at different positions (edge tiles, CPU kernels),
    # and duplicated texts (common in LLM traffic) must get bit-identical entries for
    # splits that tie in the mathematics to tie in the sums.
    distinct, copy_of = torch.unique(z, dim=0, return_inverse=True)
    if len(distinct) == len(z):
        distinct, copy_of = z, None  # no copies: keep the pool's order, skip the gather
    sq = (distinct * distinct).sum(dim=1)
    scale = sq[:, None] + sq[None, :]
    d2 = (scale - 2.0 * (distinct @ distinct.T)).clamp_min_(0.0)
    d2 = (d2 + d2.T).mul_(0.5)  # exactly symmetric (a + b == b + a in floating point)
    # |a|^2 + |b|^2 - 2ab leaves a float32 residue (~1e-7) for near-identical rows; snap
    # it to 0 (after the symmetry, so both sides snap) so they get K = 1 exactly.
    d2.masked_fill_(d2 <= 1e-6 * scale, 0.0)
    d2.fill_diagonal_(0.0)
    if copy_of is not None:
        d2 = d2[copy_of][:, copy_of]  # unique() sorts: this also restores the pool's order
    n = d2.shape[0]
    if n * (n - 1) // 2 > MEDIAN_PAIRS:
        # Random pairs: the bandwidth then depends a little on the pooled order, which
        # makes the test approximate above MEDIAN_ROWS rows (the median of 2M pairs
        # moves by well under 0.1%).
        gen = torch.Generator(device=z.device).manual_seed(0)
        i = torch.randint(n, (MEDIAN_PAIRS,), device=z.device, generator=gen)
        j = torch.randint(n - 1, (MEDIAN_PAIRS,), device=z.device, generator=gen)
        j = j + (j >= i).to(j.dtype)  # any j != i, uniformly
        pairs = d2[i, j]
    else:  # every pair: the bandwidth is a symmetric function of the pool, the test exact
        iu = torch.triu_indices(n, n, offset=1, device=z.device)
        pairs = d2[iu[0], iu[1]]
    # Duplicates are distance 0; when they are most pairs, the plain median would be 0
    # and the kernel blind to everything else, so the median is over distinct pairs.
    pairs = pairs[pairs > 0]
    median_d2 = float(pairs.median()) if pairs.numel() else 1.0
    sigma = math.sqrt(median_d2)
    kernel = torch.exp_(d2.mul_(-1.0 / (2.0 * median_d2)))
    return kernel, sigma


def _mmd_of_splits(
    splits: Any, kernel: Any, diagonal: float, row_sums: Any, total: float, n: int, m: int
) -> Any:
    """Unbiased MMD^2 for each row of ``splits`` (1 = reference side), in float64.

    With x the indicator of the reference side: Sxx = x K x, Sxy = x K 1 - Sxx and
    Syy = 1 K 1 - Sxx - 2 Sxy; every diagonal entry of K equals ``diagonal``. The
    float32 kernel is widened a block of rows at a time, so memory stays near the
    float32 kernel's while every sum is float64 (about 1.6x a float32 matmul on CPU).
    """
    import torch

    x = splits.to(torch.float64)
    xk = torch.zeros(x.shape[0], kernel.shape[1], dtype=torch.float64, device=x.device)
    for lo in range(0, kernel.shape[0], _F64_BLOCK_ROWS):
        hi = lo + _F64_BLOCK_ROWS
        xk += x[:, lo:hi] @ kernel[lo:hi].to(torch.float64)
    sxx = (xk * x).sum(dim=1)
    sx1 = x @ row_sums
    sxy = sx1 - sxx
    syy = total - sxx - 2.0 * sxy
    xx = (sxx - n * diagonal) / (n * (n - 1))
    yy = (syy - m * diagonal) / (m * (m - 1))
    return xx + yy - 2.0 * sxy / (n * m)


class KSDriftTest:
    """Two-sample Kolmogorov-Smirnov statistic with a permutation p-value, for one number
    per event (the best chunk's relevance, the chunk count, the mean chunk length).

    KS compares whole distributions like MMD does for vectors: a shift, a spread or a
    new mode all move the largest gap between the two empirical CDFs. Its permutation
    p-value is exact under "no drift" whatever the distribution, ties (chunk counts are
    small integers) included, with the same +1 correction and BH family as the MMD
    test. The statistic is computed in integers (``D * n * m``), so a p-value never
    depends on a CPU's float rounding. ``distance`` is the window's median minus the
    reference's (:func:`observed_quantile`), in the values' unit; ``bandwidth`` has no
    meaning here and is 0.
    """

    def __init__(self, permutations: int = 1000, seed: int = 0, max_rows: int = MAX_ROWS) -> None:
        if permutations < 1:
            raise DetectorError(f"permutations must be >= 1, got {permutations}")
        self.permutations = permutations
        self.seed = seed
        self.max_rows = max_rows

    def score(
        self, ref: np.ndarray, cur: np.ndarray, *, permutations: int | None = None
    ) -> DriftScore:
        started = time.perf_counter()
        ref, cur = _values("reference", ref), _values("current", cur)
        rng = np.random.default_rng(self.seed)
        if len(ref) + len(cur) > self.max_rows:
            pick_ref, pick_cur = proportional_sample(len(ref), len(cur), self.max_rows, rng)
            ref, cur = ref[pick_ref], cur[pick_cur]
        perms = self.permutations if permutations is None else permutations
        if perms < 1:
            raise DetectorError(f"permutations must be >= 1, got {perms}")
        n, m = len(ref), len(cur)
        pooled = np.concatenate([ref, cur])
        order = np.argsort(pooled, kind="stable")
        ranked = pooled[order]
        # the last position of each distinct value: where both empirical CDFs are read
        ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
        observed = (order < n).astype(np.int8)[None, :]
        stat = int(_ks_gaps(observed, ends, n, m)[0])
        base = np.zeros(n + m, dtype=np.int8)
        base[:n] = 1
        chunk = max(1, _KS_CELLS // (n + m))
        exceed, done = 0, 0
        while done < perms:
            size = min(chunk, perms - done)
            splits = rng.permuted(np.broadcast_to(base, (size, n + m)), axis=1)
            exceed += int((_ks_gaps(splits, ends, n, m) >= stat).sum())
            done += size
        return DriftScore(
            statistic=stat / (n * m),
            p_value=(1 + exceed) / (1 + perms),
            distance=observed_quantile(cur, 0.5) - observed_quantile(ref, 0.5),
            bandwidth=0.0,
            permutations=perms,
            n_ref=n,
            n_cur=m,
            seconds=time.perf_counter() - started,
            method=KS_METHOD,
        )


def observed_quantile(x: np.ndarray, q: float) -> float:
    """The ``q`` quantile as a value that occurs in ``x`` (no interpolation): the sorted
    value at position floor(q * n), so a median reads as a real event's number."""
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    return float(v[min(len(v) - 1, int(q * len(v)))])


def _values(name: str, x: np.ndarray) -> np.ndarray:
    """One float32 number per event: a vector of them, or an (n, 1) matrix as the drift
    tables store them. Both sides go through float32, so equal values tie exactly."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise DetectorError(f"{name}: expected one number per event, got shape {x.shape}")
    if len(x) < 2:
        raise DetectorError(f"{name}: a two-sample test needs at least 2 values, got {len(x)}")
    if not np.isfinite(x).all():
        raise DetectorError(f"{name}: values contain NaN or inf")
    return x


def _ks_gaps(splits: np.ndarray, ends: np.ndarray, n: int, m: int) -> np.ndarray:
    """``D * n * m`` for each row of ``splits`` (1 = reference side, in sorted order): the
    largest gap between the two empirical CDFs, in whole numbers."""
    below_ref = np.cumsum(splits, axis=1, dtype=np.int32)[:, ends].astype(np.int64)
    below_cur = (ends + 1)[None, :] - below_ref
    return np.abs(below_ref * m - below_cur * n).max(axis=1)


def benjamini_hochberg(p_values: Sequence[float], q: float) -> tuple[list[bool], float]:
    """Which of m tests to reject at false discovery rate ``q``, and the p-value cut.

    The cut is ``k*q/m`` for the largest k with ``p_(k) <= k*q/m`` (``q/m`` when
    nothing is rejected), so ``rejected[i]`` is exactly ``p_values[i] <= cut``.
    """
    m = len(p_values)
    if m == 0:
        return [], q
    order = sorted(range(m), key=lambda i: p_values[i])
    k_star = 0
    for rank, i in enumerate(order, start=1):
        if p_values[i] <= rank * q / m:
            k_star = rank
    cut = (k_star if k_star else 1) * q / m
    return [p <= cut for p in p_values], cut


def refine_permutations(family_size: int, q: float, cap: int = 20_000) -> int:
    """Permutations a p-value needs so one drifting segment in ``family_size`` can pass BH.

    The smallest permutation p-value is 1/(P+1); BH needs p <= q/m for a lone
    rejection, so P must reach m/q. Capped because past a few thousand segments the
    permutation count stops being the bottleneck of detection.
    """
    return min(cap, math.ceil(family_size / q))
