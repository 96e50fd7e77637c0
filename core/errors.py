"""The root of llmpulse's own errors.

Every error a user can cause (a bad setting, rule file, price table, input file or an
unreachable service) derives from :class:`LlmpulseError`, keeping its standard base
too (``ValueError``, ``RuntimeError`` …) so existing ``except`` clauses still match.
The CLI turns any of them into a one-line message and a non-zero exit; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["LlmpulseError"]


class LlmpulseError(Exception):
    """An error llmpulse raises on purpose, with a message meant for its user."""
