"""Envelopes: many events in one Kafka message, so the worker pays its per-message cost
(Faust's stream machinery, acks, offsets) once per envelope instead of once per event.

Wire format, version 1 (``docs/event-schema.md#envelopes``):

* the Kafka header ``llmpulse.envelope`` is ``1``; a message without it is one event,
  exactly as before envelopes existed;
* the value is JSON Lines: event v1 objects in compact JSON, one per line, separated
  by ``\\n`` (a single trailing ``\\n`` is allowed). JSON escapes a newline inside a
  string, so a line is always one whole event, and splitting needs no JSON parser;
* the whole value is at most ``LIMITS.payload_bytes`` (1 MiB), the limit of a single
  event, so the worker holds no more bytes per message than it did before;
* the key is free (the SDK sends none, so envelopes spread over partitions).

The worker turns each line into its own record, with the envelope's topic, partition
and offset and the line's index: a bad line becomes one dead letter naming that index,
the others are stored. A value that is not an envelope at all (too large, no events,
an unknown version) is one dead letter, as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ingest.schema import LIMITS, Rejection

__all__ = [
    "ENVELOPE_HEADER",
    "ENVELOPE_VERSION",
    "encode_envelope",
    "envelope_version",
    "split_envelope",
]

ENVELOPE_HEADER = "llmpulse.envelope"
ENVELOPE_VERSION = b"1"


def envelope_version(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    """The value of the envelope header, or None for a message that holds one event."""
    if headers:
        for name, value in headers:
            if name == ENVELOPE_HEADER:
                return bytes(value) if value is not None else b""
    return None


def encode_envelope(events: Sequence[bytes]) -> bytes:
    """The value of an envelope holding ``events`` (each one event's compact JSON)."""
    if not events:
        raise ValueError("an envelope holds at least one event")
    for i, value in enumerate(events):
        if b"\n" in value:
            raise ValueError(f"event {i} spans lines: envelopes need compact JSON")
    value = b"\n".join(events)
    if len(value) > LIMITS.payload_bytes:
        raise ValueError(f"envelope of {len(value)} bytes exceeds {LIMITS.payload_bytes}")
    return value


def split_envelope(value: bytes, version: bytes) -> list[bytes] | Rejection:
    """The events of an envelope, each its own bytes as sent; or why the whole message
    is refused. Lines are not parsed here: each is validated as one event later."""
    if version != ENVELOPE_VERSION:
        shown = version.decode("utf-8", "replace")[:16]
        return Rejection(
            "envelope", f"unknown envelope version {shown!r} (this worker reads version 1)"
        )
    if len(value) > LIMITS.payload_bytes:
        return Rejection("envelope", f"larger than {LIMITS.payload_bytes} bytes")
    if value.endswith(b"\n"):
        value = value[:-1]
    if not value:
        return Rejection("envelope", "holds no events")
    return value.split(b"\n")
