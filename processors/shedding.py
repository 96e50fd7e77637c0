"""Load shedding: when the worker falls behind, the models score a uniform sample.

The cheap detectors (validation, cost, latency, PII patterns, injection rule
signals) run on every event. When the oldest unscored event of a batch is older
than ``max_lag_s``, the model-based scores run on a Bernoulli sample of each batch
instead, with the probability sized so the worker drains its lag:

    events/s the worker does  = 1 / (p * model_s + other_s)
                             >= arrival/s * max(HEADROOM, 1 + lag / max_lag_s)

where ``model_s`` is the models' time per scored event and ``other_s`` the rest of
the worker's cycle per event (parsing, cheap detectors, storing, which overlaps the
next batch's scoring), both measured on recent batches taken while events waited,
and ``arrival/s`` the rate at which the events were produced, read from
their Kafka timestamps. The further behind, the faster it must go: a backlog of
``lag`` seconds is drained in about ``max_lag_s``. Every row records its
``sample_rate`` and unsampled rows keep NULL model scores, so a rate over the
scored rows stays an unbiased estimate.

Shedding starts when the lag a batch would reach if scored in full (its lag when
taken, plus the last cycle's length) passes the bound, so a full batch does not
overshoot it. It stops when the lag is below half the bound and the models would
keep up on every event; a line is logged when shedding starts and when it stops.
When the cheap path alone cannot keep up, the rate stays at ``MIN_RATE``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["HEADROOM", "MIN_RATE", "LoadShedder", "Sampling"]

log = logging.getLogger(__name__)

HEADROOM = 1.25  # drain: do a quarter more than arrives
MIN_RATE = 0.001  # never stop scoring altogether: a rate needs some scored rows
_EWMA = 0.3  # weight of the newest batch in the cost estimates
BUSY_LAG_S = 1.0  # a batch taken this far behind found events waiting: its cycle had no idle
_ARRIVAL_SPAN_S = 30.0  # production time over which the arrival rate is read


@dataclass(frozen=True)
class Sampling:
    """What one batch gets: the probability and, per event, whether the models run."""

    rate: float
    chosen: tuple[bool, ...]
    lag_s: float


class LoadShedder:
    """Decides each batch's sample rate from the lag and measured costs.

    ``max_lag_s`` 0 turns shedding off: every event is model-scored however far behind.
    ``clock`` gives wall-clock seconds (Kafka timestamps are epoch seconds).
    """

    def __init__(
        self,
        max_lag_s: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_lag_s = max_lag_s
        self.rng = rng or random.Random()
        self.clock = clock
        self.monotonic = monotonic
        self.cycle_s: float | None = None  # the last busy cycle, plan to plan
        # (when planned, lag when taken, events, scored, model seconds) of the last batch
        self._last: tuple[float, float, int, int, float] | None = None
        self.rate = 1.0
        self.shedding = False
        self.model_s: float | None = None  # per model-scored event
        self.other_s: float | None = None  # per event, everything but the models
        # (first timestamp, last timestamp, events) of recent batches, production time
        self._batches: deque[tuple[float, float, int]] = deque()

    def plan(self, timestamps: Sequence[float]) -> Sampling:
        """The sampling for a batch whose events have these Kafka timestamps (seconds)."""
        n = len(timestamps)
        now = self.monotonic()
        self._close_cycle(now)
        stamped = [t for t in timestamps if t > 0]
        lag = max(0.0, self.clock() - min(stamped)) if stamped else 0.0
        if stamped:
            self._record_arrivals(min(stamped), max(stamped), n)
        if self.max_lag_s > 0:
            self._update(lag)
        self._last = (now, lag, 0, 0, 0.0)
        rate = self.rate
        chosen = tuple(True for _ in range(n)) if rate >= 1.0 else tuple(
            self.rng.random() < rate for _ in range(n)
        )  # fmt: skip
        return Sampling(rate, chosen, lag)

    def observe(self, events: int, scored: int, model_s: float) -> None:
        """The last planned batch is scored: ``scored`` of its ``events`` went through the
        models, in ``model_s`` seconds. The rest of its cycle is measured at the next plan."""
        if scored > 0:
            self.model_s = _mix(self.model_s, model_s / scored)
        if self._last is not None:
            planned, lag, *_ = self._last
            self._last = (planned, lag, events, scored, model_s)

    def _close_cycle(self, now: float) -> None:
        """The previous batch's cycle ends as this one is planned; a busy one (events were
        waiting) tells what everything but the models costs per event."""
        if self._last is None:
            return
        planned, lag, events, _scored, model_s = self._last
        if events > 0 and lag >= BUSY_LAG_S:
            self.cycle_s = now - planned
            self.other_s = _mix(self.other_s, max(0.0, self.cycle_s - model_s) / events)

    def arrival_rate(self) -> float | None:
        """Events per second produced over the recent span, None until it is known."""
        if not self._batches:
            return None
        first = min(b[0] for b in self._batches)
        last = max(b[1] for b in self._batches)
        gaps = sum(b[2] for b in self._batches) - 1  # n events span n - 1 gaps
        return max(gaps, 1) / max(last - first, 1.0)

    def needed_rate(self, lag: float) -> float:
        """The largest sample rate at which the worker drains a lag of ``lag`` seconds in
        about ``max_lag_s`` and then gains on arrivals, in [MIN_RATE, 1]."""
        arrival = self.arrival_rate()
        if arrival is None or self.model_s is None or self.other_s is None:
            return 1.0  # nothing measured yet: the first batches are scored in full
        speedup = max(HEADROOM, 1.0 + lag / self.max_lag_s) if self.max_lag_s > 0 else 1.0
        budget = 1.0 / (speedup * arrival)  # seconds the worker may spend per event
        if self.model_s <= 0:
            return 1.0
        return min(1.0, max(MIN_RATE, (budget - self.other_s) / self.model_s))

    def _update(self, lag: float) -> None:
        needed = self.needed_rate(lag)
        if not self.shedding:
            # the lag this batch reaches if scored in full, as long as the last cycle took
            reached = lag + (self.cycle_s or 0.0)
            if reached > self.max_lag_s and needed < 1.0:
                self.shedding = True
                self.rate = needed
                log.warning(
                    "load shedding starts: %.0fs behind (bound %.0fs); models score %.1f%% of "
                    "events, cheap detectors all of them",
                    lag, self.max_lag_s, 100 * needed,
                )  # fmt: skip
            return
        if lag < self.max_lag_s / 2 and needed >= 1.0:
            self.shedding = False
            self.rate = 1.0
            log.warning("load shedding stops: %.1fs behind; models score every event", lag)
            return
        self.rate = needed

    def _record_arrivals(self, first: float, last: float, n: int) -> None:
        self._batches.append((first, last, n))
        newest = max(b[1] for b in self._batches)
        while len(self._batches) > 1 and self._batches[0][1] < newest - _ARRIVAL_SPAN_S:
            self._batches.popleft()


def _mix(old: float | None, new: float) -> float:
    if old is None or not math.isfinite(old):
        return new
    return (1 - _EWMA) * old + _EWMA * new
