"""Start a worker: storage migrated, topics present, Faust running in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from alerting.rules import load_rules
from core.errors import LlmpulseError
from core.kafka_security import KafkaSecurityError, aiokafka_security
from core.net import port_in_use
from core.retry import Backoff
from core.settings import Settings
from processors.app import create_app
from processors.batch import build_scorer
from processors.handler import StoredOffsets, error_chain
from processors.http import SQL_PATH, open_endpoint_problem
from storage.engine import Engine, EngineBusyError, StorageError
from storage.migrations import migrate

__all__ = [
    "BrokerWatch",
    "ensure_topics",
    "forget_commits",
    "read_worker_state",
    "run_worker",
    "worker_topics",
]

log = logging.getLogger(__name__)
STATE_FILE = "worker.json"
SERVER_WAIT_S = 120.0  # how long a worker waits at start for a ClickHouse server to answer
BROKER_WATCH_S = 1.0  # how often the worker reads the broker's cluster id
REWIND_WINDOW_S = 60.0  # a rebalance this soon after a broker lost its state reads again
BROKER_POLL = Backoff(first_s=0.5, max_s=4.0)  # a broker still starting
ENGINE_BUSY_POLL = Backoff(first_s=0.2, max_s=2.0)  # a CLI query holding the embedded engine


def worker_topics(settings: Settings) -> list[str]:
    """Every topic the worker reads or writes: llmpulse's, and the OpenTelemetry
    Collector's export topics when set (created here so the worker can subscribe
    before the Collector's first export)."""
    extra = [settings.otlp_collector_traces_topic, settings.otlp_collector_logs_topic]
    return list(dict.fromkeys([*settings.topics.all(), *(t for t in extra if t)]))


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the llmpulse topics that do not exist yet; return those created."""
    deadline = time.monotonic() + timeout_s
    delay = BROKER_POLL.delays()
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=10_000,
            **aiokafka_security(settings),
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
            await asyncio.sleep(delay())
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in worker_topics(settings) if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, settings.partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        await admin.close()


class BrokerWatch:
    """Notices a Kafka broker that came back without its state, and recovers from it.

    The embedded broker keeps everything in memory and gets a new cluster id at each
    start: after a restart it has no topics and no committed offsets, and its logs begin
    again at offset 0. The consumer would go on from its old positions, skip the new
    events below them, and could commit those positions to the new broker. So when the
    cluster id changes, the watch re-creates the topics and reads every assigned
    partition from the start: at once, and again after the rebalance that follows (the
    group, too, was lost). Replays are harmless, since every write is idempotent. Apache
    Kafka keeps its cluster id and its state across restarts, so there the watch only
    reads the id.
    """

    def __init__(
        self, app: faust.App, settings: Settings, stored: StoredOffsets | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.stored = stored
        self.cluster_id: str | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._rewinds_left = 0
        self._rewind_until = 0.0
        self._rewound_at: int | None = None  # app.rebalancing_count at the last rewind

    async def run(self) -> None:
        try:
            while not self.app.should_stop:
                await asyncio.sleep(BROKER_WATCH_S)
                await self.check()
        finally:
            if self._admin is not None:
                await self._admin.close()

    async def _current_cluster_id(self) -> str | None:
        """The broker's cluster id; None while no broker answers."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.kafka_bootstrap,
                request_timeout_ms=5_000,
                **aiokafka_security(self.settings),
            )
            try:
                await admin.start()
            except KafkaError:
                await admin.close()
                return None
            self._admin = admin
        try:
            return str((await self._admin.describe_cluster())["cluster_id"])
        except KafkaError:
            return None

    async def check(self) -> None:
        cluster_id = await self._current_cluster_id()
        if cluster_id is not None and cluster_id != self.cluster_id:
            if self.cluster_id is not None:
                await self._recover(self.cluster_id, cluster_id)
            self.cluster_id = cluster_id
        app = self.app
        if (
            self._rewinds_left
            and time.monotonic() < self._rewind_until
            and not app.rebalancing
            and self._rewound_at != app.rebalancing_count
        ):
            self._rewinds_left -= 1
            self._rewound_at = app.rebalancing_count
            partitions = app.consumer.assignment()
            for tp in partitions:
                forget_commits(app.consumer, tp)
                if self.stored is not None:
                    self.stored.forget(tp)
                await app.consumer.seek(tp, 0)
            log.warning("reading %d assigned partitions from the start", len(partitions))

    async def _recover(self, old: str, new: str) -> None:
        log.warning(
            "the Kafka broker at %s came back as a new cluster (id %s, was %s): it lost "
            "its topics, committed offsets and unconsumed events (an in-memory broker "
            "restarted); re-creating the topics and reading every partition from the start",
            self.settings.kafka_bootstrap, new, old,
        )  # fmt: skip
        created = await ensure_topics(self.settings)
        log.warning("topics created again: %s", ", ".join(created) or "none missing")
        self._rewinds_left = 2
        self._rewind_until = time.monotonic() + REWIND_WINDOW_S
        self._rewound_at = None


# Faust's per-partition ack and commit state; see forget_commits.
FAUST_COMMIT_STATE = ("_committed_offset", "_acked", "_acked_index", "_gap")


