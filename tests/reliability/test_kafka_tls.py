"""Kafka over TLS end to end: the product's clients talk to a real broker through TLS only.

Tansu 0.6 cannot serve TLS itself (its ``--cert`` and ``--key`` flags exclude each
other), so a TLS-terminating TCP proxy on 127.0.0.1 stands in front of it, the way a
load balancer fronts a cluster, and Tansu advertises the proxy's address: after
bootstrap every client connection (metadata, group coordinator, fetch) still goes
through TLS. SASL is not tested end to end: Tansu's ``--authentication`` offers only
SCRAM, and its in-memory store starts without users while creating one
(``tansu user create``) needs an authenticated connection; tests/unit/test_kafka_security.py
checks the SASL arguments every client receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from core.kafka_security import aiokafka_security
from core.settings import Settings, load_settings
from ingest.producer import EventProducer
from ingest.synthetic import synthetic_events
from llmpulse.broker import _metadata_ok, free_port, tansu_binary
from tests.fixtures.tls import Certs, make_ca
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class TlsProxy:
    """Accepts TLS on ``port`` and pipes the plaintext to the broker, on its own loop."""

    def __init__(self, certs: Certs, backend_port: int) -> None:
        self.port = free_port()
        self.backend_port = backend_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs.cert, certs.key)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tls-proxy")
        self.handshakes = 0  # completed TLS handshakes: clients that really used TLS

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:  # also when cancelled at shutdown: every socket is closed, none leaks
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        try:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.gather(self._pipe(reader, b_writer), self._pipe(b_reader, writer))

    def __enter__(self) -> TlsProxy:
        self.thread.start()
        start = asyncio.start_server(self._client, "127.0.0.1", self.port, ssl=self.context)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass(frozen=True)
class TlsKafka:
    bootstrap: str  # the TLS address, the only one clients are told about
    certs: Certs
    proxy: TlsProxy

    def settings(self, **env: str) -> Settings:
        return load_settings({"LLMPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
                              "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
                              "LLMPULSE_KAFKA_SSL_CAFILE": str(self.certs.ca), **env})  # fmt: skip


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    tmp = tmp_path_factory.mktemp("tls-kafka")
    certs = make_ca(tmp / "certs")
    broker_port = free_port()
    with TlsProxy(certs, broker_port) as proxy, open(tmp / "broker.log", "wb") as log:
        advertised = f"tcp://127.0.0.1:{proxy.port}"
        broker = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
             "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        try:
            for _ in range(100):  # plaintext readiness check on the broker's own port
                if asyncio.run(_metadata_ok(f"127.0.0.1:{broker_port}")):
                    break
            yield TlsKafka(f"127.0.0.1:{proxy.port}", certs, proxy)
        finally:
            broker.terminate()
            broker.wait(10)


async def _round_trip(settings: Settings, topic: str, events: list[dict]) -> list[str]:
    security = aiokafka_security(settings)
    async with EventProducer(settings.kafka_bootstrap, topic, idempotent=False,
                             **security) as producer:  # fmt: skip
        for e in events:
            await producer.send(e)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, group_id="tls-test",
        auto_offset_reset="earliest", **security,
    )  # fmt: skip
    await consumer.start()
    try:
        got: list[str] = []
        async with asyncio.timeout(60):
            while len(got) < len(events):
                batch = await consumer.getmany(timeout_ms=1000)
                got += [json.loads(m.value)["event_id"] for ms in batch.values() for m in ms]
        return got
    finally:
        await consumer.stop()


def test_producer_and_consumer_round_trip_events_over_tls(tls_kafka: TlsKafka) -> None:
    """The SDK producer and a consumer, both built from settings, meet through TLS only."""
    events = list(synthetic_events(5, seed=3, prefix="tls"))
    before = tls_kafka.proxy.handshakes
    got = asyncio.run(_round_trip(tls_kafka.settings(), "tls.roundtrip", events))
    assert sorted(got) == sorted(e["event_id"] for e in events)
    assert tls_kafka.proxy.handshakes > before


def test_a_client_that_does_not_trust_the_ca_cannot_connect(tls_kafka: TlsKafka) -> None:
    """Without LLMPULSE_KAFKA_SSL_CAFILE the system CAs are used, and they reject the broker."""
    settings = load_settings({"LLMPULSE_KAFKA_BOOTSTRAP": tls_kafka.bootstrap,
                              "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL"})  # fmt: skip

    async def connect() -> None:
        async with EventProducer(
            settings.kafka_bootstrap,
            idempotent=False,
            request_timeout_ms=3000,
            **aiokafka_security(settings),
        ):
            pass  # fmt: skip

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())


def test_the_worker_consumes_and_stores_over_tls(tls_kafka: TlsKafka, tmp_path: Path) -> None:
    """Topic admin, the Faust consumer and producer all honour the TLS settings."""
    settings = tls_kafka.settings()
    stack = Stack(tmp_path / "home", tls_kafka.bootstrap, free_port(), extra_env={
        "LLMPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "LLMPULSE_KAFKA_SSL_CAFILE": str(tls_kafka.certs.ca),
    })  # fmt: skip
    try:
        stack.start_worker()
        events = list(synthetic_events(20, seed=4, prefix="tls-worker"))
        bad = b'{"event_id": "no-ts"}'  # a dead letter: the worker's producer writes it

        async def publish() -> None:
            async with EventProducer(settings.kafka_bootstrap, idempotent=False,
                                     **aiokafka_security(settings)) as producer:  # fmt: skip
                for e in events:
                    await producer.send(e)
                await producer.send_raw(None, bad)

        asyncio.run(publish())
        assert stack.wait_for("SELECT count() FROM llm_events FINAL", 20, timeout=120) == 20
        assert stack.wait_for("SELECT count() FROM dead_letters", 1, timeout=60) == 1
        assert stack.stop_worker(stack.workers[0]) == 0
    finally:
        stack.kill_workers()
