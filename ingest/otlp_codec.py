"""OTLP/HTTP export requests in, Kafka messages for ``llm.otlp`` and OTLP responses out.

Pure functions, no I/O, so the receiver (``ingest/otlp_receiver.py``) stays a thin
HTTP shell and every rule here is unit-tested on bytes. A request is decompressed
within :data:`MAX_BODY_BYTES`, decoded into the opentelemetry-proto message (OTLP
JSON through opentelemetry-proto-json, whose hex ids and integer enums are what the
OTLP spec says; ``google.protobuf.json_format`` would read the ids as base64), its
spans checked one by one, and what is accepted cut into one protobuf export request
per trace id, each under :data:`MAX_MESSAGE_BYTES`, as a Collector's ``otlp_proto``
Kafka encoding writes them: the worker reads both the same way.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto_json.collector.logs.v1 import logs_service as logs_json
from opentelemetry.proto_json.collector.trace.v1 import trace_service as trace_json
from opentelemetry.proto_json.common.v1.common import InstrumentationScope
from opentelemetry.proto_json.logs.v1.logs import LogRecord
from opentelemetry.proto_json.resource.v1.resource import Resource
from opentelemetry.proto_json.trace.v1.trace import Span

from core.errors import LlmpulseError
from ingest.otlp_model import OTLP_HEADER, OTLP_REJECTED, Rejected

__all__ = [
    "ERROR_MESSAGE_MAX",
    "JSON",
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
    "PROTOBUF",
    "REJECTED_IN_MESSAGE",
    "Decoded",
    "OtlpMessage",
    "OtlpRequestError",
    "Signal",
    "decode_body",
    "decode_request",
    "decompress",
    "encode_response",
    "media_type",
    "rejection_message",
    "split_logs",
    "split_traces",
    "status_body",
    "to_protobuf",
]

Signal = Literal["traces", "logs"]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_BODY_BYTES = 64 * 1024 * 1024  # after decompression; more is 413
# A Kafka message value; the broker's default limit is 1 MB with key, headers and
# batch framing, which the rest of the megabyte covers.
MAX_MESSAGE_BYTES = 900_000
ERROR_MESSAGE_MAX = 1000  # partial_success.error_message, in characters
_REASON_MAX = 200
# zlib window bits per Content-Encoding: gzip framing, or zlib's (HTTP "deflate")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

# gRPC codes of google.rpc.Status, which OTLP/HTTP error bodies carry.
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 413: 3, 415: 3, 429: 8, 500: 13, 503: 14}


class OtlpRequestError(LlmpulseError, ValueError):
    """A request refused as a whole: ``status`` is the HTTP status (400, 413, 415)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OtlpMessage:
    """One message for ``llm.otlp``: key is the 32-hex trace id (None without one)."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one request became: the messages to send, what was refused and why, how many
    spans (or log records) were accepted, and whether to answer in JSON."""

    signal: Signal
    messages: tuple[OtlpMessage, ...]
    rejected: tuple[Rejected, ...]
    accepted: int
    json: bool

    @property
    def outgoing(self) -> tuple[OtlpMessage, ...]:
        """What the receiver sends and waits on: the messages, then, when something was
        refused, the list of it for the worker's dead letters."""
        if not self.rejected:
            return self.messages
        return (*self.messages, rejection_message(self.signal, self.rejected))


