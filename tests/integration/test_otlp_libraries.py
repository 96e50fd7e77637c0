"""Apps instrumented by the real OpenTelemetry libraries, exporting through the real
OTLP/HTTP exporter to ``llmpulse up``: every call is stored once, as the app made it.

One ``llmpulse up`` (embedded broker, OTLP receiver, worker, chdb) serves the module;
each test runs one instrumented app in a child process (``tests/otlp_apps/app.py``)
against a local OpenAI-compatible stand-in whose answers and usage follow from the
request, under an app name of its own, so the stored rows can be checked exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ingest.otlp_model import otlp_event_id
from llmpulse.broker import free_port
from tests.integration.conftest import Stack
from tests.integration.test_otlp_receiver import (
    start_receiver,
    stop_receiver,
    wait_until_kafka_takes_spans,
)
from tests.otlp_apps.app import DOCUMENTS, LIBRARIES, QUESTION, SYSTEM, question, rag_system
from tests.otlp_apps.standin import REASONING_TOKENS, Standin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "otlp"
MODEL = "gpt-4o-mini-2024-07-18"  # the stand-in answers gpt-4o-mini with its dated name


@dataclass
class Up:
    env: dict[str, str]
    otlp: str
    proc: subprocess.Popen[bytes]

    def sql(self, query: str) -> list[dict[str, Any]]:
        run = subprocess.run(
            [sys.executable, "-m", "llmpulse.cli", "sql", query, "--format", "json"],
            env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    def wait_for(self, query: str, expected: int, timeout: float = 240) -> int:
        """Poll a count until it is ``expected``; return the last value."""
        deadline = time.monotonic() + timeout
        value = -1
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "llmpulse up exited"
            value = int(next(iter(self.sql(query)[0].values())))
            if value == expected:
                return value
            time.sleep(1.0)
        return value


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-protobuf"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    home = tmp_path_factory.mktemp("up") / "home"
    otlp_port = free_port()
    env = {
        **os.environ,
        "LLMPULSE_HOME": str(home),
        "LLMPULSE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "LLMPULSE_SQL_PORT": str(free_port()),
        "LLMPULSE_OTLP_PORT": str(otlp_port),
        "LLMPULSE_OTLP_TRACE_WAIT_S": "1",
        "LLMPULSE_BATCH_WITHIN_S": "0.2",
        "LLMPULSE_PRECISION": "fp32",  # the same scores on every CPU
        "LLMPULSE_MAX_LAG_S": "0",  # every event model-scored, however slow the machine
    }
    log = open(home.parent / "up.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse.cli", "up"], env=env, stdout=log, stderr=log
    )
    log.close()
    otlp = f"http://127.0.0.1:{otlp_port}"
    try:
        deadline = time.monotonic() + 180
        while not (home / "worker.json").exists() or _post(otlp + "/v1/traces", b"") != 200:
            assert proc.poll() is None, (home.parent / "up.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "llmpulse up did not start in 180 s"
            time.sleep(0.5)
        yield Up(env, otlp, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with Standin() as s:
        yield s


def run_app(otlp: str, standin: Standin, library: str, service: str, *args: str) -> list[str]:
    """Run the instrumented app to its end; the trace ids of its calls, in order."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.otlp_apps.app", "--library", library, "--otlp", otlp,
         "--openai", standin.base_url, "--service", service, *args],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    said = json.loads(run.stdout.strip().splitlines()[-1])
    assert said["failed"] == 0, said
    return list(said["traces"])


def stored(up: Up, app: str, n: int) -> list[dict[str, Any]]:
    count = f"SELECT count() FROM llm_events FINAL WHERE app = '{app}'"
    assert up.wait_for(count, n) == n
    return up.sql(
        "SELECT event_id, trace_id, span_id, model, input, output, system, input_tokens, "
        "output_tokens, cached_tokens, reasoning_tokens, cost_usd, environment, status, "
        "context, context_source, hallucination, toxicity "
        f"FROM llm_events FINAL WHERE app = '{app}' ORDER BY ts"
    )


def words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


@pytest.mark.parametrize("library", LIBRARIES)
def test_each_call_is_stored_once_with_its_app_model_tokens_text_and_price(
    up: Up, standin: Standin, library: str
) -> None:
    app = f"plain-{library}"
    traces = run_app(up.otlp, standin, library, app, "--calls", "2")
    rows = stored(up, app, 2)
    assert [r["trace_id"] for r in rows] == traces
    for i, row in enumerate(rows):
        answer = f"The answer to '{question(i)}' is 42."
        assert row["event_id"] == otlp_event_id(row["trace_id"], row["span_id"])
        assert (row["model"], row["environment"], row["status"]) == (MODEL, "test", "ok")
        assert question(i) in row["input"]
        assert row["output"] == answer
        assert row["system"] == SYSTEM
        assert int(row["input_tokens"]) == words(SYSTEM, question(i))
        assert int(row["output_tokens"]) == words(answer) + REASONING_TOKENS
        assert row["cost_usd"] is not None and float(row["cost_usd"]) > 0  # priced by alias
        assert row["context_source"] == "none"  # no retriever span in these traces
        assert row["toxicity"] is not None


