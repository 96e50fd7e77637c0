"""The Faust app: the score agent and the worker's read-only SQL endpoint.

Agents stay thin: take a micro-batch, hand it to :class:`BatchHandler`, ack.
The agent uses ``stream.noack_take`` and acks after the handler returns, because
Faust's ``take`` acks a batch in a ``finally`` — also when the batch failed or
the worker is being cancelled mid-insert, which would commit unstored events.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import faust

from alerting.evaluator import Evaluator
from core.kafka_security import faust_credentials
from core.retry import Backoff
from core.settings import Settings
from ingest.envelope import ENVELOPE_HEADER
from processors.alerting import install_alerting
from processors.batch import Record, ScoredBatch, Scorer, micro_batches
from processors.drift_monitor import DriftMonitor, ScoredMessage
from processors.feedback import install_feedback
from processors.handler import BatchHandler
from processors.http import install_endpoints, open_endpoint_problem
from processors.otlp import install_otlp
from processors.shedding import LoadShedder
from storage.engine import Engine

__all__ = ["APP_ID", "WorkerApp", "create_app"]

log = logging.getLogger(__name__)
APP_ID = "llmpulse"


@dataclass(frozen=True)
class WorkerApp:
    """The Faust app and the parts built around it, by name: the worker closes the
    batch handler's scoring thread when Faust stops."""

    app: faust.App
    handler: BatchHandler
    drift: DriftMonitor
    alerting: Evaluator | None


def create_app(settings: Settings, engine: Engine, scorer: Scorer) -> WorkerApp:
    if problem := open_endpoint_problem(settings):
        raise ValueError(problem)
    app = faust.App(
        APP_ID,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(settings.home / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Tansu completes a group join after half the rebalance timeout; a killed
        # member's partitions move after the session timeout.
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        broker_max_poll_records=max(settings.batch_max, 500),
        stream_buffer_maxsize=max(2 * settings.batch_max, 4096),
        producer_acks=-1,
        # Drift windows hold their events unacked until tested (that is how they
        # survive a restart), so never wait for "all acked" on rebalance or stop:
        # unacked events are replayed, and every write is idempotent.
        stream_wait_empty=False,
        broker_commit_livelock_soft_timeout=max(300.0, 2 * settings.drift_window_s),
        web_enabled=True,
        web_bind=settings.sql_bind,
        web_port=settings.sql_port,
        web_host=settings.sql_bind,
        web_in_thread=False,
    )
    events = app.topic(settings.topics.events, value_type=bytes, key_type=bytes)
    dead_letters = app.topic(settings.topics.deadletter, value_type=bytes, key_type=bytes)

    async def send_dead_letter(record: Record, field: str, reason: str) -> Any:
        headers = {
            "llmpulse.reason": reason.encode(),
            "llmpulse.field": field.encode(),
            "llmpulse.source": f"{record.topic}/{record.partition}/{record.offset}".encode(),
        }
        if record.line:  # one bad line of an envelope: the value is that line alone
            headers["llmpulse.line"] = str(record.line).encode()
        elif record.envelope is not None:  # an envelope refused whole: replayable as one
            headers[ENVELOPE_HEADER] = record.envelope
        # force=True: send now, not when the source event is acked (Faust's default).
        return await dead_letters.send(
            key=record.key, value=record.value, headers=headers, force=True
        )

    scored = app.topic(settings.topics.scored, value_type=bytes, key_type=bytes)

    async def send_scored(key: bytes, value: bytes) -> Any:
        return await scored.send(key=key, value=value, force=True)

    handler = BatchHandler(
        scorer, engine, send_dead_letter, scored_sink=send_scored,
        shedder=LoadShedder(settings.max_lag_s),
    )  # fmt: skip

    @app.agent(events, name="score")
    async def score(stream: faust.StreamT) -> None:
        # Batch N is stored (and then acked) while batch N+1 is scored; stores run one
        # at a time and in order, so offsets still commit only after their batch.
        async def store_then_ack(batch: list[Any], scored: ScoredBatch) -> None:
            await handler.finish(scored)
            for event in batch:
                await stream.ack(event)

        storing: asyncio.Task[None] | None = None
        try:
            async for taken in stream.noack_take(
                settings.batch_max, within=settings.batch_within_s
            ):
                # Envelopes carry many events per message: a take is cut into batches of
                # at most batch_max events, each acked once its whole messages are stored.
                for batch, records in micro_batches(taken, settings.batch_max):
                    scored = await handler.score(records)
                    if storing is not None:
                        await storing
                    storing = asyncio.create_task(store_then_ack(batch, scored))
            if storing is not None:
                await storing
        finally:
            if storing is not None and not storing.done():
                storing.cancel()  # unacked, so replayed: every write is idempotent

    monitor = DriftMonitor(settings, engine, scorer.suite.embedding_model, handler.compute)

    @app.agent(scored, name="drift")
    async def drift(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(1000, within=0.5):
            await monitor.add(
                [
                    ScoredMessage(
                        e.message.partition,
                        e.message.offset,
                        e.message.value,
                        functools.partial(stream.ack, e),
                        e.message.timestamp or 0.0,
                    )
                    for e in batch
                ]
            )

    install_feedback(app, settings, engine, send_dead_letter, redact=scorer.suite.redactor.redact)
    install_otlp(app, settings, engine, scorer.suite.redactor.redact, send_dead_letter)
    evaluator = install_alerting(
        app, settings, engine, scorer.suite.redactor.redact, handler.stored
    )

    # A round each drift_round_s while storage works, slower (up to a minute) while not.
    slowdown = Backoff(settings.drift_round_s, max(60.0, settings.drift_round_s), jitter="none")

    @app.task
    async def drift_rounds() -> None:
        # A loop, not a timer: a round waits for the scoring thread and may outlast
        # the interval, and the next round should then simply start later.
        failures = 0
        while not app.should_stop:
            await asyncio.sleep(slowdown.bound(failures + 1))
            try:
                await monitor.run_round()
                failures = 0
            except Exception:  # storage down, say: keep the windows, try again later
                failures = min(failures + 1, 6)
                log.exception("drift round failed; its windows are retried")

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        async with monitor.lock:  # not in the middle of a round or an intake
            monitor.drop_partitions(
                {tp.partition for tp in revoked if tp.topic == scored.get_topic_name()}
            )

    install_endpoints(app, settings, engine, scorer, handler, monitor)
    return WorkerApp(app, handler, monitor, evaluator)
