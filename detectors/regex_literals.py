"""Literals a regular expression cannot match without: a prefilter for many rules.

The injection rules run dozens of patterns over every input, and on ordinary traffic
nearly all of them fail. Python's ``in`` finds a literal in C far faster than a failing
``re.search`` costs in calls, so a pattern is searched only where one of its needed
literals occurs. The literals are derived from the parsed pattern, never written by
hand, so they cannot drift from it: a pattern they cannot be derived for is always run.
"""

from __future__ import annotations

from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = ["needed_literals"]

_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def needed_literals(pattern: str) -> frozenset[str] | None:
    """Strings at least one of which occurs in every match of ``pattern`` (case as
    written), or None when no such set can be read from it."""
    return _needed(sre_parse.parse(pattern))


def _needed(items: Any) -> frozenset[str] | None:
    """Each run of literals of a sequence, each group, branch and repeat that must match,
    gives a candidate set; the most selective one is returned (longest shortest string,
    then fewest strings). Zero-width items and optional parts give none."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is sre.LITERAL:
            run.append(chr(av))
            continue
        if run:
            candidates.append(frozenset({"".join(run)}))
            run = []
        sub: frozenset[str] | None = None
        if op is sre.SUBPATTERN:
            sub = _needed(av[-1])
        elif op is sre.ATOMIC_GROUP:
            sub = _needed(av)
        elif op is sre.BRANCH:
            branches = [_needed(b) for b in av[1]]
            if all(b is not None for b in branches):
                sub = frozenset().union(*branches)  # type: ignore[arg-type]
        elif op in _REPEATS and av[0] >= 1:
            sub = _needed(av[2])
        if sub:
            candidates.append(sub)
    if run:
        candidates.append(frozenset({"".join(run)}))
    if not candidates:
        return None
    return max(candidates, key=lambda s: (min(map(len, s)), -len(s)))