@pytest.mark.parametrize("library", ["genai-spans", "openinference", "openllmetry"])
def test_a_rag_trace_takes_its_context_from_the_retriever_and_is_scored_for_grounding(
    up: Up, standin: Standin, library: str
) -> None:
    app = f"rag-{library}"
    traces = run_app(up.otlp, standin, library, app, "--rag")
    (row,) = stored(up, app, 1)
    assert row["trace_id"] == traces[0]
    assert QUESTION in row["input"]
    assert row["output"] == DOCUMENTS[0]  # the stand-in answers from the first document
    assert row["system"] == rag_system()
    assert row["context"] == list(DOCUMENTS)
    assert row["context_source"] == "trace"
    assert row["hallucination"] is not None
    spans = up.sql(f"SELECT count() AS n FROM llm_spans FINAL WHERE trace_id = '{traces[0]}'")[0][
        "n"
    ]
    assert int(spans) >= 3  # the parent, the retriever and the chat call at least


def test_a_streamed_call_is_stored_like_any_other(up: Up, standin: Standin) -> None:
    app = "stream-openinference"
    run_app(up.otlp, standin, "openinference", app, "--stream")
    (row,) = stored(up, app, 1)
    assert row["output"] == f"The answer to '{question(0)}' is 42."
    assert row["model"] == MODEL


def recent(body: bytes) -> bytes:
    """A captured export with its spans moved to the last minute: stored rows age out
    after the retention, and a test may not depend on the day it runs."""
    request = ExportTraceServiceRequest.FromString(body)
    spans = [s for r in request.resource_spans for sc in r.scope_spans for s in sc.spans]
    shift = time.time_ns() - 60_000_000_000 - min(s.start_time_unix_nano for s in spans)
    for span in spans:
        span.start_time_unix_nano += shift
        span.end_time_unix_nano += shift
        for event in span.events:
            event.time_unix_nano += shift
    return request.SerializeToString()


def test_the_same_export_sent_twice_is_stored_once(up: Up) -> None:
    capture = json.loads((FIXTURES / "captures.json").read_text())["openinference"]
    (body,) = [recent((FIXTURES / f).read_bytes()) for f in capture["files"]]
    traces = capture["report"]["traces"]
    listed = ", ".join(f"'{t}'" for t in traces)
    events = f"SELECT count() FROM llm_events FINAL WHERE trace_id IN ({listed})"
    spans = f"SELECT count() FROM llm_spans FINAL WHERE trace_id IN ({listed})"
    assert _post(up.otlp + "/v1/traces", body) == 200
    assert up.wait_for(events, len(traces)) == len(traces)
    n_spans = int(next(iter(up.sql(spans)[0].values())))
    assert n_spans >= len(traces)

    before = up.sql("SELECT toString(now64(3)) AS t")[0]["t"]
    assert _post(up.otlp + "/v1/traces", body) == 200
    # the second copy is stored (its rows are the newer versions, which merges keep) ...
    again = (
        f"SELECT count() FROM llm_spans WHERE trace_id IN ({listed}) AND ingested_at > '{before}'"
    )
    assert up.wait_for(again, n_spans) == n_spans
    renewed = (
        f"SELECT count() FROM llm_events WHERE trace_id IN ({listed}) AND ingested_at > '{before}'"
    )
    assert up.wait_for(renewed, len(traces)) == len(traces)
    # ... and replaces the first: each call and each span is there once
    assert up.wait_for(events, len(traces)) == len(traces)
    assert up.wait_for(spans, n_spans) == n_spans


def test_a_sigkilled_worker_loses_nothing_the_receiver_acknowledged(
    tmp_path: Path, stack: Stack, standin: Standin
) -> None:
    """The app exports while no worker runs: all it has is the receiver's 200s. A worker
    SIGKILLed as soon as it stored its first call, and a second one started after it,
    store every call once (tests/integration/test_otlp_worker.py kills a worker at each
    step of the commit order; this is the same promise from the exporter's side)."""
    stack.extra_env["LLMPULSE_OTLP_TRACE_WAIT_S"] = "1"
    receiver = start_receiver(tmp_path, stack.bootstrap)
    try:
        wait_until_kafka_takes_spans(receiver)
        app = "killed-openinference"
        traces = run_app(receiver.url, standin, "openinference", app, "--rag", "--calls", "20")
        assert len(traces) == 20
        count = f"SELECT count() FROM llm_events FINAL WHERE app = '{app}'"
        first = stack.start_worker()
        deadline = time.monotonic() + 240
        while stack.scalar(count) == 0:
            assert time.monotonic() < deadline, "the first worker stored nothing"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        second = stack.start_worker()
        assert stack.wait_for(count, 20) == 20
        rows = stack.sql(
            f"SELECT trace_id, context_source FROM llm_events FINAL WHERE app = '{app}'"
        )
        assert sorted(r["trace_id"] for r in rows) == sorted(traces)
        assert {r["context_source"] for r in rows} == {"trace"}
        assert stack.stop_worker(second) == 0
    finally:
        stop_receiver(receiver)