def media_type(content_type: str | None) -> str:
    """:data:`PROTOBUF` or :data:`JSON` from a Content-Type header; else 415."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise OtlpRequestError(415, f"Content-Type {kind or 'missing'}: expected {PROTOBUF} or {JSON}")


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body as sent, gzip (or deflate, which the Python OTLP exporter offers) undone;
    never holds more than ``limit`` + 1 bytes of output, so a small bomb is refused (413)
    before it can fill memory."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        if len(body) > limit:
            raise OtlpRequestError(413, f"body over {limit} bytes")
        return body
    wbits = _WBITS.get(name)
    if wbits is None:
        raise OtlpRequestError(415, f"Content-Encoding {name}: expected gzip, deflate or identity")
    out = bytearray()
    data = body
    while data:  # a gzip body may be several members one after the other
        inflater = zlib.decompressobj(wbits)
        try:
            while not inflater.eof:
                chunk = inflater.decompress(data, limit + 1 - len(out))
                out += chunk
                if len(out) > limit:
                    raise OtlpRequestError(413, f"body over {limit} bytes after decompression")
                if not chunk and inflater.unconsumed_tail == data:
                    raise OtlpRequestError(400, f"{name} body is truncated")
                data = inflater.unconsumed_tail
        except zlib.error as exc:
            raise OtlpRequestError(400, f"{name} body is corrupt: {exc}") from None
        data = inflater.unused_data
    return bytes(out)


# --- protobuf from opentelemetry-proto-json ------------------------------------------


def to_protobuf(source: Any, target: Message) -> Message:
    """Fill ``target`` from an opentelemetry-proto-json dataclass of the same message.

    Field names are the same in both, so one walk over the protobuf descriptor does
    every OTLP message: None is unset, a dataclass a sub-message, a list a repeated
    field, an IntEnum its number."""
    for name, is_message, repeated in _fields(target):
        value = getattr(source, name, None)
        if value is None:
            continue
        if repeated:
            if not value:
                continue
            field = getattr(target, name)
            if is_message:
                for item in value:
                    to_protobuf(item, field.add())
            else:
                field.extend(value)
        elif is_message:
            sub = getattr(target, name)
            sub.SetInParent()  # present even when empty (an AnyValue with no value)
            to_protobuf(value, sub)
        else:
            setattr(target, name, value.value if isinstance(value, enum.Enum) else value)
    return target


_FIELDS: dict[Any, tuple[tuple[str, bool, bool], ...]] = {}


def _fields(message: Message) -> tuple[tuple[str, bool, bool], ...]:
    descriptor = message.DESCRIPTOR
    found = _FIELDS.get(descriptor)
    if found is None:
        found = _FIELDS[descriptor] = tuple(
            (f.name, f.message_type is not None, f.is_repeated) for f in descriptor.fields
        )
    return found


# --- shapes: traces and logs have the same nesting ------------------------------------


@dataclass(frozen=True)
class _Shape:
    signal: Signal
    request: Callable[[], Message]
    resources: str  # ExportXServiceRequest's repeated field
    scopes: str  # ResourceX's repeated field
    items: str  # ScopeX's repeated field
    item_json: Any  # the proto_json dataclass of one item
    item_proto: Callable[[], Message]
    noun: str
    json_keys: tuple[str, str, str]  # the same three fields as OTLP JSON names them
    response: Callable[[], Message]  # ExportXServiceResponse
    response_json: Any  # its proto_json dataclass, and that of its partial_success
    partial_json: Any
    rejected_count: str  # the partial_success field that counts what was refused


_TRACES = _Shape(
    "traces", trace_service_pb2.ExportTraceServiceRequest, "resource_spans", "scope_spans",
    "spans", Span, trace_pb2.Span, "span", ("resourceSpans", "scopeSpans", "spans"),
    trace_service_pb2.ExportTraceServiceResponse, trace_json.ExportTraceServiceResponse,
    trace_json.ExportTracePartialSuccess, "rejected_spans",
)  # fmt: skip
_LOGS = _Shape(
    "logs", logs_service_pb2.ExportLogsServiceRequest, "resource_logs", "scope_logs",
    "log_records", LogRecord, logs_pb2.LogRecord, "log record",
    ("resourceLogs", "scopeLogs", "logRecords"),
    logs_service_pb2.ExportLogsServiceResponse, logs_json.ExportLogsServiceResponse,
    logs_json.ExportLogsPartialSuccess, "rejected_log_records",
)  # fmt: skip
_SHAPES: dict[str, _Shape] = {"traces": _TRACES, "logs": _LOGS}


def decode_request(
    signal: Signal, body: bytes, content_type: str | None, content_encoding: str | None
) -> Decoded:
    """One ``POST /v1/traces`` or ``/v1/logs`` body, as received, to Kafka messages.

    Raises :class:`OtlpRequestError` (415 media type or encoding, 413 too large, 400
    undecodable); a bad span or log record is only refused, with its reason."""
    kind = media_type(content_type)
    return decode_body(signal, decompress(body, content_encoding), kind)


def decode_body(signal: Signal, raw: bytes, kind: str) -> Decoded:
    """A decompressed body of media type ``kind`` (:func:`media_type`) to Kafka messages;
    the receiver calls the steps apart to charge its memory budget in between."""
    shape = _SHAPES[signal]
    if kind == PROTOBUF:
        request = shape.request()
        try:
            request.ParseFromString(raw)
        except (DecodeError, RecursionError) as exc:
            raise OtlpRequestError(400, f"not a protobuf export request: {exc}") from None
        refused: list[Rejected] = []
    else:
        request, refused = _from_json(shape, raw)
    messages, rejected = _split(shape, request)
    accepted = _count(shape, request) - len(rejected)
    return Decoded(signal, tuple(messages), (*refused, *rejected), accepted, kind == JSON)


REJECTED_IN_MESSAGE = 1000  # the reasons one request's rejection message carries at most


def rejection_message(signal: Signal, rejected: Sequence[Rejected]) -> OtlpMessage:
    """What the receiver refused, for the dead-letter table: a JSON object with the
    signal, how many were refused, and the first reasons (ids as received), under the
    header value ``rejected``. The refused spans themselves are not kept: an id that does
    not decode has no trace to join, and the reason says what to fix at the source.

    The list stops before the message would pass :data:`MAX_MESSAGE_BYTES`: reasons
    quote what was sent, and a message Kafka refuses would make the request a 503
    retried for ever."""
    listed: list[dict[str, str]] = []
    size = 100  # the object around the list
    for r in rejected[:REJECTED_IN_MESSAGE]:
        item = {"trace_id": r.trace_id[:64], "span_id": r.span_id[:64], "reason": r.reason[:500]}
        size += len(json.dumps(item, ensure_ascii=False).encode()) + 2
        if size > MAX_MESSAGE_BYTES:
            break
        listed.append(item)
    value = {"signal": signal, "count": len(rejected), "rejected": listed}
    text = json.dumps(value, ensure_ascii=False)
    return OtlpMessage(None, text.encode(), ((OTLP_HEADER, OTLP_REJECTED),))


def _count(shape: _Shape, request: Message) -> int:
    return sum(
        len(getattr(scope, shape.items))
        for resource in getattr(request, shape.resources)
        for scope in getattr(resource, shape.scopes)
    )


def _from_json(shape: _Shape, raw: bytes) -> tuple[Message, list[Rejected]]:
    """Decode OTLP JSON item by item: an item that does not decode (a wrong type, an
    id that is not hex, an unknown enum value) is refused alone, with the reason."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise OtlpRequestError(400, f"not JSON: {_short(exc)}") from None
    resources_key, scopes_key, items_key = shape.json_keys
    request = shape.request()
    refused: list[Rejected] = []
    for r, resource_data in enumerate(_list(_object(data, "body"), resources_key)):
        where = f"{resources_key}[{r}]"
        resource_data = _object(resource_data, where)
        resource = getattr(request, shape.resources).add()
        resource_problem = _decode_into(
            Resource, resource_data.get("resource"), resource, "resource"
        ) or _string_into(resource_data, "schemaUrl", resource, "schema_url")
        for s, scope_data in enumerate(_list(resource_data, scopes_key, where)):
            swhere = f"{where}.{scopes_key}[{s}]"
            scope_data = _object(scope_data, swhere)
            scope = getattr(resource, shape.scopes).add()
            scope_problem = resource_problem or (
                _decode_into(InstrumentationScope, scope_data.get("scope"), scope, "scope")
                or _string_into(scope_data, "schemaUrl", scope, "schema_url")
            )
            items = getattr(scope, shape.items)
            for item_data in _list(scope_data, items_key, swhere):
                problem = scope_problem
                if problem is None:
                    try:
                        if not isinstance(item_data, dict):
                            raise TypeError(f"expected an object, got {type(item_data).__name__}")
                        item = to_protobuf(shape.item_json.from_dict(item_data), shape.item_proto())
                        items.append(item)  # only once whole: a failure adds nothing
                        continue
                    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
                        problem = f"{shape.noun}: {_short(exc)}"
                refused.append(_json_rejected(item_data, problem))
    return request, refused


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OtlpRequestError(400, f"{where}: expected a JSON object")
    return value


