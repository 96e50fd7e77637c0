"""Real parts: a Tansu broker on a free loopback port and workers as subprocesses.

The embedded ClickHouse engine allows one process per data directory, so the
test process never opens it: it queries through ``llmpulse sql`` like a user.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.receivers import Receivers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, chdb_path: Path, stdin: str | None = None) -> dict:
    """Run ``script`` in a child Python with ``chdb_path`` as its argument and return its
    last stdout line, a JSON object: the embedded engine's session belongs to one
    process, so scripts that open it run apart from the test process."""
    run = subprocess.run(
        [sys.executable, "-c", script, str(chdb_path)],
        input=stdin, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert isinstance(found, dict), found
    return found


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "broker-logs")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@dataclass
class Stack:
    """One llmpulse home wired to one broker; starts workers and runs the CLI."""

    home: Path
    bootstrap: str
    sql_port: int
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # The worker's entry module; tests.reliability.faults wraps it with fault hooks.
    worker_module: str = "llmpulse.cli"
    loglevel: str = "info"  # the worker's --loglevel

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LLMPULSE_HOME": str(self.home),
            "LLMPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "LLMPULSE_SQL_PORT": str(self.sql_port),
            "LLMPULSE_BATCH_MAX": "1000",
            "LLMPULSE_BATCH_WITHIN_S": "0.2",
            # The same scores on every CPU (auto would pick bf16 only where it is native).
            "LLMPULSE_PRECISION": "fp32",
            # Every event model-scored, however slow this machine is at the moment: the
            # tests check scores, not load shedding (tests/unit/test_shedding.py does).
            "LLMPULSE_MAX_LAG_S": "0",
            **self.extra_env,
        }

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "llmpulse.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"llmpulse {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sql(self, query: str) -> list[dict]:
        return json.loads(self.cli("sql", query, "--format", "json").stdout)

    def scalar(self, query: str) -> int:
        row = self.sql(query)[0]
        return int(next(iter(row.values())))

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.home.parent / f"worker-{len(self.workers)}.out", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", self.worker_module, "worker", "--loglevel", self.loglevel],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.workers.append(proc)
        self._wait_announced(proc)
        return proc

    def _wait_announced(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """Return once the worker has written its state file, as a user would see it.

        Before that, ``llmpulse sql`` opens the engine itself and may find no tables yet.
        """
        state = self.home / "worker.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"worker exited with {proc.returncode} while starting"
            try:
                if json.loads(state.read_text())["pid"] == proc.pid:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"worker {proc.pid} did not announce itself in {timeout} s")

    def kill_workers(self) -> None:
        """Teardown: whatever a failed test left running goes, the hard way."""
        for w in self.workers:
            if w.poll() is None:
                w.kill()
                w.wait(30)

    def stop_worker(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def wait_for(self, query: str, expected: int, timeout: float = 180) -> int:
        """Poll ``query`` until it returns ``expected``; return the last value."""
        deadline = time.monotonic() + timeout
        value = -1
        while time.monotonic() < deadline:
            value = self.scalar(query)
            if value == expected:
                return value
            for w in self.workers:
                assert w.poll() in (None, 0, -9, -15), f"worker exited with {w.returncode}"
            time.sleep(1.0)
        return value


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    """PagerDuty, Slack, webhook and rollback stand-ins: one HTTP server on 127.0.0.1."""
    with Receivers() as r:
        yield r


@pytest.fixture
def stack(tmp_path: Path, broker: EmbeddedBroker) -> Iterator[Stack]:
    s = Stack(tmp_path / "home", broker.bootstrap, free_port())
    try:
        yield s
    finally:
        s.kill_workers()


def publish(bootstrap: str, payloads: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send raw (key, value) pairs as they are, the way a buggy producer would."""
    from ingest.producer import EventProducer

    async def go() -> int:
        n = 0
        async with EventProducer(bootstrap) as producer:
            for key, value in payloads:
                await producer.send_raw(key, value)
                n += 1
        return n

    return asyncio.run(go())


def consume(bootstrap: str, topic: str, n: int) -> list[Any]:
    """The first ``n`` messages of ``topic`` (all partitions, no group: no join to wait
    for), in (partition, offset) order, waiting up to 60 s."""
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        got: list[Any] = []
        try:
            async with asyncio.timeout(60):
                while len(got) < n:
                    for msgs in (await consumer.getmany(timeout_ms=500)).values():
                        got.extend(msgs)
        finally:
            await consumer.stop()
        return sorted(got, key=lambda m: (m.partition, m.offset))

    return asyncio.run(go())
