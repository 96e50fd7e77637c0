"""The OTLP codec: export request bodies in, one Kafka message per trace id out.

Protobuf and OTLP JSON (hex ids, integer enums) decode to the same messages; gzip is
undone within 64 MiB; a span with a bad id is refused alone, naming the field; a
trace too large for one Kafka message is cut, a span too large for any is refused;
the response says what was refused and why.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from ingest.otlp_codec import (
    ERROR_MESSAGE_MAX,
    JSON,
    MAX_BODY_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOBUF,
    REJECTED_IN_MESSAGE,
    OtlpRequestError,
    decode_request,
    decompress,
    encode_response,
    rejection_message,
    split_traces,
    status_body,
    to_protobuf,
)
from ingest.otlp_model import OTLP_HEADER, Rejected

T1 = bytes.fromhex("5b8efff798038103d269b633813fc60c")
T2 = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
S1 = bytes.fromhex("eee19b7ec3c1b174")
S2 = bytes.fromhex("b7ad6b7169203331")
S3 = bytes.fromhex("00f067aa0ba902b7")


def attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(trace_id: bytes, span_id: bytes, name: str = "chat", **fields: object) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, name=name, **fields)  # type: ignore[arg-type]


def request(*groups: tuple[str, list[Span]]) -> ExportTraceServiceRequest:
    """One resource per (service.name, spans), each with one scope named after it."""
    req = ExportTraceServiceRequest()
    for service, spans in groups:
        rs = req.resource_spans.add()
        rs.resource.attributes.append(attr("service.name", service))
        rs.schema_url = f"https://schemas/{service}"
        ss = rs.scope_spans.add()
        ss.scope.name = f"scope-{service}"
        ss.spans.extend(spans)
    return req


def decode_pb(req: ExportTraceServiceRequest, encoding: str | None = None):
    body = req.SerializeToString()
    if encoding == "gzip":
        body = gzip.compress(body)
    return decode_request("traces", body, PROTOBUF, encoding)


def spans_of(value: bytes) -> list[tuple[str, str, str, str]]:
    """(service, scope, trace hex, span name) of every span in one message value."""
    req = ExportTraceServiceRequest.FromString(value)
    return [
        (_service(rs.resource), ss.scope.name, s.trace_id.hex(), s.name)
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def _service(resource: object) -> str:
    attributes = resource.attributes  # type: ignore[attr-defined]
    return attributes[0].value.string_value if attributes else ""


# --- JSON to protobuf ----------------------------------------------------------------


def test_json_hex_ids_int64_strings_enums_and_every_any_value_survive() -> None:
    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": "shop"}}]},
            "scopeSpans": [{
                "scope": {"name": "openinference", "version": "0.1"},
                "spans": [{
                    "traceId": T1.hex(), "spanId": S1.hex(), "parentSpanId": S2.hex(),
                    "name": "ChatCompletion", "kind": 3,
                    "startTimeUnixNano": "1772323200000000001",
                    "endTimeUnixNano": "1772323200500000000",
                    "attributes": [
                        {"key": "s", "value": {"stringValue": "hé"}},
                        {"key": "b", "value": {"boolValue": True}},
                        {"key": "i", "value": {"intValue": "9007199254740993"}},
                        {"key": "d", "value": {"doubleValue": 0.25}},
                        {"key": "a", "value": {"arrayValue": {"values": [
                            {"stringValue": "x"}, {"intValue": 7}]}}},
                        {"key": "kv", "value": {"kvlistValue": {"values": [
                            {"key": "role", "value": {"stringValue": "user"}}]}}},
                        {"key": "raw", "value": {"bytesValue": "AAEC/w=="}},
                        {"key": "empty", "value": {}},
                    ],
                    "events": [{"timeUnixNano": "5", "name": "gen_ai.choice"}],
                    "status": {"code": 2, "message": "rate limited"},
                }],
            }],
        }]
    }  # fmt: skip
    decoded = decode_request("traces", json.dumps(body).encode(), JSON, None)

    expected = span(
        T1, S1, "ChatCompletion", parent_span_id=S2, kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1772323200000000001, end_time_unix_nano=1772323200500000000,
        status=Status(code=Status.STATUS_CODE_ERROR, message="rate limited"),
    )  # fmt: skip
    expected.attributes.extend([
        attr("s", "hé"),
        KeyValue(key="b", value=AnyValue(bool_value=True)),
        KeyValue(key="i", value=AnyValue(int_value=9007199254740993)),
        KeyValue(key="d", value=AnyValue(double_value=0.25)),
        KeyValue(key="a", value=AnyValue(array_value={"values": [
            AnyValue(string_value="x"), AnyValue(int_value=7)]})),
        KeyValue(key="kv", value=AnyValue(kvlist_value={"values": [attr("role", "user")]})),
        KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\x01\x02\xff")),
        KeyValue(key="empty", value=AnyValue()),
    ])  # fmt: skip
    expected.events.add(time_unix_nano=5, name="gen_ai.choice")
    (message,) = decoded.messages
    got = ExportTraceServiceRequest.FromString(message.value)
    assert got.resource_spans[0].scope_spans[0].spans[0] == expected
    assert got.resource_spans[0].scope_spans[0].scope.version == "0.1"
    assert got.resource_spans[0].resource.attributes[0] == attr("service.name", "shop")
    assert got.resource_spans[0].scope_spans[0].spans[0].attributes[7].HasField("value")
    assert (decoded.accepted, decoded.rejected, decoded.json) == (1, (), True)


def test_to_protobuf_leaves_unset_fields_unset() -> None:
    from opentelemetry.proto_json.trace.v1.trace import Span as JsonSpan

    got = to_protobuf(JsonSpan.from_dict({"traceId": T1.hex(), "spanId": S1.hex()}), Span())
    assert got == Span(trace_id=T1, span_id=S1)
    assert not got.HasField("status")


def test_json_and_protobuf_bodies_of_the_same_spans_make_the_same_messages() -> None:
    pb = request(("shop", [span(T1, S1, kind=Span.SPAN_KIND_CLIENT)]))
    as_json = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "schemaUrl": "https://schemas/shop",
        "scopeSpans": [{"scope": {"name": "scope-shop"}, "spans": [
            {"traceId": T1.hex(), "spanId": S1.hex(), "name": "chat", "kind": 3}]}],
    }]}  # fmt: skip
    from_json = decode_request("traces", json.dumps(as_json).encode(), JSON, None)
    assert from_json.messages == decode_pb(pb).messages


def test_a_json_span_of_the_wrong_type_is_refused_alone_with_the_reason() -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": T1.hex(), "spanId": S1.hex(), "name": 5},
        {"traceId": "not-hex", "spanId": S2.hex()},
        {"traceId": T1.hex(), "spanId": S2.hex(), "kind": 99},
        {"traceId": T1.hex(), "spanId": S3.hex(), "name": "ok"},
    ]}]}]}  # fmt: skip
    decoded = decode_request("traces", json.dumps(body).encode(), JSON, None)
    assert decoded.accepted == 1
    assert [spans_of(m.value) for m in decoded.messages] == [[("", "", T1.hex(), "ok")]]
    reasons = [r.reason for r in decoded.rejected]
    assert [(r.trace_id, r.span_id) for r in decoded.rejected] == [
        (T1.hex(), S1.hex()), ("not-hex", S2.hex()), (T1.hex(), S2.hex())]  # fmt: skip
    assert "name" in reasons[0] and "trace_id" in reasons[1] and "99" in reasons[2]
    assert all(r.startswith("span: ") for r in reasons)


def test_a_resource_that_does_not_decode_refuses_its_spans() -> None:
    body = {"resourceSpans": [
        {"resource": {"attributes": "no"}, "scopeSpans": [{"spans": [
            {"traceId": T1.hex(), "spanId": S1.hex()}]}]},
        {"scopeSpans": [{"spans": [{"traceId": T2.hex(), "spanId": S2.hex()}]}]},
    ]}  # fmt: skip
    decoded = decode_request("traces", json.dumps(body).encode(), JSON, None)
    assert [r.span_id for r in decoded.rejected] == [S1.hex()]
    assert decoded.rejected[0].reason.startswith("resource: ")
    assert [m.key for m in decoded.messages] == [T2.hex().encode()]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "body: expected a JSON object"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected a JSON array"),
        (b'{"resourceSpans": [{"scopeSpans": 3}]}', "scopeSpans: expected a JSON array"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": ["\xff"]}]}]}', "not JSON"),
    ],
)
def test_json_that_is_not_an_export_request_is_400(body: bytes, says: str) -> None:
    with pytest.raises(OtlpRequestError) as caught:
        decode_request("traces", body, JSON, None)
    assert caught.value.status == 400
    assert says in caught.value.reason


# --- protobuf, media types, encodings ------------------------------------------------


def test_a_protobuf_request_becomes_one_message_per_trace_keyed_by_its_hex_id() -> None:
    req = request(
        ("shop", [span(T1, S1, "a"), span(T2, S2, "b")]),
        ("search", [span(T1, S3, "c")]),
    )
    decoded = decode_pb(req)
    assert [m.key for m in decoded.messages] == [T1.hex().encode(), T2.hex().encode()]
    assert all(m.headers == ((OTLP_HEADER, b"traces"),) for m in decoded.messages)
    assert spans_of(decoded.messages[0].value) == [
        ("shop", "scope-shop", T1.hex(), "a"),
        ("search", "scope-search", T1.hex(), "c"),
    ]
    assert spans_of(decoded.messages[1].value) == [("shop", "scope-shop", T2.hex(), "b")]
    assert (decoded.accepted, decoded.rejected, decoded.json) == (3, (), False)


def test_each_message_keeps_the_resource_schema_and_scope_of_its_spans() -> None:
    req = request(("shop", [span(T1, S1)]))
    req.resource_spans[0].scope_spans[0].schema_url = "https://scope-schema"
    got = ExportTraceServiceRequest.FromString(decode_pb(req).messages[0].value)
    assert got == req


def test_a_gzip_body_decodes_as_the_same_body_uncompressed() -> None:
    req = request(("shop", [span(T1, S1), span(T2, S2)]))
    assert decode_pb(req, "gzip").messages == decode_pb(req).messages


def test_a_deflate_body_as_the_python_exporter_sends_it_decodes_the_same() -> None:
    req = request(("shop", [span(T1, S1)]))
    body = zlib.compress(req.SerializeToString())
    assert decode_request("traces", body, PROTOBUF, "deflate").messages == decode_pb(req).messages


def test_gzip_of_several_members_is_read_whole() -> None:
    assert decompress(gzip.compress(b"abc") + gzip.compress(b"def"), "gzip") == b"abcdef"


def test_decompression_stops_at_the_limit_and_accepts_exactly_the_limit() -> None:
    assert decompress(gzip.compress(b"x" * 1000), "gzip", limit=1000) == b"x" * 1000
    with pytest.raises(OtlpRequestError) as caught:
        decompress(gzip.compress(b"x" * 1001), "gzip", limit=1000)
    assert caught.value.status == 413


def _bomb(size: int) -> bytes:
    """``size`` zero bytes gzipped, compressed in steps so the test never holds them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    out = [packer.compress(block) for _ in range(size >> 20)]
    out.append(packer.compress(bytes(size & ((1 << 20) - 1))))
    return b"".join(out) + packer.flush()