def _list(data: dict[str, Any], key: str, where: str = "") -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpRequestError(400, f"{where + '.' if where else ''}{key}: expected a JSON array")
    return value


def _decode_into(kind: Any, value: Any, parent: Message, name: str) -> str | None:
    """Decode an optional sub-object into ``parent.<name>``; the problem, if any."""
    if value is None:
        return None
    try:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        to_protobuf(kind.from_dict(value), getattr(parent, name))
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        return f"{name}: {_short(exc)}"
    return None


def _string_into(data: dict[str, Any], key: str, target: Message, name: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{name}: expected a string"
    setattr(target, name, value)
    return None


def _json_rejected(item: Any, reason: str) -> Rejected:
    def hex_of(key: str) -> str:
        value = item.get(key) if isinstance(item, dict) else None
        return value[:64] if isinstance(value, str) else ""

    return Rejected(trace_id=hex_of("traceId"), span_id=hex_of("spanId"), reason=reason)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:_REASON_MAX]


# --- validation and the cut into Kafka messages ---------------------------------------


def _span_problem(span: trace_pb2.Span) -> str | None:
    if len(span.trace_id) != 16:
        return _length_problem("trace_id", span.trace_id, 16)
    if not any(span.trace_id):
        return "trace_id: all zero"
    if len(span.span_id) != 8:
        return _length_problem("span_id", span.span_id, 8)
    if not any(span.span_id):
        return "span_id: all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"parent_span_id: {len(span.parent_span_id)} bytes, expected 8 or none"
    return None


