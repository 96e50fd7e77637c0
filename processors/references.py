"""Replacing a drift reference: from a file of events, from a stored time range, or cleared.

A time-range reference carries the stored events' retrieval numbers too (best chunk's
relevance, chunk count and length), so retrieval drift is tested against it; a file
reference holds the vectors of its texts only, and the key's retrieval is then not
tested until a reference from the stream or a range replaces it.

The same functions run in the worker (``POST /drift/reference/``, while it holds
the embedded engine) and in the CLI (when no worker runs, or against a server).
A new reference gets a new id and becomes active in one insert; the worker's
monitor reads it on its next round, and a window open at that moment is tested
against the new one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import LlmpulseError
from storage.drift import RETRIEVAL_KINDS, DriftStore, Reference, new_reference_id, token
from storage.rows import ReferenceVectorRow

__all__ = [
    "ACTIONS",
    "ReferenceRequest",
    "ReferenceSetError",
    "apply_request",
    "events_from_file",
    "parse_time",
]

ACTIONS = ("file", "range", "first", "clear")


class ReferenceSetError(LlmpulseError, ValueError):
    """The request cannot be carried out; the message says why."""


@dataclass(frozen=True)
class ReferenceRequest:
    app: str
    prompt_version: str
    action: str
    event_ids: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    start: str | None = None
    end: str | None = None
    size: int = 1000
    detail: str = ""
    path: str | None = None  # a file request may name a file instead of carrying it

    def loaded(self) -> ReferenceRequest:
        """A file request with its events read in (the worker reads local files itself:
        request bodies are capped at 1 MiB)."""
        if self.action != "file" or self.path is None or self.inputs:
            return self
        ids, inputs, outputs = events_from_file(Path(self.path), limit=100_000)
        detail = self.detail or f"{len(ids)} events from {Path(self.path).name}"
        return replace(self, event_ids=ids, inputs=inputs, outputs=outputs, detail=detail)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ReferenceRequest:
        try:
            req = cls(**body)
        except TypeError as exc:
            raise ReferenceSetError(f"bad reference request: {exc}") from None
        req.check()
        return req

    def check(self) -> None:
        if self.action not in ACTIONS:
            raise ReferenceSetError(f"action must be one of {ACTIONS}, not {self.action!r}")
        if not self.app:
            raise ReferenceSetError("app is required")
        if self.action == "file" and not (self.path and not self.inputs):
            n = len(self.inputs)
            if n < 2 or len(self.outputs) != n or len(self.event_ids) != n:
                raise ReferenceSetError(
                    f"a reference needs at least 2 events with input and output, got {n}"
                )
        if self.action == "range":
            if not self.start or not self.end:
                raise ReferenceSetError("a time-range reference needs --from and --to")
            if parse_time(self.start) >= parse_time(self.end):
                raise ReferenceSetError(f"--from {self.start} is not before --to {self.end}")
        if self.action in ("range", "first") and self.size < 2:
            raise ReferenceSetError("--size must be at least 2")


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601; a naive time is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReferenceSetError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def events_from_file(
    path: Path, limit: int | None = None
) -> tuple[list[str], list[str], list[str]]:
    """(event_ids, inputs, outputs) of the JSON lines that have string input and output."""
    ids: list[str] = []
    inputs: list[str] = []
    outputs: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise ReferenceSetError(f"{path}:{number}: not JSON") from None
            if not isinstance(event, dict) or not all(
                isinstance(event.get(k), str) for k in ("input", "output")
            ):
                raise ReferenceSetError(f"{path}:{number}: expected an event with input and output")
            ids.append(str(event.get("event_id") or f"{path.name}:{number}"))
            inputs.append(event["input"])
            outputs.append(event["output"])
            if limit and len(ids) >= limit:
                break
    return ids, inputs, outputs


Embed = Callable[[Sequence[str]], np.ndarray]
Redact = Callable[[str], str]


def apply_request(
    store: DriftStore,
    req: ReferenceRequest,
    *,
    model: str,
    vectors: tuple[np.ndarray, np.ndarray] | None = None,
    redact: Redact = lambda s: s,
) -> dict[str, Any]:
    """Carry out ``req``; ``vectors`` are the (inputs, outputs) embeddings of a file request."""
    req = req.loaded()
    req.check()
    if req.action == "clear":
        current = store.reference(req.app, req.prompt_version)
        if current is None:
            raise ReferenceSetError(f"{req.app}|{req.prompt_version} has no reference")
        store.save_reference(Reference(**{**_fields(current), "active": False}))
        return {"cleared": current.reference_id}
    if req.action == "first":
        detail = req.detail or f"first {req.size} events from now"
        ref = Reference.from_next_events(req.app, req.prompt_version, req.size, model, detail)
        store.save_reference(ref)
        return {"reference_id": ref.reference_id, "source": "first", "size": 0, "detail": detail}
    rid = new_reference_id(req.app, req.prompt_version)
    now = datetime.now(UTC)
    rows: list[ReferenceVectorRow] = []
    if req.action == "file":
        if vectors is None:
            raise ReferenceSetError("a file reference needs its embeddings")
        ins, outs = vectors
        for i, event_id in enumerate(req.event_ids):
            for kind, vec, text in (("input", ins[i], req.inputs[i]),
                                    ("output", outs[i], req.outputs[i])):  # fmt: skip
                rows.append(_vector_row(rid, kind, event_id, now, redact(text), vec.tolist(), now))
        detail = req.detail or f"{len(req.event_ids)} events from a file"
    else:
        start, end = parse_time(req.start or ""), parse_time(req.end or "")
        found = store.range_events(req.app, req.prompt_version, start, end, req.size, model)
        if len(found) < 2:
            raise ReferenceSetError(
                f"{req.app}|{req.prompt_version} has {len(found)} stored events with {model} "
                f"embeddings in [{req.start}, {req.end}); a reference needs at least 2"
            )
        retrieval = store.retrieval_values(req.app, [f[0] for f in found])
        for event_id, ts, text_in, text_out, vec_in, vec_out in found:
            rows.append(_vector_row(rid, "input", event_id, ts, text_in, vec_in, now))
            rows.append(_vector_row(rid, "output", event_id, ts, text_out, vec_out, now))
            relevance, chunks, chars = retrieval.get(event_id, (None, 0, None))
            for kind, value in zip(RETRIEVAL_KINDS, (relevance, chunks, chars), strict=True):
                if value is not None:  # no relevance or length without context
                    rows.append(_vector_row(rid, kind, event_id, ts, "", [float(value)], now))
        detail = req.detail or f"{len(found)} stored events in [{req.start}, {req.end})"
    n = sum(r.kind == "input" for r in rows)
    store.add_vectors(rows, token("reference-set", rid))
    ref = Reference(req.app, req.prompt_version, rid, rid, req.action, detail, n, n, True, True,
                    model)  # fmt: skip
    store.save_reference(ref)
    return {"reference_id": rid, "source": req.action, "size": n, "detail": detail}


def _vector_row(
    rid: str, kind: str, event_id: str, ts: datetime, text: str, vector: list[float], now: datetime
) -> ReferenceVectorRow:
    """A vector set from outside the stream: it covers no llm.scored offset (-1)."""
    return ReferenceVectorRow(
        reference_id=rid, kind=kind, event_id=event_id, ts=ts, text=text, vector=vector,
        kafka_partition=-1, kafka_offset=-1, added_at=now,
    )  # fmt: skip


def _fields(ref: Reference) -> dict[str, Any]:
    return {k: getattr(ref, k) for k in Reference.__dataclass_fields__}
