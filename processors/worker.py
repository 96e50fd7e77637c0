"""Start a worker: storage migrated, topics present, Faust running in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from alerting.rules import load_rules
from llmpulse.broker import port_in_use
from llmpulse.settings import Settings
from processors.app import SQL_PATH, create_app
from processors.batch import build_scorer
from storage.engine import Engine, EngineBusyError
from storage.migrations import migrate

__all__ = ["ensure_topics", "read_worker_state", "run_worker"]

log = logging.getLogger(__name__)
STATE_FILE = "worker.json"


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the llmpulse topics that do not exist yet; return those created."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000
        )
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"no Kafka broker answers at {settings.kafka_bootstrap} "
                    f"(LLMPULSE_KAFKA_BOOTSTRAP) after {timeout_s:.0f}s"
                ) from None
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in settings.topics.all() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, settings.partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        await admin.close()


def _state_path(settings: Settings) -> Path:
    return settings.home / STATE_FILE


def read_worker_state(settings: Settings) -> dict | None:
    """The running worker's state file, if its process is alive."""
    path = _state_path(settings)
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def _check_port_free(host: str, port: int) -> None:
    if port_in_use(host, port):
        raise WorkerError(
            f"the SQL endpoint cannot bind {host}:{port}: the port is in use "
            "(another worker?). Pick another with LLMPULSE_SQL_PORT."
        )


class WorkerError(RuntimeError):
    """The worker cannot start; the message says what to change."""


def _open_engine(settings: Settings, wait_s: float = 30.0) -> Engine:
    """Open storage; a CLI query may hold the embedded engine for a moment, so wait."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return Engine(settings.dsn, settings.clickhouse_database)
        except EngineBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run until SIGINT/SIGTERM; storage is migrated first, topics created if missing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    _check_port_free(settings.sql_bind, settings.sql_port)
    if settings.rules is not None:
        load_rules(settings.rules)  # RulesError lists every problem, before models load
    # Models first: a wrong model path fails here, before anything is held.
    log.info("loading detectors (device=%s)", settings.device)
    scorer = build_scorer(settings)
    state = _state_path(settings)
    # Announce first, so `llmpulse sql` waits for this worker's endpoint instead of
    # racing it for the embedded engine.
    state.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "sql_url": f"http://{settings.sql_bind}:{settings.sql_port}{SQL_PATH}",
                "dsn": settings.dsn,
                "started_at": time.time(),
            }
        )
    )
    try:
        engine = _open_engine(settings)
    except BaseException:
        state.unlink(missing_ok=True)
        raise
    try:
        applied = engine.call(
            migrate, engine.client, settings.clickhouse_database, ttl_days=settings.retention_days
        )
        for m in applied:
            log.info("migration %04d_%s applied", m.version, m.name)
        asyncio.run(ensure_topics(settings))
        app = create_app(settings, engine, scorer)

        @app.timer(interval=60.0)
        async def report_unknown_models() -> None:
            if scorer.cost.table.unknown:
                log.warning(
                    "events with no price (cost NULL) by model: %s",
                    dict(scorer.cost.table.unknown.most_common(10)),
                )

        worker = faust.Worker(
            app,
            loglevel=loglevel,
            logfile=str(settings.logs_dir / "worker.log"),
            quiet=True,
            redirect_stdouts=False,
        )
        # Exits with SystemExit: code 0 after a clean stop, 1 after a crash (logged).
        try:
            worker.execute_from_commandline()
        finally:
            app.llmpulse_handler.close()  # type: ignore[attr-defined]
    finally:
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
        engine.close()
