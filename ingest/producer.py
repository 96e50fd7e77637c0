"""Producer SDK: what an application calls once per LLM call.

Events are validated before they leave the process (a bad event raises
``SchemaError`` at the call site, where it can be fixed), keyed by ``event_id``,
batched, compressed and sent with ``acks=all``. Idempotence is on by default;
brokers that refuse InitProducerId (Tansu 0.6, the embedded broker, does) get a
logged fallback to plain ``acks=all`` — duplicates from producer retries are then
collapsed by ``event_id`` in storage.

With ``envelopes=True`` the producer packs the events sent within
``envelope_linger_ms`` of each other into one Kafka message (:mod:`ingest.envelope`,
up to ``envelope_max_events`` events or ``envelope_max_bytes``), which a worker
processes several times faster than one message per event. An event that arrives
alone still travels alone, exactly as without envelopes. Off by default: a worker
older than envelopes dead-letters them, so turn it on once the workers are upgraded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownError, UnsupportedVersionError

from ingest import SchemaError
from ingest.envelope import ENVELOPE_HEADER, ENVELOPE_VERSION
from ingest.schema import LIMITS, Event, Rejection, event_to_json, parse_event

__all__ = ["EventProducer", "SyncEventProducer"]

log = logging.getLogger(__name__)


def _encode(event: Event | Mapping[str, Any] | bytes) -> tuple[bytes, bytes]:
    """Validate and return (key, value)."""
    if isinstance(event, Event):
        parsed: Event | Rejection = event
    elif isinstance(event, bytes):
        parsed = parse_event(event)
    else:
        # Through JSON, so what is validated is exactly what is sent.
        parsed = parse_event(json.dumps(dict(event), default=str, ensure_ascii=False))
    if isinstance(parsed, Rejection):
        raise SchemaError(parsed)
    return parsed.event_id.encode(), event_to_json(parsed)


def _settle(
    futures: list[asyncio.Future[Any]],
    delivery: asyncio.Future[Any] | None = None,
    exc: BaseException | None = None,
) -> None:
    """Give each event of an envelope its envelope's outcome."""
    for fut in futures:
        if fut.done():
            continue
        if delivery is None:
            fut.set_exception(exc or RuntimeError("envelope not sent"))
        elif delivery.cancelled():
            fut.cancel()
        elif delivery.exception() is not None:
            fut.set_exception(delivery.exception())  # type: ignore[arg-type]
        else:
            fut.set_result(delivery.result())


