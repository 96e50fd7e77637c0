"""`llmpulse receiver` on real parts: a Tansu broker, the real OTLP/HTTP span exporter,
an OTLP JSON POST, and the process as a user runs it.

What the receiver answers 200 to is in ``llm.otlp``, one message per trace keyed by
its id; without a broker it answers 503 with Retry-After; a bomb gets 413; a port that
is taken, or an open bind without a token, stops it (and ``llmpulse up``) at once.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.settings import load_settings
from ingest.otlp_codec import JSON, MAX_BODY_BYTES, PROTOBUF
from ingest.otlp_model import OTLP_HEADER, OTLP_REJECTED
from ingest.otlp_receiver import RETRY_AFTER_UNAVAILABLE_S
from llmpulse.broker import EmbeddedBroker, free_port
from llmpulse.cli_receiver import ReceiverProcess
from tests.integration.conftest import consume

pytestmark = pytest.mark.integration
TOPIC = "llm.otlp"


@dataclass
class Receiver:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_receiver(tmp_path: Path, bootstrap: str, **env: str) -> Receiver:
    """`llmpulse receiver` on a free loopback port; returns once it accepts connections."""
    port = free_port()
    log = tmp_path / f"receiver-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmpulse.cli", "receiver"],
            env={**os.environ, "LLMPULSE_HOME": str(tmp_path / "home"),
                 "LLMPULSE_KAFKA_BOOTSTRAP": bootstrap, "LLMPULSE_OTLP_PORT": str(port), **env},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Receiver(f"http://127.0.0.1:{port}", proc, log)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the receiver did not listen within 60 s: {log.read_text()}")


def stop_receiver(receiver: Receiver) -> int:
    if receiver.proc.poll() is None:
        receiver.proc.send_signal(signal.SIGTERM)
    try:
        return receiver.proc.wait(30)
    except subprocess.TimeoutExpired:
        receiver.proc.kill()
        receiver.proc.wait(30)
        raise


def post(url: str, body: bytes, content_type: str = PROTOBUF, **headers: str):
    """(status, headers, body) of one POST; error statuses are answers, not exceptions."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_until_kafka_takes_spans(receiver: Receiver, timeout: float = 60) -> None:
    """An empty export answers 200 once the receiver is connected (503 before)."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status, _, _ = post(receiver.url + "/v1/traces", b"")
        if status == 200:
            return
        assert status == 503, status
        time.sleep(0.2)
    raise AssertionError(f"still {status} after {timeout} s: {receiver.log.read_text()}")


def span_names(value: bytes) -> list[tuple[str, str]]:
    """(service.name, span name) of every span in one llm.otlp message."""
    req = ExportTraceServiceRequest.FromString(value)
    out = []
    for rs in req.resource_spans:
        service = next(a.value.string_value for a in rs.resource.attributes
                       if a.key == "service.name")  # fmt: skip
        out += [(service, s.name) for ss in rs.scope_spans for s in ss.spans]
    return out


@pytest.fixture
def receiver(tmp_path: Path, broker: EmbeddedBroker) -> Iterator[Receiver]:
    r = start_receiver(tmp_path, broker.bootstrap)
    try:
        wait_until_kafka_takes_spans(r)
        yield r
    finally:
        assert stop_receiver(r) == 0, r.log.read_text()  # SIGTERM is a clean stop


def recorded_spans() -> list[ReadableSpan]:
    """Two traces from the real SDK: a chat span under a request span, and a lone one."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.otlp")
    with (
        tracer.start_as_current_span("POST /ask"),
        tracer.start_as_current_span("chat gpt-4o-mini") as chat,
    ):
        chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
    with tracer.start_as_current_span("embeddings"):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_real_otlp_exporter_reaches_llm_otlp_one_message_per_trace(
    receiver: Receiver, broker: EmbeddedBroker, compression: Compression
) -> None:
    spans = recorded_spans()
    exporter = OTLPSpanExporter(endpoint=receiver.url + "/v1/traces", compression=compression)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS  # a 200 after the acks
    finally:
        exporter.shutdown()
    traces = {format(s.context.trace_id, "032x") for s in spans}
    got = consume(broker.bootstrap, TOPIC, 2)
    assert sorted(m.key.decode() for m in got) == sorted(traces)
    assert all(m.headers == ((OTLP_HEADER, b"traces"),) for m in got)
    by_trace = {m.key.decode(): sorted(span_names(m.value)) for m in got}
    chat_trace = format(next(s for s in spans if s.name == "POST /ask").context.trace_id, "032x")
    assert by_trace[chat_trace] == [
        ("support-bot", "POST /ask"),
        ("support-bot", "chat gpt-4o-mini"),
    ]
    chat = next(
        s for m in got for rs in ExportTraceServiceRequest.FromString(m.value).resource_spans
        for ss in rs.scope_spans for s in ss.spans if s.name == "chat gpt-4o-mini"
    )  # fmt: skip
    assert chat.attributes[0].value.string_value == "gpt-4o-mini"
    assert chat.parent_span_id.hex() == format(
        next(s for s in spans if s.name == "POST /ask").context.span_id, "016x"
    )


