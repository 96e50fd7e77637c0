"""``llmpulse receiver``: the OTLP/HTTP receiver alone, and as ``llmpulse up`` runs it.

Alone it serves against any Kafka (``LLMPULSE_KAFKA_BOOTSTRAP`` with the Kafka
security settings); it is stateless, so several can sit behind one load balancer.
``llmpulse up`` runs the same command as a supervised child process
(:class:`ReceiverProcess`): a worker that crashes or is restarted does not take the
receiver's event loop with it, and a receiver that dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import click

from core.net import port_in_use
from core.settings import Settings
from ingest.otlp_receiver import KafkaSink, OtlpReceiver, ReceiverError, open_receiver_problem
from llmpulse.cli_common import load_cli_settings
from llmpulse.supervision import SupervisedProcess

__all__ = ["ReceiverProcess", "receiver", "receiver_endpoint"]

log = logging.getLogger(__name__)
PARENT_POLL_S = 1.0  # how often a child of `llmpulse up` checks that up is still there
# aiokafka logs each failed reconnect (ten a second while Kafka is down): each of its
# messages is let through once in this long
KAFKA_LOG_EVERY_S = 30.0


class _OncePer(logging.Filter):
    """Let each message (by its format string) of loggers under ``prefix`` through once
    per ``seconds``; the receiver's 503s already say Kafka is away."""

    def __init__(self, seconds: float, prefix: str) -> None:
        super().__init__()
        self.seconds = seconds
        self.prefix = prefix
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.seconds:
            return False
        self._last[key] = now
        return True


def receiver_endpoint(settings: Settings) -> str:
    return f"http://{settings.otlp_bind}:{settings.otlp_port}"


@click.command()
@click.option("--parent", type=int, default=None, hidden=True,
              help="Stop when this process is gone (set by llmpulse up).")  # fmt: skip
def receiver(parent: int | None) -> None:
    """Run the OTLP/HTTP receiver alone: POST /v1/traces and /v1/logs into llm.otlp.

    Listens on LLMPULSE_OTLP_BIND:LLMPULSE_OTLP_PORT and writes to the Kafka at
    LLMPULSE_KAFKA_BOOTSTRAP, creating the topics that are missing. Answers 503 while
    Kafka does not answer. Off loopback it requires LLMPULSE_OTLP_TOKEN.
    """
    settings = load_cli_settings()
    problem = open_receiver_problem(settings)
    if problem:
        raise click.ClickException(problem)
    if settings.otlp_port == 0:
        raise click.ClickException(
            "LLMPULSE_OTLP_PORT=0 turns the receiver off; set the port it should listen on"
        )
    for name in ("ingest.otlp_receiver", __name__):  # the start line, topics created
        logging.getLogger(name).setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_OncePer(KAFKA_LOG_EVERY_S, "aiokafka"))
    try:
        asyncio.run(_serve(settings, parent))
    except ReceiverError as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(settings: Settings, parent: int | None) -> None:
    async def create_topics() -> None:
        from processors.worker import ensure_topics  # Faust: only once Kafka answers

        created = await ensure_topics(settings, timeout_s=10.0)
        if created:
            log.info("created Kafka topics: %s", ", ".join(created))

    sink = KafkaSink(settings, prepare=create_topics)
    server = OtlpReceiver(settings, sink)
    await server.start()  # first: a port that is taken fails the command at once
    await sink.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_watch_parent(parent, stop)) if parent else None
    try:
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await server.stop()  # the requests in flight finish first
        await sink.stop()


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """A receiver whose ``llmpulse up`` was killed stops instead of holding the port."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_POLL_S)
    log.warning("llmpulse up (pid %d) is gone; the receiver stops", parent)
    stop.set()


class ReceiverProcess(SupervisedProcess):
    """``llmpulse receiver`` as a child of ``llmpulse up``, in its own session (a Ctrl-C
    reaches the worker, which stops first; ``stop`` ends the receiver after it), with
    its output in ``receiver.log``; :meth:`supervise` starts it again if it dies."""

    what = "the OTLP receiver"
    thread_name = "llmpulse-receiver"
    stop_timeout_s = 20.0  # the requests in flight wait up to 5 s for Kafka's acks

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.logs_dir / "receiver.log")
        self.settings = settings
        self.host = settings.otlp_bind
        self.port = settings.otlp_port

    def check(self) -> None:
        """Raise ReceiverError for what would stop the child: no token off loopback, a
        port already taken."""
        problem = open_receiver_problem(self.settings)
        if problem:
            raise ReceiverError(problem)
        if port_in_use(self.host, self.port):
            raise ReceiverError(
                f"port {self.port} on {self.host} is already in use, so the OTLP receiver "
                "cannot start. Free it, pick another with LLMPULSE_OTLP_PORT, or set "
                "LLMPULSE_OTLP_PORT=0 to run without the receiver."
            )

    def start(self, timeout_s: float = 60.0) -> ReceiverProcess:
        """Start the child and return once it accepts connections."""
        self.check()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        try:
            proc = self.process = subprocess.Popen(
                [sys.executable, "-m", "llmpulse.cli", "receiver", "--parent", str(os.getpid())],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self._env(),
            )  # fmt: skip
        finally:
            out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.process = None
                raise ReceiverError(
                    f"the OTLP receiver exited with code {proc.returncode}: "
                    f"{self._log_since(offset) or 'no output'} (log: {self.log_path})"
                )
            if _accepts(self.host, self.port):
                return self
            time.sleep(0.1)
        self._terminate()
        raise ReceiverError(f"the OTLP receiver did not listen within {timeout_s:.0f}s")

    def _env(self) -> dict[str, str]:
        """The environment, with the settings the child must share with ``up`` made
        explicit: the same broker, home and address, wherever ``up`` got them."""
        s = self.settings
        return {
            **os.environ,
            "LLMPULSE_HOME": str(s.home),
            "LLMPULSE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "LLMPULSE_OTLP_BIND": self.host,
            "LLMPULSE_OTLP_PORT": str(self.port),
        }

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip()]
        return " | ".join(lines[-3:])


def _accepts(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a wildcard bind through loopback)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    with contextlib.suppress(OSError), socket.create_connection((target, port), timeout=1.0):
        return True
    return False
