"""Alerting in the worker: the rule-evaluation task and the notify agent.

The evaluator owns the app|prompt_version keys whose ``llm.scored`` partitions this
worker holds (the same hash the producer uses), so with several workers each alert
is evaluated by exactly one. The notify agent consumes ``llm.alerts`` and acks a
message only after every receiver finished with it (delivered, gave up or skipped),
so a crash before that replays it; ``alert_log`` keeps the replay from delivering
twice. Deliveries run as their own tasks: slow receivers never hold up scoring or
each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from alerting.alert import DeliveryRecord, Notification
from alerting.config import RuleSet
from alerting.dispatch import Dispatcher
from alerting.evaluator import Evaluator
from alerting.notifiers import build_notifier
from alerting.retry import RetryPolicy
from alerting.rules import load_rules
from core.kafka_security import aiokafka_security
from core.keys import version_key
from core.retry import Backoff
from core.settings import Settings
from processors.handler import StoredOffsets
from storage.alerts import AlertStore
from storage.engine import Engine

__all__ = [
    "Delivery",
    "PendingSince",
    "RuleEvaluation",
    "committed_offsets",
    "install_alerting",
    "owner_partition",
]

log = logging.getLogger(__name__)
MAX_INFLIGHT = 64


class PendingSince:
    """The time of the oldest records on this worker's llm.events partitions not yet stored.

    Each :meth:`note` records the partitions' high watermarks with the time; once the
    stored offsets reach a note, everything on the
    broker at that time is stored. The oldest note not reached bounds how long records
    have waited: about now while the worker keeps up (records in flight arrived since the
    last note), the start of the stall while it does not. An evaluator that sees a thin
    window while records wait that long knows the worker is behind, not that traffic
    stopped. Partitions this worker no longer holds (a rebalance) are not waited for.
    """

    def __init__(self, max_notes: int = 4096) -> None:
        self._notes: deque[tuple[float, dict[Any, int]]] = deque()
        self._max_notes = max_notes

    def note(
        self, now: float, highwaters: Mapping[Any, int | None], stored: Mapping[Any, int]
    ) -> float:
        """Add this moment's high watermarks; returns the time of the oldest unreached note."""
        self._notes.append((now, {tp: hw for tp, hw in highwaters.items() if hw is not None}))
        held = set(highwaters)
        while self._notes and all(
            stored.get(tp, 0) >= hw for tp, hw in self._notes[0][1].items() if tp in held
        ):
            self._notes.popleft()
        if len(self._notes) > self._max_notes:  # a backlog of hours: the oldest stays
            del self._notes[1]
        return self._notes[0][0] if self._notes else now


def owner_partition(app_name: str, prompt_version: str | None, partitions: int) -> int:
    """The llm.scored partition of a key, as aiokafka's default partitioner puts it."""
    key = version_key(app_name, prompt_version).encode()
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def committed_offsets(
    settings: Settings, group: str, tps: list[Any]
) -> dict[tuple[str, int], int | None]:
    """The group's committed offsets on the broker (None where nothing is committed),
    through the admin API: the state Faust keeps of them has no public accessor."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=10_000,
        **aiokafka_security(settings),
    )
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(tp[0], tp[1]) for tp in tps]
        )
    finally:
        await admin.close()
    return {
        (tp.topic, tp.partition): (meta.offset if meta.offset >= 0 else None)
        for tp, meta in found.items()
    }


class RuleEvaluation:
    """The evaluator's I/O in the worker: storage, the alerts topic, which keys this
    worker owns, and whether the backlog a (re)load found is stored yet."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        engine: Engine,
        stored: StoredOffsets,
        topic: faust.TopicT,
    ) -> None:
        self.app, self.settings, self.engine = app, settings, engine
        self.stored = stored  # the batch handler's record of stored offsets
        self.topic = topic
        self.store = AlertStore(engine.client, engine.database)
        # This tick's assignment and partition count, read once per tick, not per key.
        self.mine: frozenset[int] = frozenset()
        self.total = settings.partitions
        # End offsets of this worker's llm.events partitions when the states were loaded:
        # the backlog a restart or a rebalance left, stored once ``stored`` reaches them.
        self.backlog: dict[Any, int] = {}
        self.pending = PendingSince()

    async def query(self, sql: str) -> list[tuple]:
        return await self.engine.run(self.store.query, sql)

    async def save(self, states: list[Any]) -> None:
        await self.engine.run(self.store.save, states)

    async def send(self, n: Notification) -> None:
        delivery = await self.topic.send(key=n.alert_id.encode(), value=n.to_json(), force=True)
        await delivery

    def owns(self, app_name: str, prompt_version: str | None) -> bool:
        return owner_partition(app_name, prompt_version, self.total) in self.mine

    def caught_up(self) -> bool:
        return all(self.stored.get(tp, 0) >= end for tp, end in self.backlog.items())

    def pending_since(self) -> float:
        consumer = self.app.consumer
        highwaters = {tp: consumer.highwater(tp) for tp in self._event_partitions()}
        return self.pending.note(time.time(), highwaters, self.stored)

    def _event_partitions(self) -> list[Any]:
        events = self.settings.topics.events
        return [tp for tp in self.app.consumer.assignment() if tp.topic == events]

    def read_assignment(self) -> bool:
        """Read this tick's assignment; True when it changed since the last call."""
        scored = self.settings.topics.scored
        try:
            assigned = self.app.consumer.assignment()
        except Exception:  # the consumer is not started yet
            assigned = set()
        mine = frozenset(tp.partition for tp in assigned if tp.topic == scored)
        self.total = self.app.consumer.topic_partitions(scored) or self.settings.partitions
        changed, self.mine = mine != self.mine, mine
        return changed

    async def reload(self, evaluator: Evaluator) -> None:
        """Started, or a rebalance moved keys: load the states and note the backlog."""
        tps = self._event_partitions()
        self.backlog.clear()
        if tps:  # what was stored before this worker held the partitions
            group = self.app.conf.id
            self.stored.seed(await committed_offsets(self.settings, group, tps))
            self.backlog.update(await self.app.consumer.highwaters(*tps))
        evaluator.load(await self.engine.run(self.store.load))