def test_a_gzip_bomb_over_64_mib_is_413() -> None:
    bomb = _bomb(MAX_BODY_BYTES + 1)
    assert len(bomb) < 200_000
    with pytest.raises(OtlpRequestError) as caught:
        decode_request("traces", bomb, PROTOBUF, "gzip")
    assert caught.value.status == 413


def test_a_gzip_bomb_never_allocates_more_than_the_limit() -> None:
    bomb = _bomb(64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(OtlpRequestError):
            decompress(bomb, "gzip", limit=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_an_identity_body_over_64_mib_is_413() -> None:
    with pytest.raises(OtlpRequestError) as caught:
        decompress(bytes(MAX_BODY_BYTES + 1), None)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("content_type", "encoding", "status"),
    [
        ("text/plain", None, 415),
        (None, None, 415),
        ("application/grpc", None, 415),
        (PROTOBUF, "br", 415),
        (PROTOBUF, "compress", 415),
        ("application/x-protobuf; charset=binary", "identity", 200),
        ("Application/JSON; charset=utf-8", None, 200),
    ],
)
def test_media_types_and_encodings(
    content_type: str | None, encoding: str | None, status: int
) -> None:
    body = b"{}" if content_type and "json" in content_type.lower() else b""
    if status == 200:
        assert decode_request("traces", body, content_type, encoding).messages == ()
        return
    with pytest.raises(OtlpRequestError) as caught:
        decode_request("traces", body, content_type, encoding)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", None),  # a length past the end
        (b"\xff" * 20, None),
        (b"not gzip at all", "gzip"),
        (gzip.compress(b"\x0a\x02\x0a\x00", mtime=0)[:-12], "gzip"),  # truncated
    ],
)
def test_a_body_that_does_not_decode_is_400(body: bytes, encoding: str | None) -> None:
    with pytest.raises(OtlpRequestError) as caught:
        decode_request("traces", body, PROTOBUF, encoding)
    assert caught.value.status == 400


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (span(b"", S1), "trace_id: missing"),
        (span(T1[:8], S1), "trace_id: 8 bytes, expected 16"),
        (span(bytes(16), S1), "trace_id: all zero"),
        (span(T1, b""), "span_id: missing"),
        (span(T1, S1[:4]), "span_id: 4 bytes, expected 8"),
        (span(T1, bytes(8)), "span_id: all zero"),
        (span(T1, S1, parent_span_id=S2[:4]), "parent_span_id: 4 bytes, expected 8 or none"),
    ],
)
def test_a_span_with_a_bad_id_is_refused_naming_the_field(bad: Span, reason: str) -> None:
    decoded = decode_pb(request(("shop", [bad, span(T2, S3, "good")])))
    assert decoded.rejected == (Rejected(bad.trace_id.hex(), bad.span_id.hex(), reason),)
    assert [spans_of(m.value) for m in decoded.messages] == [
        [("shop", "scope-shop", T2.hex(), "good")]]  # fmt: skip
    assert decoded.accepted == 1