def _log_problem(record: logs_pb2.LogRecord) -> str | None:
    if record.trace_id and len(record.trace_id) != 16:
        return f"trace_id: {len(record.trace_id)} bytes, expected 16 or none"
    if record.span_id and len(record.span_id) != 8:
        return f"span_id: {len(record.span_id)} bytes, expected 8 or none"
    return None


def _length_problem(name: str, value: bytes, expected: int) -> str:
    if not value:
        return f"{name}: missing"
    return f"{name}: {len(value)} bytes, expected {expected}"


def _trace_key(trace_id: bytes) -> bytes | None:
    return trace_id.hex().encode() if len(trace_id) == 16 and any(trace_id) else None


@dataclass
class _Open:
    """A message being filled: its request, a size bound, and its resource and scope
    entries by their index in the received request."""

    request: Message
    size: int = 0
    resources: dict[int, Message] = dataclasses.field(default_factory=dict)
    scopes: dict[tuple[int, int], Message] = dataclasses.field(default_factory=dict)


# Bytes of framing a bound adds per item, scope and resource entry (a tag and a length
# varint of at most 3 bytes each below 2 MiB, for each nested field), rounded up.
_ITEM_FRAMING = 8
_GROUP_FRAMING = 16


def split_traces(
    request: trace_service_pb2.ExportTraceServiceRequest,
) -> tuple[list[OtlpMessage], list[Rejected]]:
    """The valid spans as one message per trace id (more when a trace's spans exceed
    :data:`MAX_MESSAGE_BYTES`), each span with its resource and scope; the others
    refused with the field at fault."""
    return _split(_TRACES, request)


def split_logs(
    request: logs_service_pb2.ExportLogsServiceRequest,
) -> tuple[list[OtlpMessage], list[Rejected]]:
    """The log records keyed by their trace id (no key without one), cut the same way;
    only a malformed trace or span id is refused."""
    return _split(_LOGS, request)


