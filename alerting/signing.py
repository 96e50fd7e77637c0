"""HMAC signatures for webhook and rollback calls, and the verifier receivers copy.

The signed text is ``f"{timestamp}.".encode() + body``: binding the timestamp stops
a captured request from being replayed later, and signing the exact bytes sent
(compact, sorted-keys JSON) means the receiver never re-serializes before checking.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from core.errors import LlmpulseError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign",
    "signed_headers",
    "verify",
]

TIMESTAMP_HEADER = "X-Llmpulse-Timestamp"
SIGNATURE_HEADER = "X-Llmpulse-Signature"
_DIGITS = re.compile(r"[0-9]{1,15}")  # int() alone would accept "+1", " 1" and "1_0"


class SignatureError(LlmpulseError, ValueError):
    """A request failed verification. ``reason`` is one of: missing_header,
    bad_timestamp, too_old, too_new, bad_signature."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    ts = int(now)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body)}


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: float = 300,
) -> None:
    """Raise ``SignatureError`` unless ``body`` was signed with ``secret`` within
    ``tolerance_s`` of ``now`` (either side, so a skewed clock is tolerated too)."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts_text = lower.get(TIMESTAMP_HEADER.lower())
    given = lower.get(SIGNATURE_HEADER.lower())
    if ts_text is None or given is None:
        raise SignatureError("missing_header")
    if not _DIGITS.fullmatch(ts_text):
        raise SignatureError("bad_timestamp")
    ts = int(ts_text)
    if now - ts > tolerance_s:
        raise SignatureError("too_old")
    if ts - now > tolerance_s:
        raise SignatureError("too_new")
    if not hmac.compare_digest(sign(secret, ts, body).encode(), given.encode()):
        raise SignatureError("bad_signature")
