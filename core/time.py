"""Durations and "since" bounds, read one way by rules, reports and compare.

A duration is a number of seconds or NUMBER+UNIT parts (``90s``, ``1h30m``, ``500ms``,
``7d``, ``2w``). A *since* bound is a duration back from now or an ISO date or time
(UTC unless it says otherwise), and it must lie in the past.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from core.errors import LlmpulseError

__all__ = ["DurationError", "parse_duration", "parse_since"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class DurationError(LlmpulseError, ValueError):
    """A duration is neither a number of seconds nor NUMBER+UNIT parts (1h30m)."""


def parse_duration(value: object) -> float:
    """Seconds from ``90s``, ``1m``, ``1h30m``, ``500ms``, ``1d``, ``2w`` or a number.

    A leading ``-`` is accepted so callers can say *which* bound was broken
    (``for must be >= 0``) instead of a vague syntax error.
    """
    if isinstance(value, bool):
        raise DurationError("a duration cannot be true/false")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise DurationError("a duration must be finite")
        return seconds
    if not isinstance(value, str):
        raise DurationError(f"a duration must be a string or a number, not {type(value).__name__}")
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-").strip()
    try:
        seconds = float(body)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return sign * seconds
    parts = _DURATION_PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise DurationError(
            f"invalid duration {value!r}: use a number of seconds or NUMBER+UNIT parts "
            "with units ms, s, m, h, d, w (e.g. 500ms, 90s, 1m, 1h30m, 1d)"
        )
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


def parse_since(since: str | timedelta | datetime, now: datetime | None = None) -> datetime:
    """The UTC start of a range: ``90m``/``6h``/``7d`` before ``now``, or an ISO date or
    time. Raises ValueError for anything else, a non-positive duration or the future."""
    now = now or datetime.now(UTC)
    shown = repr(since) if isinstance(since, str) else str(since)  # as the user wrote it
    if isinstance(since, str):
        text = since.strip()
        if re.match(r"^\d{4}-\d{2}-\d{2}", text):
            try:
                since = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"not an ISO date or datetime: {text!r}") from None
        else:
            try:
                since = timedelta(seconds=parse_duration(text))
            except DurationError:
                raise ValueError(
                    f"{text!r} is neither a duration (90m, 6h, 7d) nor an ISO date (2026-05-01)"
                ) from None
    if isinstance(since, timedelta):
        if since <= timedelta(0):
            raise ValueError(f"the duration must be positive, not {shown}")
        return (now - since).astimezone(UTC)
    start = since if since.tzinfo else since.replace(tzinfo=UTC)
    if start >= now:
        raise ValueError(f"since {start.isoformat()} is not before {now.isoformat()}")
    return start.astimezone(UTC)