def test_log_records_are_kept_keyed_by_trace_and_refused_only_for_a_malformed_id() -> None:
    req = ExportLogsServiceRequest()
    scope = req.resource_logs.add().scope_logs.add()
    scope.log_records.add(trace_id=T1, span_id=S1, event_name="gen_ai.choice")
    scope.log_records.add(event_name="no trace")
    scope.log_records.add(trace_id=T1[:3], span_id=S1, event_name="bad trace")
    scope.log_records.add(trace_id=T1, span_id=S1[:5], event_name="bad span")
    decoded = decode_request("logs", req.SerializeToString(), PROTOBUF, None)
    assert [m.key for m in decoded.messages] == [T1.hex().encode(), None]
    assert all(m.headers == ((OTLP_HEADER, b"logs"),) for m in decoded.messages)
    names = [
        [r.event_name for r in ExportLogsServiceRequest.FromString(m.value)
         .resource_logs[0].scope_logs[0].log_records]
        for m in decoded.messages
    ]  # fmt: skip
    assert names == [["gen_ai.choice"], ["no trace"]]
    assert [r.reason for r in decoded.rejected] == [
        "trace_id: 3 bytes, expected 16 or none",
        "span_id: 5 bytes, expected 8 or none",
    ]
    assert decoded.accepted == 2


