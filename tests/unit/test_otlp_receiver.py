"""The OTLP/HTTP receiver over real HTTP on 127.0.0.1, with a fake Kafka.

200 only once every message is acknowledged; 400, 413 and 415 for bodies it cannot
take; 401 without the token; 429 and 503 with Retry-After while it cannot take more
now; and no input ends the server.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from core.kafka_security import KafkaSecurityError
from core.settings import Settings, load_settings
from ingest.otlp_codec import JSON, MAX_BODY_BYTES, PROTOBUF, OtlpMessage
from ingest.otlp_model import OTLP_HEADER, OTLP_REJECTED
from ingest.otlp_receiver import (
    JSON_DECODING_FACTOR,
    RETRY_AFTER_BUSY_S,
    RETRY_AFTER_UNAVAILABLE_S,
    KafkaSink,
    OtlpReceiver,
    ReceiverError,
    SinkUnavailable,
)

T1 = bytes.fromhex("5b8efff798038103d269b633813fc60c")
T2 = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
S1 = bytes.fromhex("eee19b7ec3c1b174")


class FakeSink:
    """Records what it is sent; can be not ready, fail, or hold a send until released."""

    def __init__(self) -> None:
        self.ready = True
        self.sent: list[OtlpMessage] = []
        self.error: BaseException | None = None
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def send(self, messages: Sequence[OtlpMessage]) -> None:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        self.sent.extend(messages)


def traces(*trace_ids: bytes, pad: int = 0) -> bytes:
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    for i, trace_id in enumerate(trace_ids):
        s = scope.spans.add(trace_id=trace_id, span_id=bytes([1] * 7 + [i + 1]), name="chat")
        if pad:
            s.attributes.add(key="pad").value.string_value = "x" * pad
    return req.SerializeToString()


def settings(**overrides: Any) -> Settings:
    return load_settings({}, **overrides)


Scenario = Callable[[aiohttp.ClientSession, str, FakeSink, OtlpReceiver], Awaitable[None]]


def serve(scenario: Scenario, config: Settings | None = None, **receiver: Any) -> None:
    """Run ``scenario`` against a receiver on a free loopback port."""

    async def main() -> None:
        sink = FakeSink()
        server = OtlpReceiver(config or settings(), sink, **receiver)
        port = await server.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                await scenario(http, f"http://127.0.0.1:{port}", sink, server)
            # one turn of the loop lets the server see the client's connections close:
            # else a connection left mid-body would hold stop() for aiohttp's 10 s linger
            await asyncio.sleep(0)
        finally:
            await server.stop()

    asyncio.run(main())


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    content_type: str = PROTOBUF,
    **headers: str,
) -> tuple[int, dict[str, str], bytes]:
    data = io.BytesIO(body) if len(body) > 1 << 20 else body  # large: aiohttp streams it
    async with http.post(url, data=data, headers={"Content-Type": content_type, **headers}) as r:
        return r.status, dict(r.headers), await r.read()


def test_accepted_spans_reach_kafka_keyed_by_trace_and_the_answer_is_200() -> None:
    async def scenario(http, base, sink, _) -> None:
        status, headers, body = await post(http, base + "/v1/traces", traces(T1, T2, T1))
        assert status == 200
        assert headers["Content-Type"] == PROTOBUF
        assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
        assert [m.key for m in sink.sent] == [T1.hex().encode(), T2.hex().encode()]
        assert all(m.headers == ((OTLP_HEADER, b"traces"),) for m in sink.sent)

    serve(scenario)


def test_log_records_go_to_kafka_with_the_logs_header() -> None:
    req = ExportLogsServiceRequest()
    req.resource_logs.add().scope_logs.add().log_records.add(trace_id=T1, span_id=S1)

    async def scenario(http, base, sink, _) -> None:
        status, _, _ = await post(http, base + "/v1/logs", req.SerializeToString())
        assert status == 200
        assert [(m.key, m.headers) for m in sink.sent] == [
            (T1.hex().encode(), ((OTLP_HEADER, b"logs"),))
        ]

    serve(scenario)


def test_the_answer_waits_for_the_acknowledgement() -> None:
    async def scenario(http, base, sink, _) -> None:
        sink.hold = asyncio.Event()
        answer = asyncio.ensure_future(post(http, base + "/v1/traces", traces(T1)))
        await sink.entered.wait()
        done, _ = await asyncio.wait({answer}, timeout=0.5)  # a premature 200 would come
        assert not done and sink.sent == []
        sink.hold.set()
        status, _, _ = await answer
        assert status == 200 and len(sink.sent) == 1

    serve(scenario)


def test_a_json_request_gets_a_json_answer_with_partial_success() -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": T1.hex(), "spanId": S1.hex()},
        {"traceId": T2.hex(), "spanId": "0000000000000000"},
    ]}]}]}  # fmt: skip

    async def scenario(http, base, sink, _) -> None:
        status, headers, answer = await post(
            http, base + "/v1/traces", json.dumps(body).encode(), JSON
        )
        assert (status, headers["Content-Type"]) == (200, JSON)
        partial = {"rejectedSpans": "1", "errorMessage": "1 span rejected: span_id: all zero"}
        assert json.loads(answer) == {"partialSuccess": partial}
        assert [m.key for m in sink.sent] == [T1.hex().encode(), None]

    serve(scenario)


def test_what_was_refused_is_sent_too_for_the_worker_s_dead_letters() -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": T2.hex(), "spanId": "0000000000000000"},
    ]}]}]}  # fmt: skip

    async def scenario(http, base, sink, _) -> None:
        status, _, _ = await post(http, base + "/v1/traces", json.dumps(body).encode(), JSON)
        assert status == 200
        (listed,) = sink.sent
        assert listed.headers == ((OTLP_HEADER, OTLP_REJECTED),)
        assert json.loads(listed.value) == {
            "signal": "traces",
            "count": 1,
            "rejected": [
                {"trace_id": T2.hex(), "span_id": "0000000000000000",
                 "reason": "span_id: all zero"}
            ],
        }  # fmt: skip

    serve(scenario)


def test_a_gzip_body_is_accepted() -> None:
    async def scenario(http, base, sink, _) -> None:
        status, _, _ = await post(
            http, base + "/v1/traces", gzip.compress(traces(T1)), **{"Content-Encoding": "gzip"}
        )
        assert status == 200 and [m.key for m in sink.sent] == [T1.hex().encode()]

    serve(scenario)


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status"),
    [
        (b"\xff" * 10, PROTOBUF, {}, 400),
        (b"{", JSON, {}, 400),
        (b"", "text/plain", {}, 415),
        (b"", PROTOBUF, {"Content-Encoding": "br"}, 415),
        (gzip.compress(bytes(MAX_BODY_BYTES + 1)), PROTOBUF, {"Content-Encoding": "gzip"}, 413),
    ],
    ids=["bad-protobuf", "bad-json", "text-plain", "brotli", "gzip-bomb"],
)
def test_a_body_it_cannot_take_gets_its_status_and_a_reason(
    body: bytes, content_type: str, headers: dict[str, str], status: int
) -> None:
    async def scenario(http, base, sink, _) -> None:
        got, _, answer = await post(http, base + "/v1/traces", body, content_type, **headers)
        assert got == status
        if content_type == JSON:
            assert json.loads(answer)["message"]
        else:
            assert status_pb2.Status.FromString(answer).message
        assert sink.sent == []
        ok, _, _ = await post(http, base + "/v1/traces", traces(T1))  # still serving
        assert ok == 200

    serve(scenario)


def test_a_body_over_64_mib_is_413() -> None:
    async def scenario(http, base, sink, _) -> None:
        status, _, answer = await post(http, base + "/v1/traces", bytes(MAX_BODY_BYTES + 1))
        assert status == 413
        assert "body over" in status_pb2.Status.FromString(answer).message

    serve(scenario)


def test_unknown_paths_and_methods_are_refused() -> None:
    async def scenario(http, base, sink, _) -> None:
        assert (await post(http, base + "/v1/metrics", traces(T1)))[0] == 404
        async with http.get(base + "/v1/traces") as r:
            assert r.status == 405

    serve(scenario)


def test_kafka_not_connected_is_503_with_retry_after() -> None:
    async def scenario(http, base, sink, _) -> None:
        sink.ready = False
        status, headers, answer = await post(http, base + "/v1/traces", traces(T1))
        assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER_UNAVAILABLE_S))
        assert status_pb2.Status.FromString(answer).code == 14  # UNAVAILABLE

    serve(scenario)


def test_kafka_not_acknowledging_is_503_with_retry_after() -> None:
    async def scenario(http, base, sink, _) -> None:
        sink.error = SinkUnavailable("Kafka did not acknowledge within 5 s")
        status, headers, answer = await post(http, base + "/v1/traces", traces(T1))
        assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER_UNAVAILABLE_S))
        assert "did not acknowledge" in status_pb2.Status.FromString(answer).message

    serve(scenario)


def test_past_the_in_flight_budget_a_request_gets_429_with_retry_after() -> None:
    async def scenario(http, base, sink, server) -> None:
        sink.hold = asyncio.Event()
        first = asyncio.ensure_future(post(http, base + "/v1/traces", traces(T1, pad=600)))
        await sink.entered.wait()
        status, headers, _ = await post(http, base + "/v1/traces", traces(T2, pad=600))
        assert (status, headers["Retry-After"]) == (429, str(RETRY_AFTER_BUSY_S))
        sink.hold.set()
        assert (await first)[0] == 200
        assert server.in_flight_bytes == 0
        assert (await post(http, base + "/v1/traces", traces(T2, pad=600)))[0] == 200

    serve(scenario, in_flight_max_bytes=1000)


def test_a_json_body_is_charged_for_what_decoding_it_holds() -> None:
    span = {"traceId": T2.hex(), "spanId": S1.hex(), "name": "x" * 2000}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    assert len(body) * JSON_DECODING_FACTOR > 20_000 > len(body) + 1000  # as protobuf: in

    async def scenario(http, base, sink, server) -> None:
        sink.hold = asyncio.Event()
        first = asyncio.ensure_future(post(http, base + "/v1/traces", traces(T1, pad=600)))
        await sink.entered.wait()
        try:
            async with asyncio.timeout(30):  # let in, it would wait on the held sink
                status, headers, _ = await post(http, base + "/v1/traces", body, JSON)
        finally:
            sink.hold.set()
        assert (status, headers["Retry-After"]) == (429, str(RETRY_AFTER_BUSY_S))
        assert (await first)[0] == 200
        assert (await post(http, base + "/v1/traces", body, JSON))[0] == 200  # alone: let in

    serve(scenario, in_flight_max_bytes=20_000)


def test_a_chunked_body_is_charged_as_it_arrives_and_refused_before_its_end() -> None:
    async def scenario(http, base, sink, server) -> None:
        sink.hold = asyncio.Event()
        first = asyncio.ensure_future(post(http, base + "/v1/traces", traces(T1, pad=600)))
        await sink.entered.wait()
        never = asyncio.Event()

        async def endless() -> Any:  # no Content-Length, and the body never ends
            yield bytes(700)
            yield bytes(700)
            await never.wait()

        try:
            async with asyncio.timeout(30):  # uncharged, the server would wait for the end
                headers = {"Content-Type": PROTOBUF}
                async with http.post(base + "/v1/traces", data=endless(), headers=headers) as r:
                    assert (r.status, r.headers["Retry-After"]) == (429, str(RETRY_AFTER_BUSY_S))
        finally:
            never.set()
        sink.hold.set()
        assert (await first)[0] == 200
        assert server.in_flight_bytes == 0

    serve(scenario, in_flight_max_bytes=1000)


def test_one_request_is_let_in_however_large_while_nothing_else_is_in_flight() -> None:
    async def scenario(http, base, sink, server) -> None:
        assert (await post(http, base + "/v1/traces", traces(T1, pad=5000)))[0] == 200

    serve(scenario, in_flight_max_bytes=100)


def test_a_failure_of_its_own_is_500_and_the_receiver_goes_on() -> None:
    async def scenario(http, base, sink, server) -> None:
        sink.error = RuntimeError("a bug")
        assert (await post(http, base + "/v1/traces", traces(T1)))[0] == 500
        sink.error = None
        assert (await post(http, base + "/v1/traces", traces(T1)))[0] == 200
        assert server.in_flight_bytes == 0

    serve(scenario)


TOKEN = "s3cret-token"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong", 401),
        (TOKEN, 401),
        (f"Basic {TOKEN}", 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
    ],
)
def test_with_a_token_set_the_bearer_token_is_required(
    authorization: str | None, status: int
) -> None:
    async def scenario(http, base, sink, _) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        got, answer_headers, _ = await post(http, base + "/v1/traces", traces(T1), **headers)
        assert got == status
        if status == 401:
            assert answer_headers["WWW-Authenticate"] == "Bearer" and sink.sent == []

    serve(scenario, settings(otlp_token=TOKEN))


def test_off_loopback_it_refuses_to_start_without_a_token() -> None:
    with pytest.raises(ReceiverError, match="LLMPULSE_OTLP_TOKEN"):
        OtlpReceiver(settings(otlp_bind="0.0.0.0"), FakeSink())
    OtlpReceiver(settings(otlp_bind="0.0.0.0", otlp_token=TOKEN), FakeSink())  # starts


def test_unusable_kafka_certificates_stop_the_sink_at_start_naming_the_setting(
    tmp_path: Path,
) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("this is not a certificate")
    config = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=junk)
    with pytest.raises(KafkaSecurityError, match="LLMPULSE_KAFKA_SSL_CAFILE="):
        KafkaSink(config)  # not a connection task that fails unseen, answering 503


def test_a_taken_port_is_a_clear_error() -> None:
    async def scenario(http, base, sink, _) -> None:
        port = int(base.rsplit(":", 1)[1])
        other = OtlpReceiver(settings(), FakeSink())
        with pytest.raises(ReceiverError, match=f"cannot listen on 127.0.0.1:{port}"):
            await other.start("127.0.0.1", port)

    serve(scenario)