def install_alerting(
    app: faust.App,
    settings: Settings,
    engine: Engine,
    redact: Callable[[str], str],
    stored: StoredOffsets,
) -> Evaluator | None:
    """Add the evaluator task and the notify agent; None when no rules are configured.

    ``stored`` is the batch handler's record of stored offsets: the evaluator waits for
    the backlog present at a (re)load to be stored before it resolves restored alerts."""
    if settings.rules is None:
        log.info("LLMPULSE_RULES is not set: alerting is off")
        return None
    rules = load_rules(settings.rules)  # RulesError lists every problem with its line
    log.info("alerting: %d rules, %d receivers", len(rules.rules), len(rules.receivers))
    topic = app.topic(settings.topics.alerts, value_type=bytes, key_type=bytes)
    io = RuleEvaluation(app, settings, engine, stored, topic)
    evaluator = Evaluator(
        rules, engine.database, io.query, io.save, io.send, io.owns,
        redact=redact, query_url=settings.alert_query_url, refresh_s=settings.alert_refresh_s,
        caught_up=io.caught_up, pending_since=io.pending_since,
    )  # fmt: skip

    # Every tick while storage or the broker works, slower (up to a minute) while not.
    slowdown = Backoff(settings.alert_eval_s, max(60.0, settings.alert_eval_s), jitter="none")

    @app.task
    async def evaluate_rules() -> None:
        loaded = False
        failures = 0
        while not app.should_stop:
            await asyncio.sleep(slowdown.bound(failures + 1))
            try:
                if io.read_assignment() or not loaded:
                    loaded = False
                    await io.reload(evaluator)
                    loaded = True
                await evaluator.tick()
                failures = 0
            except Exception:  # storage or broker down: decide again on the next tick
                failures = min(failures + 1, 4)
                log.exception("alert evaluation failed; retrying")

    delivery = Delivery(settings, engine, rules)

    @app.agent(topic, name="notify")
    async def notify(stream: faust.StreamT) -> None:
        await delivery.run(stream)

    return evaluator


class Delivery:
    """The notify agent's body: each llm.alerts message delivered to its receivers as a
    task of its own, acked only once every receiver finished with it."""

    def __init__(self, settings: Settings, engine: Engine, rules: RuleSet) -> None:
        self.engine = engine
        self.store = AlertStore(engine.client, engine.database)
        self.receivers = rules.receivers
        self.policies = {
            name: RetryPolicy(deadline_s=cfg.retry_deadline_s or settings.alert_retry_deadline_s)
            for name, cfg in rules.receivers.items()
        }

    async def finished(self, ids: Any) -> set[tuple[str, str]]:
        return await self.engine.run(self.store.finished, ids)

    async def log_rows(self, rows: list[DeliveryRecord]) -> None:
        await self.engine.run(self.store.log, rows)

    async def run(self, stream: faust.StreamT) -> None:
        session = aiohttp.ClientSession()
        notifiers = {name: build_notifier(cfg, session) for name, cfg in self.receivers.items()}
        dispatcher = Dispatcher(notifiers, self.policies, self.finished, self.log_rows)
        slots = asyncio.Semaphore(MAX_INFLIGHT)
        tasks: set[asyncio.Task] = set()
        try:
            async for event in stream.noack().events():
                await slots.acquire()
                task = asyncio.create_task(self._handle(stream, dispatcher, event, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await session.close()

    async def _handle(
        self, stream: faust.StreamT, dispatcher: Dispatcher, event: Any, slots: asyncio.Semaphore
    ) -> None:
        # Acked only once every receiver finished; a cancelled task (shutdown) is not
        # acked, so its message is delivered after the restart.
        try:
            try:
                n = Notification.from_json(event.message.value)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("llm.alerts message at offset %s is unreadable, skipped: %s",
                          event.message.offset, exc)  # fmt: skip
                await stream.ack(event)
                return
            delay = Backoff(first_s=1.0, max_s=30.0).delays()
            while True:
                try:
                    await dispatcher.dispatch(n)
                    break
                except Exception:  # alert_log unreachable: do not ack, try again
                    log.exception("delivering alert %s failed; retrying", n.alert_id)
                    await asyncio.sleep(delay())
            await stream.ack(event)
        finally:
            slots.release()
