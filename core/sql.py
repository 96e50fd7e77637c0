"""Quoting for the few SQL literals llmpulse writes into queries itself.

Values that come from users (app names, versions, filter values) go into ClickHouse
SQL as single-quoted strings with backslashes and quotes escaped, so a name such as
``o'brien\\`` can neither end the literal nor escape its closing quote.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["datetime_literal", "quote"]


def quote(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def datetime_literal(when: datetime) -> str:
    """``when`` as a millisecond ClickHouse DateTime64 in UTC (naive times are UTC)."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{stamp}', 3, 'UTC')"
