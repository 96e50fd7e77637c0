"""What a chaos run must leave behind, checked against what was sent and scripted.

Runs once the clean worker has stored everything: tables are read through its read-only
SQL endpoint, the dead-letter topic with an aiokafka consumer, and the receivers'
requests from memory; then the worker is stopped with SIGTERM. Every check carries its
expected and observed value, so a failure reads as the specification it breaks;
``figures`` holds what is reported but not required (physical rows before FINAL,
repeats at the receivers).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.synthetic import MALFORMED_KINDS
from tests.reliability.chaos import APP, GOOD, PD_KEY, ChaosRun

__all__ = ["GROUPS", "Check", "verify"]

GROUPS = ("kills", "events", "dead letters", "alerts", "deliveries")
FIRST_TARGETS = ("pager", "hook", "deployer")
RESOLVE_TARGETS = ("pager", "hook")


class Add(Protocol):
    def __call__(self, check: str, expected: Any, got: Any, ok: bool | None = None) -> None: ...


@dataclass(frozen=True)
class Check:
    group: str
    name: str
    expected: Any
    got: Any
    ok: bool


def verify(run: ChaosRun) -> tuple[list[Check], dict[str, Any]]:
    """Every check of the run, and the figures reported beside them."""
    checks: list[Check] = []
    figures: dict[str, Any] = {}

    def group(name: str) -> Add:
        def add(check: str, expected: Any, got: Any, ok: bool | None = None) -> None:
            checks.append(Check(name, check, expected, got, expected == got if ok is None else ok))

        return add

    figures |= _events(run, group("events"))
    figures |= _dead_letters(run, group("dead letters"))
    figures |= _alerts(run, group("alerts"), group("deliveries"))
    _kills(run, group("kills"))
    return checks, figures


def _kills(run: ChaosRun, check: Add) -> None:
    check("where each worker was SIGKILLed", list(run.cfg.plan), [k.seam for k in run.kills])
    check("exit code of the clean worker after SIGTERM", 0, run.finish())


def _events(run: ChaosRun, check: Add) -> dict[str, Any]:
    valid, invalid = run.traffic.valid, run.traffic.invalid
    rows = run.rows(
        "SELECT event_id, kafka_partition AS p, kafka_offset AS o FROM llmpulse.llm_events FINAL"
    )
    stored = Counter(r["event_id"] for r in rows)
    raw = run.rows("SELECT count() AS n, uniqExact(event_id) AS u FROM llmpulse.llm_events")[0]
    check("count() FROM llm_events FINAL = valid published", len(valid), len(rows))
    check("uniqExact(event_id) = valid published", len(valid), int(raw["u"]))
    check("valid events missing", 0, len(valid - set(stored)))
    check("stored events that were not published valid", 0, len(set(stored) - valid))
    check("event_ids twice in FINAL", 0, sum(1 for n in stored.values() if n > 1))
    at_invalid = sum(1 for r in rows if (int(r["p"]), int(r["o"])) in invalid)
    check("rows stored from an invalid payload's offset", 0, at_invalid)
    return {"llm_events_rows_before_final": int(raw["n"]), "llm_events_rows_final": len(rows)}


def _dead_letters(run: ChaosRun, check: Add) -> dict[str, Any]:
    invalid = run.traffic.invalid
    dead = run.rows(
        "SELECT topic, partition AS p, offset AS o, field, reason FROM llmpulse.dead_letters FINAL"
    )
    got = {(int(d["p"]), int(d["o"])): d for d in dead if d["topic"] == "llm.events"}
    check("count() FROM dead_letters FINAL = invalid published", len(invalid), len(dead))
    check("dead letters at offsets of valid events", 0, len(set(got) - set(invalid)))
    check("invalid payloads without a dead letter", 0, len(set(invalid) - set(got)))
    wrong = sum(1 for k, d in got.items() if k in invalid and d["field"] != invalid[k][1])
    check("dead letters naming another field than expected", 0, wrong)
    no_reason = sum(1 for d in dead if not d["reason"].startswith(d["field"] + ": "))
    check("dead letters without a reason", 0, no_reason)
    kinds = Counter(kind for kind, _ in invalid.values())
    check("kinds of invalid payloads sent", sorted(MALFORMED_KINDS), sorted(kinds))
    topic = _dead_letter_sources(run.stack.bootstrap)
    raw_dead = run.rows("SELECT count() AS n FROM llmpulse.dead_letters")
    check("llm.deadletter sources = invalid offsets", len(invalid), len(topic),
          set(topic) == set(invalid))  # fmt: skip
    return {
        "dead_letters_rows_before_final": int(raw_dead[0]["n"]),
        "deadletter_topic_messages": sum(topic.values()),
        "deadletter_topic_repeats": sum(topic.values()) - len(topic),
        "invalid_by_kind": dict(kinds),
    }


def _alerts(run: ChaosRun, check: Add, deliveries: Add) -> dict[str, Any]:
    """One episode per scripted incident (a bad version each), each message delivered
    once per receiver (one 'delivered' row), each receiver reached at least once."""
    rec = run.receivers
    versions = [i.version for i in run.incidents]
    resolved = sum(1 for i in run.incidents if i.resolved)
    check(f"incidents scripted (at most {run.cfg.incidents}), resolves seen at the webhook",
          "n >= 1, n resolved", f"{len(versions)}, {resolved} resolved",
          len(versions) == resolved >= 1)  # fmt: skip
    log = run.rows(
        "SELECT notification_id AS id, alert_id, prompt_version AS v, reason, receiver, outcome "
        "FROM llmpulse.alert_log ORDER BY at"
    )
    once = dict.fromkeys(versions, 1)
    firsts = {(r["v"], r["id"]) for r in log if r["reason"] == "first"}
    resolves = {(r["v"], r["id"]) for r in log if r["reason"] == "resolved"}
    check("firing episodes per version (alert_log)", once, dict(Counter(v for v, _ in firsts)))
    check("resolves per version (alert_log)", once, dict(Counter(v for v, _ in resolves)))
    others = sum(1 for r in log if r["reason"] not in ("first", "resolved"))
    check("other notifications (repeat, refresh)", 0, others)
    states = run.rows("SELECT prompt_version AS v, state FROM llmpulse.alerts FINAL ORDER BY v")
    check("alert states at the end", [(v, "resolved") for v in versions],
          [(s["v"], s["state"]) for s in states])  # fmt: skip
    alert_ids = {r["alert_id"]: r["v"] for r in log}
    pd = [r.json for r in rec.at("/pd")]
    episodes = {}
    for a, v in alert_ids.items():
        acts = [m["event_action"] for m in pd if m["dedup_key"] == a]
        episodes[v] = [x for i, x in enumerate(acts) if i == 0 or x != acts[i - 1]]
    check("PagerDuty per alert, a message's repeats collapsed",
          {v: ["trigger", "resolve"] for v in versions}, episodes)  # fmt: skip
    rb = rec.at("/rollback")
    keys = {(r.json["prompt_version"], r.headers["Idempotency-Key"]) for r in rb}
    check(
        "rollback episodes per version (Idempotency-Key)", once, dict(Counter(v for v, _ in keys))
    )
    check("rollbacks to another target than chaos-bot v1", 0,
          sum(1 for r in rb if (r.json["app"], r.json["rollback_to"]) != (APP, GOOD)))  # fmt: skip

    delivered = Counter((r["id"], r["receiver"]) for r in log if r["outcome"] == "delivered")
    wanted = {(i, t) for _, i in firsts for t in FIRST_TARGETS}
    wanted |= {(i, t) for _, i in resolves for t in RESOLVE_TARGETS}
    deliveries("(notification, receiver) pairs with exactly one 'delivered' row", len(wanted),
               sum(1 for p in wanted if delivered[p] == 1),
               set(delivered) == wanted and set(delivered.values()) <= {1})  # fmt: skip
    failed = sum(1 for r in log if r["outcome"] != "delivered")
    deliveries("attempts that failed or gave up", 0, failed)
    hook = rec.at("/hook")
    seen = Counter(r.headers["Idempotency-Key"] for r in hook)
    ids = sorted(i for _, i in firsts | resolves)
    deliveries("webhook Idempotency-Keys = notification ids in alert_log", ids, sorted(seen))
    mismatched = sum(1 for r in hook if r.json["notification_id"] != r.headers["Idempotency-Key"])
    deliveries("webhook bodies carrying another id than their key", 0, mismatched)
    pd_keys = {(m["dedup_key"], m["routing_key"]) for m in pd}
    deliveries("PagerDuty (dedup_key, routing_key)", {(a, PD_KEY) for a in alert_ids}, pd_keys)
    sent = {t: sum(1 for (_, r) in delivered if r == t) for t in FIRST_TARGETS}
    return {
        "alert_log_rows": len(log),
        "receiver_requests": {p: len(rec.at(p)) for p in ("/pd", "/hook", "/rollback")},
        "receiver_repeats": {
            "/pd": len(pd) - sent["pager"],
            "/hook": len(hook) - len(seen),
            "/rollback": len(rb) - len(keys),
        },
    }


def _dead_letter_sources(bootstrap: str) -> Counter[tuple[int, int]]:
    """(partition, offset) of the source record of every message on llm.deadletter."""

    async def go() -> Counter[tuple[int, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        seen: Counter[tuple[int, int]] = Counter()
        try:
            await consumer.topics()  # fetches the metadata
            ids = consumer.partitions_for_topic("llm.deadletter") or set()
            parts = [TopicPartition("llm.deadletter", p) for p in ids]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)

            async def behind() -> bool:
                return any([await consumer.position(tp) < end[tp] for tp in parts])

            async with asyncio.timeout(120):
                while await behind():
                    for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                        for m in msgs:
                            _, p, o = dict(m.headers)["llmpulse.source"].decode().rsplit("/", 2)
                            seen[(int(p), int(o))] += 1
        finally:
            await consumer.stop()
        return seen

    return asyncio.run(go())
