"""Reproducible synthetic events (and broken payloads) for tests, benchmarks and demos."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

__all__ = ["MALFORMED_KINDS", "malformed_payload", "synthetic_events"]

_MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "gemini-2.0-flash", "mistral-small-latest"]
_APPS = ["support-bot", "search-summarizer", "sql-copilot"]
_WORDS = [
    "order",
    "refund",
    "account",
    "password",
    "invoice",
    "shipping",
    "delay",
    "error",
    "login",
    "plan",
    "upgrade",
    "billing",
    "receipt",
    "address",
    "warranty",
    "return",
    "exchange",
]


def synthetic_events(
    n: int, *, seed: int = 0, start: datetime | None = None, prefix: str = "evt"
) -> Iterator[dict]:
    """``n`` valid v1 events, the same for the same seed."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(n):
        words = rng.choices(_WORDS, k=rng.randint(5, 30))
        inp = rng.randint(50, 2000)
        out = rng.randint(10, 600)
        latency = rng.uniform(200, 4000)
        yield {
            "event_id": f"{prefix}-{seed}-{i:08d}",
            "ts": (start + timedelta(milliseconds=i * 10)).isoformat().replace("+00:00", "Z"),
            "app": rng.choice(_APPS),
            "environment": "prod",
            "model": rng.choice(_MODELS),
            "prompt_version": rng.choice(["v6", "v7"]),
            "input": "Customer asks about " + " ".join(words),
            "output": "Here is what I found: " + " ".join(reversed(words)),
            "usage": {
                "input_tokens": inp,
                "output_tokens": out,
                "cached_tokens": rng.choice([0, 0, inp // 2]),
            },
            "latency_ms": round(latency, 1),
            "ttft_ms": round(latency * rng.uniform(0.1, 0.4), 1),
            "status": "ok" if rng.random() > 0.02 else "error",
            "tags": {"region": rng.choice(["eu", "us"])},
        }


MALFORMED_KINDS = (
    "bad_json",
    "invalid_utf8",
    "missing_field",
    "wrong_type",
    "oversize_field",
    "negative_tokens",
)


def malformed_payload(kind: str, i: int) -> tuple[bytes, str]:
    """A broken payload of ``kind`` and the field its rejection must name."""
    base = next(synthetic_events(1, seed=10_000 + i, prefix=f"bad-{kind}"))
    if kind == "bad_json":
        return json.dumps(base).encode()[:-7], "payload"
    if kind == "invalid_utf8":
        return json.dumps(base).encode().replace(b"Customer", b"Cust\xff\xfeomer"), "payload"
    if kind == "missing_field":
        del base["model"]
        return json.dumps(base).encode(), "model"
    if kind == "wrong_type":
        base["latency_ms"] = "fast"
        return json.dumps(base).encode(), "latency_ms"
    if kind == "oversize_field":
        base["output"] = "x" * 300_000
        return json.dumps(base).encode(), "output"
    if kind == "negative_tokens":
        base["usage"]["output_tokens"] = -5
        return json.dumps(base).encode(), "usage.output_tokens"
    raise ValueError(kind)