class EventProducer:
    """Async producer. Use ``async with EventProducer(...) as p: await p.send(event)``."""

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        topic: str = "llm.events",
        *,
        idempotent: bool = True,
        linger_ms: int = 20,
        compression: str | None = "gzip",
        max_batch_bytes: int = 512 * 1024,
        envelopes: bool = False,
        envelope_max_events: int = 100,
        envelope_max_bytes: int = 64 * 1024,
        envelope_linger_ms: float = 20.0,
        **kafka: Any,
    ) -> None:
        if envelope_max_events < 1:
            raise ValueError("envelope_max_events must be at least 1")
        if not 0 < envelope_max_bytes <= LIMITS.payload_bytes:
            raise ValueError(f"envelope_max_bytes must be in 1..{LIMITS.payload_bytes}")
        self.topic = topic
        self.envelopes = envelopes
        self.envelope_max_events = envelope_max_events
        self.envelope_max_bytes = envelope_max_bytes
        self.envelope_linger_s = max(0.0, envelope_linger_ms) / 1000.0
        # The open envelope: (key, value, delivery future) of each event, and its size.
        self._open: list[tuple[bytes, bytes, asyncio.Future[Any]]] = []
        self._open_bytes = 0
        self._linger: asyncio.TimerHandle | None = None
        self._shipping: set[asyncio.Task[None]] = set()
        self._config = dict(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            linger_ms=linger_ms,
            compression_type=compression,
            max_batch_size=max_batch_bytes,
            **kafka,
        )
        self.idempotent = idempotent
        self._producer: AIOKafkaProducer | None = None
        self._pending: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        if self.idempotent:
            producer = AIOKafkaProducer(enable_idempotence=True, **self._config)
            sender_log = logging.getLogger("aiokafka.producer.sender")
            level = sender_log.level
            sender_log.setLevel(logging.CRITICAL)  # the refusal is reported once, below
            try:
                await producer.start()
                self._producer = producer
                return
            except (UnknownError, UnsupportedVersionError) as exc:
                await producer.stop()
                log.warning(
                    "broker refused the idempotent producer (%s); sending with acks=all "
                    "only — retried sends may duplicate, storage collapses them by event_id",
                    type(exc).__name__,
                )
                self.idempotent = False
            except BaseException:
                await producer.stop()  # an unreachable broker, a TLS failure: close, then raise
                raise
            finally:
                sender_log.setLevel(level)
        producer = AIOKafkaProducer(**self._config)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def send(self, event: Event | Mapping[str, Any] | bytes) -> asyncio.Future[Any]:
        """Validate and queue one event; returns a future that resolves on delivery (for
        an event in an envelope, to the envelope's record metadata)."""
        key, value = _encode(event)
        return await self._send_encoded(key, value)

    async def _send_encoded(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        if not self.envelopes or len(value) + 1 > self.envelope_max_bytes:
            return await self.send_raw(key, value)  # too large to share a message: alone
        if self._producer is None:
            raise RuntimeError("EventProducer.start() was not called")
        if self._open and self._open_bytes + len(value) + 1 > self.envelope_max_bytes:
            await self._ship()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        self._open.append((key, value, fut))
        self._open_bytes += len(value) + 1
        if len(self._open) >= self.envelope_max_events:
            await self._ship()
        elif len(self._open) == 1:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(self.envelope_linger_s, self._linger_over)
        return fut

    def _linger_over(self) -> None:
        self._linger = None
        task = asyncio.ensure_future(self._ship())
        self._shipping.add(task)
        task.add_done_callback(self._shipping.discard)

    async def _ship(self) -> None:
        """Send the open envelope: one event as a plain message, several as an envelope.
        A failure reaches each event's future (and ``flush``), never the caller."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        items, self._open, self._open_bytes = self._open, [], 0
        if not items:
            return
        futures = [fut for _, _, fut in items]
        try:
            assert self._producer is not None, "EventProducer.start() was not called"
            if len(items) == 1:
                key, value, _ = items[0]
                delivery = await self._producer.send(self.topic, value, key=key)
            else:
                value = b"\n".join(value for _, value, _ in items)
                headers = [(ENVELOPE_HEADER, ENVELOPE_VERSION)]
                delivery = await self._producer.send(self.topic, value, headers=headers)
        except Exception as exc:
            _settle(futures, exc=exc)
            return
        delivery.add_done_callback(lambda d: _settle(futures, delivery=d))

    async def send_raw(
        self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[Any]:
        """Queue bytes as they are, unvalidated (replays, tests of the dead-letter path;
        with ``headers`` an envelope made by :func:`ingest.envelope.encode_envelope`)."""
        if self._producer is None:
            raise RuntimeError("EventProducer.start() was not called")
        fut = await self._producer.send(self.topic, value, key=key, headers=headers)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        return fut

    async def flush(self) -> None:
        """Send the open envelope, then wait until every queued event is acknowledged;
        raise the first failure."""
        if self._producer is None:
            return
        await self._ship()
        if self._shipping:
            await asyncio.gather(*list(self._shipping))
        await self._producer.flush()
        if self._pending:
            await asyncio.gather(*list(self._pending))

    async def stop(self) -> None:
        if self._producer is not None:
            try:
                await self.flush()
            finally:
                await self._producer.stop()
                self._producer = None

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class SyncEventProducer:
    """Blocking facade for non-async apps: runs an EventProducer on a background loop."""

    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._async = EventProducer(bootstrap_servers, **kwargs)
        try:
            self._call(self._async.start())
        except BaseException:
            self._shutdown_loop()
            raise

    def _call(self, coro: Any, timeout: float | None = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def send(self, event: Event | Mapping[str, Any] | bytes) -> Future[Any]:
        """Validate here (raises SchemaError at once) and queue; returns a delivery future."""
        key, value = _encode(event)
        inner = self._call(self._async._send_encoded(key, value))
        outer: Future[Any] = Future()

        def relay(f: asyncio.Future[Any]) -> None:
            if f.exception() is not None:
                outer.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                outer.set_result(f.result())

        self._loop.call_soon_threadsafe(inner.add_done_callback, relay)
        return outer

    def flush(self, timeout: float | None = 60) -> None:
        self._call(self._async.flush(), timeout)

    def close(self) -> None:
        try:
            self._call(self._async.stop())
        except KafkaError as exc:
            log.error("events still unsent at close: %s", exc)
            raise
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SyncEventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
