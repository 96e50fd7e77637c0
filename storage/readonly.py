"""The gate in front of every query that comes from outside the worker.

Two layers: a cheap syntactic check that gives a clear error, and the engine's own
``readonly=1`` setting on the query, which refuses any write the check might miss,
except ``INTO OUTFILE``: that one only the check stops.
"""

from __future__ import annotations

import re

from core.errors import LlmpulseError

__all__ = ["READ_ONLY_SETTINGS", "ReadOnlyViolation", "check_read_only"]

READ_ONLY_SETTINGS = {"readonly": 1}
_READ_VERBS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"}
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
# chdb runs INTO OUTFILE in the worker itself, readonly=1 or not: it would write (or
# APPEND to) any file the worker may write. Searched in the raw text, so a literal or a
# comment cannot hide it; the phrase inside a string is refused too, which is harmless.
_OUTFILE = re.compile(r"\bINTO(?:\s|/\*.*?\*/|(?:--|#)[^\n]*(?:\n|$))+OUTFILE\b", re.I | re.S)


class ReadOnlyViolation(LlmpulseError, ValueError):
    """The statement is not a single read query."""


def check_read_only(sql: str) -> str:
    """Return the statement without a trailing ``;`` or raise ReadOnlyViolation."""
    body = _COMMENT.sub(" ", sql).strip().rstrip(";").strip()
    if not body:
        raise ReadOnlyViolation("empty query")
    if ";" in _strip_literals(body):
        raise ReadOnlyViolation("only one statement per request")
    if _OUTFILE.search(sql):
        raise ReadOnlyViolation("INTO OUTFILE would write a file on the worker's host")
    verb = body.split(None, 1)[0].upper().lstrip("(")
    if verb not in _READ_VERBS:
        raise ReadOnlyViolation(
            f"only read queries are accepted here ({', '.join(sorted(_READ_VERBS))}); got {verb}"
        )
    return body


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`", "''", sql)