def _split(shape: _Shape, request: Message) -> tuple[list[OtlpMessage], list[Rejected]]:
    check = _span_problem if shape is _TRACES else _log_problem
    by_key: dict[bytes | None, list[_Open]] = {}
    rejected: list[Rejected] = []
    for r, resource in enumerate(getattr(request, shape.resources)):
        resource_cost = resource.resource.ByteSize() + len(resource.schema_url.encode())
        for s, scope in enumerate(getattr(resource, shape.scopes)):
            scope_cost = scope.scope.ByteSize() + len(scope.schema_url.encode())
            for item in getattr(scope, shape.items):
                problem = check(item)
                if problem is None:
                    key = _trace_key(item.trace_id)
                    problem = _add(shape, by_key.setdefault(key, []), item, r, resource,
                                   resource_cost, s, scope, scope_cost)  # fmt: skip
                if problem is not None:
                    rejected.append(Rejected(item.trace_id.hex(), item.span_id.hex(), problem))
    headers = ((OTLP_HEADER, shape.signal.encode()),)
    messages = [
        OtlpMessage(key=key, value=part.request.SerializeToString(), headers=headers)
        for key, parts in by_key.items()
        for part in parts
    ]
    return messages, rejected


def _add(
    shape: _Shape,
    parts: list[_Open],
    item: Message,
    r: int,
    resource: Message,
    resource_cost: int,
    s: int,
    scope: Message,
    scope_cost: int,
) -> str | None:
    """Put ``item`` into the trace's last message, or a new one when it would not fit."""
    item_size = item.ByteSize() + _ITEM_FRAMING
    alone = item_size + resource_cost + scope_cost + 2 * _GROUP_FRAMING
    if alone > MAX_MESSAGE_BYTES:
        return (
            f"{shape.noun}: {item_size - _ITEM_FRAMING} bytes with its resource and scope, "
            f"over the {MAX_MESSAGE_BYTES}-byte Kafka message limit"
        )
    part = parts[-1] if parts else None
    need = alone
    if part is not None:
        need = item_size
        if (r, s) not in part.scopes:
            need += scope_cost + _GROUP_FRAMING
        if r not in part.resources:
            need += resource_cost + _GROUP_FRAMING
    if part is None or part.size + need > MAX_MESSAGE_BYTES:
        part = _Open(shape.request())
        parts.append(part)
        need = alone
    target = part.resources.get(r)
    if target is None:
        target = part.resources[r] = getattr(part.request, shape.resources).add()
        if resource.HasField("resource"):
            target.resource.CopyFrom(resource.resource)
        target.schema_url = resource.schema_url
    group = part.scopes.get((r, s))
    if group is None:
        group = part.scopes[(r, s)] = getattr(target, shape.scopes).add()
        if scope.HasField("scope"):
            group.scope.CopyFrom(scope.scope)
        group.schema_url = scope.schema_url
    getattr(group, shape.items).append(item)
    part.size += need
    return None


# --- responses ------------------------------------------------------------------------


def encode_response(signal: Signal, rejected: Sequence[Rejected], as_json: bool) -> bytes:
    """The export response: empty when all was accepted, else ``partial_success`` with
    the count and the reasons (most frequent first, within :data:`ERROR_MESSAGE_MAX`)."""
    shape = _SHAPES[signal]
    partial: dict[str, int | str] = {}
    if rejected:
        message = _error_message(rejected, shape.noun)
        partial = {shape.rejected_count: len(rejected), "error_message": message}
    if as_json:
        success = shape.partial_json(**partial) if partial else None
        return shape.response_json(partial_success=success).to_json().encode()
    response = shape.response()
    for name, value in partial.items():
        setattr(response.partial_success, name, value)
    return response.SerializeToString()


def _error_message(rejected: Iterable[Rejected], noun: str) -> str:
    reasons = Counter(r.reason for r in rejected)
    total = sum(reasons.values())
    text = f"{total} {noun}{'s' if total != 1 else ''} rejected: " + "; ".join(
        f"{reason} (x{n})" if n > 1 else reason for reason, n in reasons.most_common()
    )
    if len(text) > ERROR_MESSAGE_MAX:
        text = text[: ERROR_MESSAGE_MAX - 1] + "…"
    return text


def status_body(status: int, message: str, as_json: bool) -> bytes:
    """An OTLP/HTTP error body: a ``google.rpc.Status`` with the gRPC code matching the
    HTTP status, protobuf or JSON as the request was."""
    code = _GRPC_CODES.get(status, 2)  # 2: UNKNOWN
    message = message[:ERROR_MESSAGE_MAX]
    if as_json:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
