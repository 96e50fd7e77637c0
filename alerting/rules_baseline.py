"""The keys of a baseline rule (``compare_to``, ``min_effect``, ``alpha``), checked with
their lines like every other key; ``alerting.rules`` calls :func:`read_baseline`.

A baseline rule fires when a version is significantly worse than the app's baseline
version (``compare_to: baseline``, the last healthy version before it) or than a pinned
one (``compare_to: v6``). Its ``op`` says which direction is worse (``>``: higher is
worse) and it has no threshold; ``min_effect`` is the smallest change worth an alert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alerting.config import COMPARABLE
from alerting.rules_yaml import Mapping, is_tag
from alerting.significance import Effect, EffectError, parse_effect

__all__ = ["BASELINE_KEYS", "BaselineKeys", "read_baseline"]

BASELINE_KEYS = ("compare_to", "min_effect", "alpha")
_VERSION = re.compile(r"[A-Za-z0-9_.:+-]+")


@dataclass(frozen=True)
class BaselineKeys:
    compare_to: str | None = None
    min_effect: Effect | None = None
    alpha: float = 0.05


def read_baseline(m: Mapping, metric: str | None) -> BaselineKeys | None:
    """The rule's baseline keys; ``None`` after reporting a problem with them."""
    problems = 0
    compare_to = _scalar(m, "compare_to")
    if compare_to is not None:
        if not _VERSION.fullmatch(compare_to):
            m.error("compare_to", "expected baseline or a prompt_version")
            problems += 1
        elif metric is not None and metric not in COMPARABLE:
            usable = ", ".join(COMPARABLE)
            m.error("compare_to", f"{metric} cannot be compared with a baseline; the metrics "
                                  f"that can are {usable}")  # fmt: skip
            problems += 1
        if "threshold" in m:
            m.error("threshold", "a baseline rule has no threshold: it fires when the version "
                                 "is significantly worse; min_effect sets the smallest change "
                                 "worth an alert")  # fmt: skip
            problems += 1
    for key in ("min_effect", "alpha"):
        if key in m and compare_to is None and "compare_to" not in m:
            m.error(key, "only applies to baseline rules (with compare_to)")
            problems += 1
    effect = None
    raw = _scalar(m, "min_effect")
    if raw is not None:
        try:
            effect = parse_effect(raw, COMPARABLE.get(metric or "") == "rate")
        except EffectError as exc:
            m.error("min_effect", str(exc))
            problems += 1
    alpha = m.number("alpha")
    if alpha is not None and not 0 < alpha < 0.5:
        m.error("alpha", "must be between 0 and 0.5 (the false-alarm bound, e.g. 0.05)")
        problems += 1
    if problems:
        return None
    return BaselineKeys(compare_to, effect, 0.05 if alpha is None else alpha)


def _scalar(m: Mapping, key: str) -> str | None:
    """A string or number as written (``compare_to: 7`` is version "7")."""
    node = m.get(key)
    if node is None:
        return None
    if not is_tag(node, "str", "int", "float") or not str(node.value).strip():
        m.error(key, "expected a single value")
        return None
    return str(node.value).strip()
