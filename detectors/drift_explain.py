"""What changed when a window drifted: clusters whose share grew or shrank, in words.

A p-value says *that* the distribution moved; an on-call engineer needs *what*
moved. Reference and window embeddings are clustered together (spherical
k-means, seeded), and each cluster's share in the window is compared with its
share in the reference. The clusters with the largest change are reported with
the texts nearest their centre and the terms that set them apart from the rest.
For one number per event (retrieval drift) there is nothing to cluster: the
explanation is the quantiles on both sides, in a sentence.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.drift import observed_quantile

__all__ = ["STOPWORDS", "explain_drift", "explain_shift", "kmeans", "top_terms"]

_WORD = re.compile(r"[a-z][a-z0-9'_-]{2,}")
STOPWORDS = frozenset(
    """about above after again against all also and any are aren't because been before
    being below between both but can can't cannot could did didn't does doesn't doing
    don't down during each few for from further had has have having her here hers
    herself him himself his how i'm into isn't it's its itself just let's more most
    much must my myself nor not now off once only other ought our ours ourselves out
    over own please same she should so some such than that that's the their theirs
    them themselves then there there's these they this those through too under until
    very was wasn't we were what what's when where which while who whom why will with
    would you your yours yourself yourselves you're one two get got make made like""".split()  # noqa: SIM905
)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """Spherical k-means (k-means++ start) on L2-normalised rows; returns labels."""
    rng = np.random.default_rng(seed)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = max(1, min(k, len(x)))
    centres = [x[rng.integers(len(x))]]
    closest = 1.0 - x @ centres[0]
    for _ in range(1, k):
        weights = np.clip(closest, 0.0, None) ** 2
        total = weights.sum()
        pick = rng.choice(len(x), p=weights / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
        closest = np.minimum(closest, 1.0 - x @ x[pick])
    c = np.stack(centres)
    labels = np.zeros(len(x), dtype=np.int64)
    for step in range(iterations):
        new = np.argmax(x @ c.T, axis=1)
        if step and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centre = members.sum(axis=0)
                c[j] = centre / max(float(np.linalg.norm(centre)), 1e-12)
    return labels


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def top_terms(inside: Sequence[str], outside: Sequence[str], limit: int = 5) -> list[str]:
    """Terms far more common in ``inside`` than ``outside`` (smoothed log-odds, by document)."""
    df_in = Counter(t for text in inside for t in _terms(text))
    df_out = Counter(t for text in outside for t in _terms(text))
    n_in, n_out = max(len(inside), 1), max(len(outside), 1)
    scored = []
    for term, count in df_in.items():
        if count < 2 and len(inside) > 3:
            continue
        p_in = (count + 0.5) / (n_in + 1.0)
        p_out = (df_out.get(term, 0) + 0.5) / (n_out + 1.0)
        gain = math.log(p_in / (1 - p_in)) - math.log(p_out / (1 - p_out))
        if gain > 0:
            scored.append((gain * math.sqrt(count), term))
    return [term for _, term in sorted(scored, key=lambda s: (-s[0], s[1]))[:limit]]


def _nearest(x: np.ndarray, rows: np.ndarray, texts: Sequence[str], limit: int) -> list[str]:
    """The distinct texts of ``rows`` closest to their mean direction."""
    if len(rows) == 0:
        return []
    centre = x[rows].mean(axis=0)
    order = rows[np.argsort(-(x[rows] @ centre))]
    seen: list[str] = []
    for i in order:
        if len(seen) >= limit:
            break
        text = texts[i].strip()[:300]
        if text and text not in seen:
            seen.append(text)
    return seen


def explain_drift(
    ref: np.ndarray,
    cur: np.ndarray,
    ref_texts: Sequence[str] | None = None,
    cur_texts: Sequence[str] | None = None,
    *,
    clusters: int = 8,
    report: int = 4,
    examples: int = 3,
    terms: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Clusters of reference+window whose share changed most: those that grew first.

    Examples for a cluster that grew come from the window, for one that shrank
    from the reference: those are the texts that exist on the side with more mass.
    """
    x = np.concatenate([np.asarray(ref, np.float32), np.asarray(cur, np.float32)])
    n_ref, n_cur = len(ref), len(cur)
    labels = kmeans(x, clusters, seed=seed)
    texts: list[str] | None = None
    if ref_texts is not None and cur_texts is not None:
        texts = [t or "" for t in ref_texts] + [t or "" for t in cur_texts]
    side = np.arange(len(x)) >= n_ref  # True: current window
    found = []
    for j in np.unique(labels):
        members = labels == j
        share_ref = float(members[:n_ref].sum()) / n_ref
        share_cur = float(members[n_ref:].sum()) / n_cur
        found.append((share_cur - share_ref, int(j), share_ref, share_cur, members))
    # What is new comes first: a new topic usually splits over a few clusters, each
    # growing less than the old ones shrink, and "what appeared" is the question asked.
    grew = sorted((f for f in found if f[0] > 0), key=lambda f: (-f[0], f[1]))
    shrank = sorted((f for f in found if f[0] < 0), key=lambda f: (f[0], f[1]))
    out = []
    for change, j, share_ref, share_cur, members in (grew + shrank)[:report]:
        entry: dict[str, Any] = {
            "cluster": j,
            "direction": "grew" if change > 0 else "shrank",
            "share_ref": round(share_ref, 4),
            "share_cur": round(share_cur, 4),
            "change": round(change, 4),
            "examples": [],
            "terms": [],
        }
        if texts is not None:
            home = members & (side if change > 0 else ~side)
            entry["examples"] = _nearest(x, np.flatnonzero(home), texts, examples)
            inside = [texts[i] for i in np.flatnonzero(members)]
            outside = [texts[i] for i in np.flatnonzero(~members)]
            entry["terms"] = top_terms(inside, outside, terms)
        out.append(entry)
    return {"method": "spherical-kmeans", "clusters": len(found), "top": out}


def explain_shift(ref: np.ndarray, cur: np.ndarray, what: str, unit: str) -> dict[str, Any]:
    """How one number per event moved: p10, median, p90 and mean on both sides, and a
    sentence (``summary``) such as "chunk length lower: median 812 -> 240 characters".

    Quantiles are values that occur (no interpolation), so they read as real events;
    the median shift is the drift row's ``distance``.
    """

    def quantiles(x: np.ndarray) -> dict[str, float]:
        v = np.asarray(x, dtype=np.float64).ravel()
        at = {f"p{round(100 * q)}": observed_quantile(v, q) for q in (0.1, 0.5, 0.9)}
        return {"n": len(v), "p10": at["p10"], "median": at["p50"], "p90": at["p90"],
                "mean": float(v.mean())}  # fmt: skip

    before, after = quantiles(ref), quantiles(cur)
    shift = after["median"] - before["median"]
    word = "higher" if shift > 0 else "lower" if shift < 0 else "spread changed"

    def fmt(v: float) -> str:
        return f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}"

    summary = (
        f"{what} {word}: median {fmt(before['median'])} -> {fmt(after['median'])} {unit} "
        f"(p10-p90 {fmt(before['p10'])}-{fmt(before['p90'])} -> "
        f"{fmt(after['p10'])}-{fmt(after['p90'])})"
    )
    return {"method": "quantiles", "unit": unit, "reference": before, "window": after,
            "summary": summary}  # fmt: skip
