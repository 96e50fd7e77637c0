"""The OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/logs`` into ``llm.otlp``.

Apps already instrumented with OpenTelemetry export here unchanged. Each request is
decoded by ``ingest/otlp_codec.py`` and written to Kafka, one message per trace id;
the answer is 200 only once the broker acknowledged every message, so an exporter
that got 200 can forget the spans and a worker crash loses nothing. While Kafka
cannot take them the answer is 503 (``Retry-After``), and 429 while the receiver
already holds :data:`IN_FLIGHT_MAX_BYTES` of other requests; OTLP exporters retry
both. The receiver keeps no state between requests, so several can run behind one
load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.errors import LlmpulseError
from core.kafka_security import aiokafka_security
from core.net import is_loopback
from core.retry import Backoff
from core.settings import Settings
from ingest.otlp_codec import (
    JSON,
    MAX_BODY_BYTES,
    PROTOBUF,
    Decoded,
    OtlpMessage,
    OtlpRequestError,
    Signal,
    decode_body,
    decompress,
    encode_response,
    media_type,
    status_body,
)

__all__ = [
    "IN_FLIGHT_MAX_BYTES",
    "JSON_DECODING_FACTOR",
    "KAFKA_MAX_REQUEST_BYTES",
    "RETRY_AFTER_BUSY_S",
    "RETRY_AFTER_UNAVAILABLE_S",
    "SEND_TIMEOUT_S",
    "KafkaSink",
    "OtlpReceiver",
    "ReceiverError",
    "Sink",
    "SinkUnavailable",
    "open_receiver_problem",
]

log = logging.getLogger(__name__)

# Bytes of the requests being read, decoded or waiting for acks; past it a new
# request gets 429 (one request is always let in, so a 64 MiB export is never starved).
IN_FLIGHT_MAX_BYTES = 256 * 1024 * 1024
# Decoding OTLP JSON holds about 15 bytes of Python objects and protobuf per byte of
# text (measured on GenAI spans; protobuf holds about one), so a JSON body is charged
# for them too: else four 64 MiB JSON exports within budget would take 4 GB.
JSON_DECODING_FACTOR = 16
# How long a request waits for Kafka's acks before it gets 503: under the OTLP
# exporters' default 10 s timeout, so they hear 503 and retry instead of timing out.
SEND_TIMEOUT_S = 5.0
RETRY_AFTER_UNAVAILABLE_S = 2  # 503: Kafka is not connected or did not ack in time
RETRY_AFTER_BUSY_S = 1  # 429: the in-flight budget is spent
# The producer's request limit: one MAX_MESSAGE_BYTES value with its key, headers and
# batch framing fits, and it is Kafka's default message.max.bytes.
KAFKA_MAX_REQUEST_BYTES = 1_048_576
_READ_CHUNK = 256 * 1024
_REJECTION_LOG_S = 10.0  # rejected spans are summed up in the log at most this often
_FAILURE_LOG_S = 30.0  # failed sends are logged at most this often


class ReceiverError(LlmpulseError, RuntimeError):
    """The receiver cannot start as configured (no token off loopback, port taken)."""


class SinkUnavailable(LlmpulseError, RuntimeError):
    """Kafka cannot take the messages now; the client should retry later (503)."""


class Sink(Protocol):
    """Where accepted messages go: Kafka (:class:`KafkaSink`), or a fake in tests."""

    @property
    def ready(self) -> bool:
        """Whether a send may succeed now (False: answer 503 without reading the body)."""
        ...

    async def send(self, messages: Sequence[OtlpMessage]) -> None:
        """Return once every message is acknowledged; raise SinkUnavailable if not."""
        ...


def open_receiver_problem(settings: Settings) -> str | None:
    """Why the receiver may not start as configured: off loopback without a token."""
    if is_loopback(settings.otlp_bind) or settings.otlp_token:
        return None
    return (
        f"LLMPULSE_OTLP_BIND={settings.otlp_bind} is not a loopback address: set "
        "LLMPULSE_OTLP_TOKEN (or LLMPULSE_OTLP_TOKEN_FILE) so the OTLP receiver requires "
        "it as a bearer token"
    )


class KafkaSink:
    """An aiokafka producer with ``acks="all"`` (no idempotence: the embedded broker
    refuses it; the worker collapses duplicates by span), connected in the background.

    The receiver serves before Kafka answers, with 503s, so a receiver that starts
    before its broker, or outlives a broker restart, needs no restart itself.
    ``prepare`` (the CLI passes topic creation) runs after each connection and again
    after a failed send, at most every 10 s: a restarted in-memory broker comes back
    without its topics.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        prepare: Callable[[], Awaitable[object]] | None = None,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.otlp
        self.prepare = prepare
        self.send_timeout_s = send_timeout_s
        # Loads the certificate files now: an unusable one fails the start (a
        # KafkaSecurityError naming the setting) instead of every connection, unseen.
        self._security = aiokafka_security(settings)
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._preparing: asyncio.Task[None] | None = None
        self._prepared_at = float("-inf")
        self._failing = False
        self._failed_logged_at = float("-inf")

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Begin connecting; returns at once."""
        self._connecting = asyncio.create_task(self._connect(), name="otlp-kafka-connect")

    async def _connect(self) -> None:
        delays = Backoff(first_s=0.5, max_s=5.0).delays()
        reported = False
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=False,
                linger_ms=5,
                max_request_size=KAFKA_MAX_REQUEST_BYTES,
                request_timeout_ms=10_000,
                **self._security,
            )
            try:
                await producer.start()
            except Exception as exc:
                await producer.stop()
                if not reported:
                    log.warning(
                        "Kafka at %s does not answer (%s); the OTLP receiver answers 503 "
                        "until it does",
                        self.settings.kafka_bootstrap, exc,
                    )  # fmt: skip
                    reported = True
                await asyncio.sleep(delays())
                continue
            break
        await self._prepare()
        self._producer = producer
        log.info("OTLP receiver connected to Kafka at %s", self.settings.kafka_bootstrap)

    async def _prepare(self) -> None:
        if self.prepare is None:
            return
        self._prepared_at = time.monotonic()
        try:
            await self.prepare()
        except Exception as exc:  # the sends will say whether it mattered
            log.warning("preparing Kafka topics failed: %s", exc)

    def _prepare_again(self) -> None:
        if self.prepare is None or time.monotonic() - self._prepared_at < 10.0:
            return
        if self._preparing is None or self._preparing.done():
            self._preparing = asyncio.create_task(self._prepare(), name="otlp-kafka-prepare")

    async def send(self, messages: Sequence[OtlpMessage]) -> None:
        producer = self._producer
        if producer is None:
            raise SinkUnavailable(f"not connected to Kafka at {self.settings.kafka_bootstrap}")
        if not messages:
            return
        deadline = time.monotonic() + self.send_timeout_s
        try:
            deliveries = []
            async with asyncio.timeout(self.send_timeout_s):
                for m in messages:
                    delivery = await producer.send(
                        self.topic, m.value, key=m.key, headers=list(m.headers)
                    )
                    delivery.add_done_callback(_retrieved)  # a late failure is not logged
                    deliveries.append(delivery)
            # wait, not gather: a timeout must not cancel the producer's own futures
            left = max(0.0, deadline - time.monotonic())
            done, pending = await asyncio.wait(deliveries, timeout=left)
            if pending:
                raise TimeoutError
            for delivery in done:
                if (exc := delivery.exception()) is not None:
                    raise exc
        except (TimeoutError, KafkaError) as exc:
            self._prepare_again()
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            problem = f"Kafka did not acknowledge within {self.send_timeout_s:.0f} s ({detail})"
            now = time.monotonic()
            if now - self._failed_logged_at >= _FAILURE_LOG_S:
                log.warning("%s; answering 503 until it does", problem)
                self._failed_logged_at = now
            self._failing = True
            raise SinkUnavailable(problem) from None
        if self._failing:
            self._failing = False
            log.info("Kafka at %s acknowledges again", self.settings.kafka_bootstrap)

    async def stop(self) -> None:
        for task in (self._connecting, self._preparing):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def _retrieved(delivery: asyncio.Future[object]) -> None:
    """Mark a delivery's outcome as seen: one that fails after its request got 503 has
    nobody left to read it, and asyncio would log it as never retrieved."""
    if not delivery.cancelled():
        delivery.exception()


class OtlpReceiver:
    """The aiohttp application and its server: :meth:`start`, then :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        *,
        in_flight_max_bytes: int = IN_FLIGHT_MAX_BYTES,
    ) -> None:
        problem = open_receiver_problem(settings)
        if problem:
            raise ReceiverError(problem)
        self.settings = settings
        self.sink = sink
        self.in_flight_max_bytes = in_flight_max_bytes
        self.in_flight_bytes = 0
        self._token = settings.otlp_token
        self._runner: web.AppRunner | None = None
        self._rejected_since_log = 0
        self._rejection_example = ""
        self._rejections_logged_at = float("-inf")
        self.address = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/logs", self._logs)
        return app

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Listen on ``host:port`` (the settings' by default; port 0: any free one) and
        return the port; one log line says where."""
        host = self.settings.otlp_bind if host is None else host
        port = self.settings.otlp_port if port is None else port
        # Bodies are read raw: gzip is undone by the codec, within its limit.
        runner = web.AppRunner(self.app(), access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ReceiverError(
                f"the OTLP receiver cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(another receiver running? pick another with LLMPULSE_OTLP_PORT, or 0 "
                "to turn it off in `llmpulse up`)"
            ) from None
        self._runner = runner
        bound = int(runner.addresses[0][1]) if runner.addresses else port
        self.address = f"http://{host}:{bound}"
        auth = "bearer token required" if self._token else "no token (loopback)"
        log.info(
            "OTLP receiver listening on %s (/v1/traces, /v1/logs; %s) -> topic %s",
            self.address, auth, self.settings.topics.otlp,
        )  # fmt: skip
        return bound

    async def stop(self) -> None:
        """Stop listening and let the requests in flight finish."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "traces")

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "logs")

    def _authorized(self, request: web.Request) -> bool:
        """The bearer token, if one is set; the scheme's case does not matter (RFC 9110)."""
        if not self._token:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        same = hmac.compare_digest(given.strip().encode(), self._token.encode())
        return scheme.lower() == "bearer" and same

    async def _handle(self, request: web.Request, signal: Signal) -> web.StreamResponse:
        as_json = JSON in request.headers.get("Content-Type", "").lower()
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token", as_json,
                          {"WWW-Authenticate": "Bearer"})  # fmt: skip
        charge = _Charge(self)
        try:
            kind = media_type(request.headers.get("Content-Type"))
            as_json = kind == JSON
            length = request.content_length
            if length is not None and length > MAX_BODY_BYTES:
                raise OtlpRequestError(413, f"body over {MAX_BODY_BYTES} bytes")
            if not self.sink.ready:  # before reading: a retry storm costs no decoding
                raise SinkUnavailable("not connected to Kafka yet")
            charge.to(length or 0)
            body = await _read_body(request, charge)
            encoding = request.headers.get("Content-Encoding")
            if encoding and encoding.strip().lower() not in ("", "identity"):
                raw = await asyncio.to_thread(decompress, body, encoding)
            else:
                raw = decompress(body, encoding)
            # chunked or compressed: now the real size (both copies while decompressed),
            # and what decoding JSON holds in objects besides
            held = len(body) + (len(raw) if raw is not body else 0)
            charge.to(held + (JSON_DECODING_FACTOR * len(raw) if kind == JSON else 0))
            decoded = await asyncio.to_thread(decode_body, signal, raw, kind)
            del body, raw
            if decoded.outgoing:
                await self.sink.send(decoded.outgoing)
        except _OverBudget:
            return _error(429, "too many requests in flight", as_json,
                          {"Retry-After": str(RETRY_AFTER_BUSY_S)})  # fmt: skip
        except OtlpRequestError as exc:
            return _error(exc.status, exc.reason, as_json)
        except SinkUnavailable as exc:
            return _error(503, str(exc), as_json,
                          {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)})  # fmt: skip
        except Exception:  # a bug must cost one request, never the receiver
            log.exception("OTLP request failed")
            return _error(500, "internal error", as_json)
        finally:
            charge.release()
        if decoded.rejected:
            self._log_rejections(decoded)
        body = encode_response(signal, decoded.rejected, decoded.json)
        return web.Response(body=body, content_type=JSON if decoded.json else PROTOBUF)

    def _log_rejections(self, decoded: Decoded) -> None:
        self._rejected_since_log += len(decoded.rejected)
        self._rejection_example = self._rejection_example or decoded.rejected[0].reason
        now = time.monotonic()
        if now - self._rejections_logged_at >= _REJECTION_LOG_S:
            log.warning(
                "OTLP receiver rejected %d %s since the last report, e.g. %s",
                self._rejected_since_log, decoded.signal, self._rejection_example,
            )  # fmt: skip
            self._rejections_logged_at = now
            self._rejected_since_log = 0
            self._rejection_example = ""


