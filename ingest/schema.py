"""Event v1: the one contract between applications and llmpulse.

Every limit is enforced here, before anything is scored or stored, so a single
hostile or broken producer cannot exhaust the worker. ``parse_event`` never
raises on bad input: it returns a :class:`Rejection` that names the field and the
rule, which is what lands in ``dead_letters``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "LIMITS",
    "Event",
    "Feedback",
    "Rejection",
    "Usage",
    "event_to_json",
    "parse_event",
    "parse_feedback",
]


@dataclass(frozen=True)
class Limits:
    payload_bytes: int = 1_048_576
    json_depth: int = 32
    id_chars: int = 128
    label_chars: int = 256
    text_chars: int = 262_144
    context_chunks: int = 64
    context_chunk_chars: int = 65_536
    tags: int = 64
    tag_key_chars: int = 128
    tag_value_chars: int = 1024
    tokens: int = 10_000_000
    latency_ms: float = 86_400_000.0
    comment_chars: int = 8192


LIMITS = Limits()
_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(2100, 1, 1, tzinfo=UTC)


def _to_datetime(value: Any) -> datetime:
    """RFC 3339 string or epoch milliseconds, always returned in UTC."""
    if isinstance(value, bool):
        raise ValueError("expected an RFC 3339 string or epoch milliseconds, got a boolean")
    if isinstance(value, int | float):
        try:
            ts = datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("epoch milliseconds out of range") from None
    elif isinstance(value, str):
        if len(value) > 64:
            raise ValueError("timestamp string longer than 64 characters")
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an RFC 3339 timestamp") from None
        if ts.tzinfo is None:
            raise ValueError("RFC 3339 timestamp needs a UTC offset (e.g. Z)")
        ts = ts.astimezone(UTC)
    elif isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        raise ValueError("expected an RFC 3339 string or epoch milliseconds")
    if not _MIN_TS <= ts < _MAX_TS:
        raise ValueError("timestamp outside the years 2000-2099")
    return ts


Timestamp = Annotated[datetime, BeforeValidator(_to_datetime)]
Id = Annotated[str, Field(min_length=1, max_length=LIMITS.id_chars)]
Label = Annotated[str, Field(min_length=1, max_length=LIMITS.label_chars)]
Text = Annotated[str, Field(max_length=LIMITS.text_chars)]
Tokens = Annotated[int, Field(ge=0, le=LIMITS.tokens)]
Millis = Annotated[float, Field(ge=0, le=LIMITS.latency_ms)]
Chunk = Annotated[str, Field(max_length=LIMITS.context_chunk_chars)]
TagKey = Annotated[str, Field(min_length=1, max_length=LIMITS.tag_key_chars)]
TagValue = Annotated[str, Field(max_length=LIMITS.tag_value_chars)]


class Usage(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    cached_tokens: Tokens | None = None  # input tokens read from the provider's cache
    cache_write_tokens: Tokens | None = None  # input tokens written to it
    reasoning_tokens: Tokens | None = None  # output tokens spent reasoning


class Event(BaseModel):
    """One LLM call. Unknown top-level fields are kept in ``extra``, not dropped."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    event_id: Id
    ts: Timestamp
    app: Label
    model: Label
    input: Text
    output: Text
    schema_version: Literal[1] = 1
    environment: Label | None = None
    provider: Label | None = None
    prompt_id: Label | None = None
    prompt_version: Label | None = None
    variant: Label | None = None
    system: Text | None = None
    context: Annotated[list[Chunk], Field(max_length=LIMITS.context_chunks)] | None = None
    # set for OTLP LLM spans: where the context came from (see migration 0010)
    context_source: Literal["trace", "span", "none"] | None = None
    usage: Usage | None = None
    latency_ms: Millis | None = None
    ttft_ms: Millis | None = None
    status: Literal["ok", "error"] = "ok"
    error_type: Label | None = None
    user_id: Label | None = None
    session_id: Label | None = None
    trace_id: Label | None = None
    span_id: Label | None = None
    parent_span_id: Label | None = None
    tags: Annotated[dict[TagKey, TagValue], Field(max_length=LIMITS.tags)] | None = None
    cost_usd: Annotated[float, Field(ge=0)] | None = None

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Feedback(BaseModel):
    """A user's verdict on an earlier event (topic ``llm.feedback``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: Id
    ts: Timestamp
    score: Annotated[float, Field(ge=-1, le=1)]
    comment: Annotated[str, Field(max_length=LIMITS.comment_chars)] | None = None
    source: Label | None = None


@dataclass(frozen=True)
class Rejection:
    """Why a payload was refused: ``field`` is a dotted path or ``payload``."""

    field: str
    rule: str

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.rule}"


def _depth_exceeds(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _decode(payload: bytes | str) -> dict[str, Any] | Rejection:
    if len(payload) > LIMITS.payload_bytes:
        return Rejection("payload", f"larger than {LIMITS.payload_bytes} bytes")
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection("payload", f"invalid UTF-8 at byte {exc.start}")
    else:
        text = payload
    try:
        obj = json.loads(text)
    except RecursionError:
        return Rejection("payload", f"JSON nested deeper than {LIMITS.json_depth} levels")
    except ValueError as exc:
        return Rejection("payload", f"not valid JSON ({exc.args[0].split(':')[0]})")
    if not isinstance(obj, dict):
        return Rejection("payload", f"expected a JSON object, got {type(obj).__name__}")
    if _depth_exceeds(obj, LIMITS.json_depth):
        return Rejection("payload", f"JSON nested deeper than {LIMITS.json_depth} levels")
    return obj


def _first_error(exc: ValidationError) -> Rejection:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "payload"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing":
        msg = "required field is missing"
    return Rejection(loc, msg)


M = TypeVar("M", bound=BaseModel)


def _parse(payload: bytes | str, model: type[M]) -> M | Rejection:
    """Valid payloads take pydantic's JSON parser (one pass, no Python dicts in between);
    anything it refuses, or that nests too deep, goes the way it always went, so every
    rejection names the same field and rule as before."""
    if len(payload) > LIMITS.payload_bytes:
        return Rejection("payload", f"larger than {LIMITS.payload_bytes} bytes")
    try:
        parsed = model.model_validate_json(payload)
    except ValidationError:
        return _parse_slow(payload, model)
    # Known fields nest two levels at most; only unknown ones (kept in extra) can go deeper.
    if parsed.model_extra and _depth_exceeds(parsed.model_extra, LIMITS.json_depth):
        return _parse_slow(payload, model)
    return parsed


def _parse_slow(payload: bytes | str, model: type[M]) -> M | Rejection:
    """json.loads, limits, then validation: the reference for :func:`_parse`, which it
    must agree with on every payload (tests/unit/test_schema_fast.py)."""
    obj = _decode(payload)
    if isinstance(obj, Rejection):
        return obj
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        return _first_error(exc)


def parse_event(payload: bytes | str) -> Event | Rejection:
    """Validate one raw Kafka value; never raises on bad input."""
    return _parse(payload, Event)


def parse_feedback(payload: bytes | str) -> Feedback | Rejection:
    return _parse(payload, Feedback)


def event_to_json(event: Event) -> bytes:
    """Canonical wire form (what the producer SDK sends)."""
    data = event.model_dump(mode="json", exclude_none=True)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
