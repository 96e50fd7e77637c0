"""PII found by :mod:`detectors.pii`, rewritten before text is stored.

Finding PII and rewriting it are separate concerns: the detector only reports which
kinds an event holds, while every text the worker stores (inputs, outputs, contexts,
quoted unsupported claims) passes through a :class:`Redactor` first. The mode
(``LLMPULSE_REDACTION``) keeps, masks or hashes each value; a value is normalised
before hashing, so one phone number or email written two ways gets one tag.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Any

from detectors.base import DetectorError
from detectors.pii import BR_AT, BR_DOT, find_pii

__all__ = ["REDACTION_MODES", "Redactor", "redact", "redact_json"]

log = logging.getLogger(__name__)

REDACTION_MODES = ("keep", "mask", "hash")


def _normalise(kind: str, value: str) -> str:
    """One spelling per value, so '555-234-5678' and '(555) 234 5678' hash alike."""
    if kind == "email":  # "jane at example dot com" hashes like jane@example.com
        value = re.sub(rf"(?i){BR_AT}| at ", "@", value)
        return re.sub(rf"(?i){BR_DOT}| dot ", ".", value).lower()
    if kind == "ip_address":
        return str(ipaddress.ip_address(value))
    if kind in ("iban", "uk_nino"):
        return value.replace(" ", "").upper()
    digits = re.sub(r"\D", "", value)
    return "+" + digits if kind == "phone" and value.startswith("+") else digits


class Redactor:
    """Rewrites PII before text is stored: ``keep`` as is, ``mask`` or ``hash``.

    ``hash`` writes ``[EMAIL:<10 hex>]``, the start of HMAC-SHA256(salt, value): equal
    values give equal tags, so rows join on them without the value itself. The salt
    must be a secret kept out of the database: phone numbers, SSNs and card numbers
    have so few possible values that, without one (or with a known one), every tag
    can be reversed by hashing all candidates.
    """

    def __init__(self, mode: str = "mask", salt: str | bytes = b"") -> None:
        if mode not in REDACTION_MODES:
            raise DetectorError(
                f"redaction mode {mode!r} is not one of {REDACTION_MODES}; "
                "set LLMPULSE_REDACTION accordingly"
            )
        self.mode = mode
        self._salt = salt.encode() if isinstance(salt, str) else bytes(salt)
        if mode == "hash" and not self._salt:
            log.warning(
                "redaction=hash without a salt: hashed phone numbers and SSNs can be "
                "reversed by brute force; set LLMPULSE_REDACTION_SALT to a secret"
            )

    def __repr__(self) -> str:  # never show the salt
        return f"Redactor(mode={self.mode!r})"

    def _tag(self, kind: str, value: str) -> str:
        if self.mode == "mask":
            return f"[{kind.upper()}]"
        digest = hmac.new(self._salt, _normalise(kind, value).encode(), hashlib.sha256)
        return f"[{kind.upper()}:{digest.hexdigest()[:10]}]"

    def redact(self, text: str) -> str:
        if self.mode == "keep" or not text:
            return text
        parts, last = [], 0
        for m in find_pii(text):
            parts += [text[last : m.start], self._tag(m.kind, text[m.start : m.end])]
            last = m.end
        parts.append(text[last:])
        return "".join(parts)

    def redact_quotes(self, source: str, quotes: list[str]) -> list[str]:
        """Redact fragments quoted from ``source`` (unsupported sentences) by what all of
        ``source`` holds: a number's phone or card cue may stand in an earlier sentence,
        and a quote cut at its length limit may end inside a value."""
        if self.mode == "keep" or not quotes:
            return quotes
        found = sorted(((m.kind, source[m.start : m.end]) for m in find_pii(source)),
                       key=lambda f: -len(f[1]))  # fmt: skip
        out = []
        for quote in quotes:
            for kind, value in found:
                tag = self._tag(kind, value)
                quote = re.sub(r"\s+".join(map(re.escape, value.split())), tag, quote)
                ends = [k for k in range(4, len(value)) if quote.endswith(value[:k])]
                quote = quote[: len(quote) - ends[-1]] + tag if ends else quote
            out.append(self.redact(quote))
        return out


def redact(text: str, mode: str = "mask", salt: str | bytes = b"") -> str:
    """One-off :meth:`Redactor.redact`; build a :class:`Redactor` to reuse it."""
    return Redactor(mode, salt).redact(text)


def redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string inside a decoded JSON value, redacted (keys too: they may be emails):
    event extras, dead-letter payloads and OTLP span attributes alike."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_json(v, redact) for v in value]
    if isinstance(value, dict):
        return {redact(k): redact_json(v, redact) for k, v in value.items()}
    return value