def test_json_log_records_decode_with_their_body_and_ids() -> None:
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"traceId": T1.hex(), "spanId": S1.hex(), "eventName": "gen_ai.user.message",
         "severityNumber": 9, "body": {"kvlistValue": {"values": [
             {"key": "content", "value": {"stringValue": "hi"}}]}}},
        {"severityNumber": "nine"},
    ]}]}]}  # fmt: skip
    decoded = decode_request("logs", json.dumps(body).encode(), JSON, None)
    (message,) = decoded.messages
    record = ExportLogsServiceRequest.FromString(message.value).resource_logs[0]
    record = record.scope_logs[0].log_records[0]
    assert (record.trace_id, record.span_id, record.severity_number) == (T1, S1, 9)
    assert record.body.kvlist_value.values[0] == attr("content", "hi")
    assert len(decoded.rejected) == 1 and decoded.rejected[0].reason.startswith("log record: ")


# --- message size --------------------------------------------------------------------


def test_a_trace_larger_than_one_kafka_message_is_cut_into_several() -> None:
    big = "x" * 80_000
    spans = [span(T1, bytes([0, 0, 0, 0, 0, 0, 1, i]), f"s{i}", attributes=[attr("p", big)])
             for i in range(40)]  # fmt: skip
    req = request(("shop", spans[:20]), ("search", spans[20:]))
    messages, rejected = split_traces(req)
    assert rejected == []
    assert len(messages) >= 4
    assert all(len(m.value) <= MAX_MESSAGE_BYTES for m in messages)
    assert {m.key for m in messages} == {T1.hex().encode()}
    names = [name for m in messages for *_, name in spans_of(m.value)]
    assert names == [f"s{i}" for i in range(40)]
    services = [(svc, scope) for m in messages for svc, scope, *_ in spans_of(m.value)]
    assert services == [("shop", "scope-shop")] * 20 + [("search", "scope-search")] * 20