def test_an_otlp_json_post_reaches_llm_otlp_with_its_hex_ids(
    receiver: Receiver, broker: EmbeddedBroker
) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rag"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [
            {"traceId": trace_id, "spanId": span_id, "name": "retrieve", "kind": 1,
             "startTimeUnixNano": "1772323200000000000", "endTimeUnixNano": "1772323200250000000"},
            {"traceId": trace_id, "spanId": "0000000000000000", "name": "bad"},
        ]}],
    }]}  # fmt: skip
    status, headers, answer = post(receiver.url + "/v1/traces", json.dumps(body).encode(), JSON)
    assert (status, headers["Content-Type"]) == (200, JSON)
    assert json.loads(answer)["partialSuccess"] == {
        "rejectedSpans": "1", "errorMessage": "1 span rejected: span_id: all zero"}  # fmt: skip
    # the accepted span's message, and the list of what was refused, for dead_letters
    by_kind = {dict(m.headers)[OTLP_HEADER]: m for m in consume(broker.bootstrap, TOPIC, 2)}
    assert sorted(by_kind) == [OTLP_REJECTED, b"traces"]
    assert json.loads(by_kind[OTLP_REJECTED].value)["count"] == 1
    message = by_kind[b"traces"]
    assert message.key == trace_id.encode()
    span = ExportTraceServiceRequest.FromString(message.value).resource_spans[0]
    span = span.scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.span_id.hex(), span.name) == (trace_id, span_id, "retrieve")
    assert span.end_time_unix_nano - span.start_time_unix_nano == 250_000_000


def test_a_gzip_bomb_gets_413(receiver: Receiver) -> None:
    status, _, _ = post(
        receiver.url + "/v1/traces", gzip.compress(bytes(MAX_BODY_BYTES + 1)),
        **{"Content-Encoding": "gzip"},
    )  # fmt: skip
    assert status == 413


def test_without_a_broker_it_answers_503_with_retry_after(tmp_path: Path) -> None:
    r = start_receiver(tmp_path, f"127.0.0.1:{free_port()}")  # nothing listens there
    try:
        status, headers, _ = post(r.url + "/v1/traces", b"")
        assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER_UNAVAILABLE_S))
    finally:
        assert stop_receiver(r) == 0, r.log.read_text()


def test_a_broker_gone_after_the_start_is_503_not_a_hang(tmp_path: Path) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "broker-logs").start()
    r = start_receiver(tmp_path, broker.bootstrap)
    try:
        wait_until_kafka_takes_spans(r)
        broker.stop()
        body = ExportTraceServiceRequest()
        body.resource_spans.add().scope_spans.add().spans.add(
            trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="lost?"
        )
        status, headers, _ = post(r.url + "/v1/traces", body.SerializeToString())
        assert (status, headers["Retry-After"]) == (503, str(RETRY_AFTER_UNAVAILABLE_S))
    finally:
        broker.stop()
        assert stop_receiver(r) == 0, r.log.read_text()


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmpulse.cli", *args],
        env={**os.environ, "LLMPULSE_HOME": str(tmp_path / "home"),
             "LLMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["receiver", "up"])
def test_a_taken_port_stops_the_receiver_and_up_at_once(tmp_path: Path, command: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        run = _cli(tmp_path, command, LLMPULSE_OTLP_PORT=str(port))
    assert run.returncode == 1
    assert f"127.0.0.1:{port}" in run.stderr or f"port {port} on 127.0.0.1" in run.stderr
    assert "LLMPULSE_OTLP_PORT" in run.stderr


def test_an_open_bind_without_a_token_is_refused_naming_the_variable(tmp_path: Path) -> None:
    run = _cli(tmp_path, "receiver", LLMPULSE_OTLP_BIND="0.0.0.0")
    assert run.returncode == 1
    assert "LLMPULSE_OTLP_TOKEN" in run.stderr


def test_with_a_token_the_receiver_answers_401_without_it(tmp_path: Path) -> None:
    r = start_receiver(tmp_path, f"127.0.0.1:{free_port()}", LLMPULSE_OTLP_TOKEN="tok-123")
    try:
        assert post(r.url + "/v1/traces", b"")[0] == 401
        # with the token it gets past the check, to the broker that is not there
        assert post(r.url + "/v1/traces", b"", Authorization="Bearer tok-123")[0] == 503
    finally:
        assert stop_receiver(r) == 0, r.log.read_text()


def test_the_start_line_says_where_it_listens(tmp_path: Path) -> None:
    r = start_receiver(tmp_path, f"127.0.0.1:{free_port()}")
    stop_receiver(r)
    assert f"OTLP receiver listening on {r.url} (/v1/traces, /v1/logs" in r.log.read_text()


def test_up_starts_a_receiver_that_died_again_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings({
        "LLMPULSE_HOME": str(tmp_path / "home"),
        "LLMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # no broker: it answers 503
        "LLMPULSE_OTLP_PORT": str(port),
    })  # fmt: skip
    otlp = ReceiverProcess(settings).start()
    otlp.supervise()
    try:
        assert otlp.process is not None
        first = otlp.process.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            proc = otlp.process
            if proc is not None and proc.pid != first and _answers(port):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not started again: {otlp.log_path.read_text()}")
        assert post(f"http://127.0.0.1:{port}/v1/traces", b"")[0] == 503
    finally:
        otlp.stop()
    assert not _answers(port)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_receiver_whose_up_was_killed_stops_and_frees_its_port(tmp_path: Path) -> None:
    port = free_port()
    # A stand-in for `llmpulse up`: starts the receiver as up does, then waits to be killed.
    parent = subprocess.Popen(
        [sys.executable, "-c", (
            "import os, subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-m', 'llmpulse.cli', 'receiver',\n"
            "                          '--parent', str(os.getpid())], start_new_session=True)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(600)\n"
        )],
        env={**os.environ, "LLMPULSE_HOME": str(tmp_path / "home"),
             "LLMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
             "LLMPULSE_OTLP_PORT": str(port)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert time.monotonic() < deadline, "the receiver did not listen"
            time.sleep(0.1)
        parent.kill()
        parent.wait(30)
        while _alive(child):
            assert time.monotonic() < deadline + 60, "the orphaned receiver went on"
            time.sleep(0.2)
        assert not _answers(port)
    finally:
        parent.kill()
        parent.wait(30)
        parent.stdout.close()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for init to reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
