"""Latency figures derived per event: generation time and output speed.

``latency_ms`` and ``ttft_ms`` are stored as sent; what is derived here is what
dashboards need and apps rarely send: time spent generating after the first token
and output tokens per second (NULL where the inputs do not allow it, never 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Latency", "LatencyDetector"]


@dataclass(frozen=True)
class Latency:
    generation_ms: float | None
    output_tokens_per_s: float | None


class LatencyDetector:
    name = "latency"

    def score(
        self,
        latency_ms: Sequence[float | None],
        ttft_ms: Sequence[float | None],
        output_tokens: Sequence[int | None],
    ) -> list[Latency]:
        out = []
        for total, first, tokens in zip(latency_ms, ttft_ms, output_tokens, strict=True):
            generation = None
            if total is not None:
                generation = total - first if first is not None and first <= total else total
            speed = None
            if tokens is not None and generation is not None and generation > 0:
                speed = tokens / (generation / 1000.0)
            out.append(Latency(generation, speed))
        return out