def forget_commits(consumer: Any, tp: Any) -> list[str]:
    """Drop what Faust remembers of a partition's acks and commits before a rewind;
    returns the names of the states it did not find.

    Faust records an offset as committed even when the broker refused the commit (as
    the new broker does, with UnknownMemberId, until the group is rejoined), and acks
    only records above that offset: the rewound records would be stored but their
    offsets never committed again, leaving the group's lag up forever. Faust has no
    public API for this state, so this is the one place the project touches a
    library's private attributes, only after an embedded broker lost its memory (an
    Apache Kafka broker never triggers it). A Faust release that renames them is
    logged as an error here, and ``tests/unit/test_faust_state.py`` fails on it.
    """
    missing = []
    for name in FAUST_COMMIT_STATE:
        state = getattr(consumer, name, None)
        if state is None:
            missing.append(name)
        else:
            state.pop(tp, None)
    if missing:
        log.error(
            "faust %s has no consumer state %s: offsets of partitions rewound after the "
            "broker restart may not be committed again (lag stays up; restart the worker)",
            faust.__version__, ", ".join(missing),
        )  # fmt: skip
    return missing


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


class WorkerError(LlmpulseError, RuntimeError):
    """The worker cannot start; the message says what to change."""


def _check_security(settings: Settings) -> None:
    """Refuse to start, before models load, with an open SQL endpoint or unusable TLS files."""
    if problem := open_endpoint_problem(settings):
        raise WorkerError(problem)
    try:
        aiokafka_security(settings)  # loads the certificate files
    except KafkaSecurityError as exc:
        raise WorkerError(str(exc)) from None


def _unreachable(exc: BaseException) -> bool:
    """Whether the server was not reached at all (refused, unresolved, timed out), rather
    than answering with an error such as a wrong password: only the first is worth a wait."""
    return any(isinstance(cause, OSError) for cause in error_chain(exc))


def _open_engine(
    settings: Settings, wait_s: float = 30.0, server_wait_s: float = SERVER_WAIT_S
) -> tuple[Engine, int]:
    """Open storage, waiting out what is usually brief: a CLI query holding the embedded
    engine, or a ClickHouse server that is still starting (docker compose may start the
    worker first), retried with backoff and a log line per attempt. Returns the engine
    and how many attempts failed because the server was unreachable."""
    start = time.monotonic()
    delays = Backoff(first_s=1.0, max_s=10.0).delays()
    busy = ENGINE_BUSY_POLL.delays()
    attempts = 0
    while True:
        try:
            engine = Engine(settings.dsn, settings.clickhouse_database, settings.clickhouse_auth)
        except EngineBusyError:
            if time.monotonic() - start > wait_s:
                raise
            time.sleep(busy())
            continue
        except StorageError as exc:
            waited = time.monotonic() - start
            if settings.embedded_engine or not _unreachable(exc):
                raise
            if waited > server_wait_s:
                raise StorageError(f"{exc} (waited {waited:.0f}s for it)") from None
            attempts += 1
            delay = delays()
            log.warning(
                "ClickHouse is not reachable yet, waiting for it (attempt %d, %.0fs so far, "
                "next try in %.1fs, giving up after %.0fs): %s",
                attempts, waited, delay, server_wait_s, exc,
            )  # fmt: skip
            time.sleep(delay)
            continue
        return engine, attempts


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run until SIGINT/SIGTERM; storage is migrated first, topics created if missing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    _check_port_free(settings.sql_bind, settings.sql_port)
    _check_security(settings)
    if settings.rules is not None:
        load_rules(settings.rules)  # RulesError lists every problem, before models load
    # Models first: a wrong model path fails here, before anything is held.
    log.info("loading detectors (device=%s, precision=%s)", settings.device, settings.precision)
    scorer = build_scorer(settings)
    model = scorer.suite.embeddings
    chosen = (
        f"embedding model {model.name} on {model.device} at {model.precision}"
        + (" (auto: native bf16 on this CPU)" if settings.precision == "auto"
           and model.precision == "bf16" else "")
    ) if settings.models else "models off (LLMPULSE_MODELS=off): cheap detectors only"  # fmt: skip
    state = _state_path(settings)
    # Announce first, so `llmpulse sql` waits for this worker's endpoint instead of
    # racing it for the embedded engine.
    state.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "sql_url": f"http://{settings.sql_bind}:{settings.sql_port}{SQL_PATH}",
                "dsn": settings.dsn_redacted,
                "started_at": time.time(),
            }
        )
    )
    try:
        started = time.monotonic()
        engine, failed_attempts = _open_engine(settings)
    except BaseException:
        state.unlink(missing_ok=True)
        raise
    try:
        applied = engine.call(
            migrate, engine.client, settings.clickhouse_database, ttl_days=settings.retention_days
        )
        for m in applied:
            log.info("migration %04d_%s applied", m.version, m.name)
        if failed_attempts:
            # The recovery line that closes the "not reachable yet" ones: from here on the
            # tables exist, so a user (or a test) waiting on it can query at once.
            log.warning(
                "ClickHouse is reachable after %d failed attempts (%.0fs); storage ready",
                failed_attempts, time.monotonic() - started,
            )  # fmt: skip
        asyncio.run(ensure_topics(settings))
        parts = create_app(settings, engine, scorer)
        app = parts.app
        watch = BrokerWatch(app, settings, parts.handler.stored)

        @app.task
        async def watch_broker() -> None:
            await watch.run()

        @app.task
        async def report_models() -> None:  # once Faust's log (worker.log) is set up
            log.info("%s", chosen)

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
            parts.handler.close()
    finally:
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
        engine.close()