def test_a_span_larger_than_a_kafka_message_is_refused_and_says_so() -> None:
    huge = span(T1, S1, "huge", attributes=[attr("p", "x" * MAX_MESSAGE_BYTES)])
    messages, rejected = split_traces(request(("shop", [huge, span(T1, S2, "small")])))
    assert [spans_of(m.value) for m in messages] == [[("shop", "scope-shop", T1.hex(), "small")]]
    (refused,) = rejected
    assert (refused.trace_id, refused.span_id) == (T1.hex(), S1.hex())
    assert f"over the {MAX_MESSAGE_BYTES}-byte Kafka message limit" in refused.reason


def test_the_list_of_what_was_refused_fits_one_kafka_message_whatever_was_sent() -> None:
    quoted = {"traceId": T1.hex(), "spanId": S1.hex(), "startTimeUnixNano": "\U0001f600" * 195}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [quoted] * REJECTED_IN_MESSAGE}]}]}
    decoded = decode_request("traces", json.dumps(body).encode(), JSON, None)
    (listing,) = decoded.outgoing  # nothing was accepted: only the list
    assert len(listing.value) <= MAX_MESSAGE_BYTES
    assert json.loads(listing.value)["count"] == REJECTED_IN_MESSAGE


def test_the_list_stops_where_the_message_would_be_too_large_and_keeps_the_count() -> None:
    long = Rejected("\U0001f600" * 64, "\U0001f600" * 64, "\U0001f600" * 500)
    listing = rejection_message("traces", [long] * 5000)
    assert len(listing.value) <= MAX_MESSAGE_BYTES
    value = json.loads(listing.value)
    assert value["count"] == 5000
    assert 0 < len(value["rejected"]) < REJECTED_IN_MESSAGE
    assert value["rejected"][0] == {"trace_id": long.trace_id, "span_id": long.span_id,
                                    "reason": long.reason}  # fmt: skip