class _Charge:
    """One request's share of the in-flight budget, raised as its size becomes known;
    refused (429) only while other requests hold the rest."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver
        self.bytes = 0

    def to(self, n: int) -> None:
        extra = n - self.bytes
        if extra <= 0:
            return
        receiver = self.receiver
        others = receiver.in_flight_bytes - self.bytes
        if others and others + n > receiver.in_flight_max_bytes:
            raise _OverBudget
        receiver.in_flight_bytes += extra
        self.bytes = n

    def release(self) -> None:
        self.receiver.in_flight_bytes -= self.bytes
        self.bytes = 0


class _OverBudget(LlmpulseError, RuntimeError):
    """The request turned out larger than the in-flight budget has room for: 429."""


async def _read_body(request: web.Request, charge: _Charge) -> bytes:
    """The raw body, within MAX_BODY_BYTES; a client that stops mid-body is a 400 (it
    will not read the answer, but the log gets no traceback for it). A body without a
    Content-Length (chunked) is charged as it arrives, so many of them cannot hold more
    than the in-flight budget between them."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise OtlpRequestError(413, f"body over {MAX_BODY_BYTES} bytes")
            charge.to(size)
            chunks.append(chunk)
    except (ConnectionError, asyncio.IncompleteReadError, ClientPayloadError,
            HttpProcessingError) as exc:  # fmt: skip
        raise OtlpRequestError(400, f"body not received whole: {exc}") from None
    return b"".join(chunks)


def _error(
    status: int, message: str, as_json: bool, headers: dict[str, str] | None = None
) -> web.Response:
    """An OTLP error answer: a google.rpc.Status body in the request's encoding."""
    return web.Response(
        status=status,
        body=status_body(status, message, as_json),
        content_type=JSON if as_json else PROTOBUF,
        headers=headers,
    )
