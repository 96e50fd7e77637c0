"""Quoting for the few SQL literals llmpulse writes into queries itself.

Values that come from users (app names, versions, filter values) go into ClickHouse
SQL as single-quoted strings with backslashes and quotes escaped, so a name such as
``o'brien\\`` can neither end the literal nor escape its closing quote.
"""

from __future__ import annotations

__all__ = ["quote"]


def quote(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
