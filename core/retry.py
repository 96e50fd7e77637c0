"""Backoff: the one description of how llmpulse waits before trying again.

Every retry loop takes its waits from a :class:`Backoff`: storage writes and the
worker's start-up (waits that grow from ``first_s`` by ``factor`` up to ``max_s``,
spread ±20 % so workers do not retry in step), alert delivery (full jitter, with a
deadline), and the periodic tasks that slow down while storage fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MIN_JITTER", "Backoff"]

MIN_JITTER = 0.1  # with full jitter a wait is at least this share of its bound: no spinning


@dataclass(frozen=True)
class Backoff:
    """Waits of ``first_s * factor ** (attempt - 1)``, at most ``max_s``, jittered.

    ``jitter="spread"`` multiplies a wait by a uniform 0.8-1.2; ``"full"`` draws it
    between MIN_JITTER of the bound and the bound; ``"none"`` waits the bound.
    ``deadline_s``, where set, is how long a caller keeps trying in all.
    """

    first_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    jitter: str = "spread"
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {self.first_s}, {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if self.deadline_s is not None and self.deadline_s < 0:
            raise ValueError(f"deadline_s must be >= 0, got {self.deadline_s}")
        if self.jitter not in ("spread", "full", "none"):
            raise ValueError(f"jitter must be spread, full or none, not {self.jitter!r}")

    def bound(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), before jitter."""
        try:
            return min(self.max_s, self.first_s * self.factor ** (attempt - 1))
        except OverflowError:
            return self.max_s

    def wait(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The jittered wait after failed attempt ``attempt``."""
        bound = self.bound(attempt)
        if self.jitter == "full":
            return max(MIN_JITTER * bound, rng() * bound)
        if self.jitter == "spread":
            return bound * (0.8 + 0.4 * rng())
        return bound

    def delays(self) -> Callable[[], float]:
        """Successive waits for a loop that only needs the next one."""
        attempts = iter(range(1, 1 << 62))
        return lambda: self.wait(next(attempts))