# --- responses -----------------------------------------------------------------------


def test_the_response_is_empty_when_everything_was_accepted() -> None:
    assert ExportTraceServiceResponse.FromString(encode_response("traces", [], False)) == (
        ExportTraceServiceResponse()
    )
    assert json.loads(encode_response("logs", [], True)) == {}


def test_partial_success_counts_the_refused_and_lists_their_reasons() -> None:
    refused = [Rejected("t", "s", "trace_id: all zero")] * 2 + [
        Rejected("t", "s", "span_id: missing")
    ]
    pb = ExportTraceServiceResponse.FromString(encode_response("traces", refused, False))
    assert pb.partial_success.rejected_spans == 3
    assert pb.partial_success.error_message == (
        "3 spans rejected: trace_id: all zero (x2); span_id: missing"
    )
    as_json = json.loads(encode_response("traces", refused, True))
    message = pb.partial_success.error_message
    assert as_json == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": message}}
    logs = ExportLogsServiceResponse.FromString(encode_response("logs", refused[:1], False))
    assert logs.partial_success.rejected_log_records == 1
    assert logs.partial_success.error_message == "1 log record rejected: trace_id: all zero"
    logs_json = json.loads(encode_response("logs", refused[:1], True))
    message = logs.partial_success.error_message
    assert logs_json == {"partialSuccess": {"rejectedLogRecords": "1", "errorMessage": message}}


def test_the_error_message_is_bounded() -> None:
    refused = [Rejected("t", "s", f"reason number {i}") for i in range(5000)]
    pb = ExportTraceServiceResponse.FromString(encode_response("traces", refused, False))
    assert pb.partial_success.rejected_spans == 5000
    assert len(pb.partial_success.error_message) == ERROR_MESSAGE_MAX
    assert pb.partial_success.error_message.startswith("5000 spans rejected: reason number 0")


def test_an_error_body_is_a_google_rpc_status_in_the_request_encoding() -> None:
    status = status_pb2.Status.FromString(status_body(503, "Kafka is away" * 20, False))
    assert (status.code, status.message) == (14, "Kafka is away" * 20)
    assert json.loads(status_body(400, "bad", True)) == {"code": 3, "message": "bad"}


# --- no input ends the receiver ------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    | st.sampled_from([T1.hex(), S1.hex(), "", "zz"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceSpans", "resourceLogs", "scopeSpans", "scopeLogs", "spans",
                         "logRecords", "resource", "scope", "attributes", "key", "value",
                         "traceId", "spanId", "parentSpanId", "kind", "status", "code",
                         "stringValue", "intValue", "arrayValue", "kvlistValue", "values",
                         "bytesValue", "body", "events", "name", "startTimeUnixNano"]),
        inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=JSON_VALUES, signal=st.sampled_from(["traces", "logs"]))
def test_any_json_is_decoded_or_refused_with_a_status(value: object, signal: str) -> None:
    body = json.dumps(value).encode()
    try:
        decoded = decode_request(signal, body, JSON, None)  # type: ignore[arg-type]
    except OtlpRequestError as exc:
        assert exc.status == 400
        return
    assert decoded.accepted >= 0 and all(isinstance(r, Rejected) for r in decoded.rejected)
    assert all(len(m.value) <= MAX_MESSAGE_BYTES for m in decoded.messages)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(body=st.binary(max_size=200), signal=st.sampled_from(["traces", "logs"]))
def test_any_bytes_are_decoded_or_refused_with_a_status(body: bytes, signal: str) -> None:
    for encoding in (None, "gzip"):
        try:
            decode_request(signal, body, PROTOBUF, encoding)  # type: ignore[arg-type]
        except OtlpRequestError as exc:
            assert exc.status == 400
