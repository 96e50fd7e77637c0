"""End to end on real parts: Tansu → Faust worker → embedded ClickHouse."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer

from ingest.synthetic import MALFORMED_KINDS, malformed_payload, synthetic_events
from tests.integration.conftest import Stack, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_VALID = 9_900
N_BAD = 100
STORED = "SELECT count() FROM llm_events FINAL"


def _dataset() -> tuple[list[tuple[bytes | None, bytes]], dict[str, str]]:
    """10,000 payloads: 9,900 valid, 100 broken in six ways, interleaved."""
    valid = [(e["event_id"].encode(), json.dumps(e).encode()) for e in synthetic_events(N_VALID)]
    bad, expected_field = [], {}
    for i in range(N_BAD):
        payload, fld = malformed_payload(MALFORMED_KINDS[i % len(MALFORMED_KINDS)], i)
        bad.append((None, payload))
        expected_field[f"{i}"] = fld
    mixed = list(valid)
    for i, item in enumerate(bad):
        mixed.insert(i * 99, item)
    return mixed, expected_field


def _consume_dead_letters(bootstrap: str, n: int) -> list:
    async def go() -> list:
        consumer = AIOKafkaConsumer(
            "llm.deadletter", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            group_id="test-dead-letters", enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        got: list = []
        try:
            async with asyncio.timeout(60):
                while len(got) < n:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for msgs in batch.values():
                        got.extend(msgs)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(go())


def test_valid_events_are_stored_once_and_invalid_ones_dead_lettered(stack: Stack) -> None:
    payloads, _ = _dataset()
    worker = stack.start_worker()
    assert publish(stack.bootstrap, payloads) == 10_000

    assert stack.wait_for(STORED, N_VALID) == N_VALID
    assert stack.wait_for("SELECT count() FROM dead_letters FINAL", N_BAD) == N_BAD
    assert stack.scalar("SELECT uniqExact(event_id) FROM llm_events") == N_VALID

    by_field = {r["field"]: int(r["n"]) for r in stack.sql(
        "SELECT field, count() AS n FROM dead_letters FINAL GROUP BY field")}  # fmt: skip
    # 100 payloads cycle through six kinds: 17 of the first four, 16 of the last two.
    assert by_field == {
        "payload": 34, "model": 17, "latency_ms": 17, "output": 16, "usage.output_tokens": 16,
    }  # fmt: skip
    reasons = stack.sql("SELECT field, reason FROM dead_letters FINAL")
    assert all(r["reason"].startswith(r["field"] + ": ") for r in reasons)

    dead = _consume_dead_letters(stack.bootstrap, N_BAD)
    assert len(dead) == N_BAD
    headers = dict(dead[0].headers)
    assert headers["llmpulse.reason"].decode().split(":")[0] == headers["llmpulse.field"].decode()
    assert headers["llmpulse.source"].decode().startswith("llm.events/")

    # Republishing the same file stores no duplicates (acceptance 3).
    before = stack.sql("SELECT toString(now64(3)) AS t")[0]["t"]
    publish(stack.bootstrap, payloads)
    # Replacing keeps the latest version, so every event shows a row from the replay.
    replayed = f"SELECT uniqExact(event_id) FROM llm_events WHERE ingested_at > '{before}'"
    assert stack.wait_for(replayed, N_VALID) == N_VALID
    assert stack.wait_for("SELECT count() FROM dead_letters FINAL", 2 * N_BAD) == 2 * N_BAD
    assert stack.scalar(STORED) == N_VALID
    assert stack.scalar("SELECT uniqExact(event_id) FROM llm_events") == N_VALID

    assert stack.stop_worker(worker) == 0


def test_sql_answers_the_same_with_and_without_a_running_worker(stack: Stack) -> None:
    events = list(synthetic_events(500, seed=7))
    worker = stack.start_worker()
    publish(stack.bootstrap, [(None, json.dumps(e).encode()) for e in events])
    stack.wait_for(STORED, 500)
    query = "SELECT model, count() AS n, round(sum(cost_usd), 6) AS usd FROM llm_events FINAL " \
            "GROUP BY model ORDER BY model"  # fmt: skip

    live = stack.cli("sql", query, "--format", "json")
    assert "via worker" not in live.stderr  # json output carries no footer
    table = stack.cli("sql", query)
    assert "(via worker)" in table.stderr
    assert stack.stop_worker(worker) == 0

    offline = stack.cli("sql", query)
    assert "(via engine)" in offline.stderr
    assert json.loads(live.stdout) == stack.sql(query)
    assert sum(int(r["n"]) for r in stack.sql(query)) == 500


def test_sql_refuses_writes_through_the_worker_and_the_engine(stack: Stack) -> None:
    worker = stack.start_worker()
    stack.wait_for("SELECT count() FROM system.tables WHERE name = 'llm_events'", 1, timeout=60)
    through_worker = stack.cli("sql", "DROP TABLE llm_events", check=False)
    assert through_worker.returncode != 0
    assert "only read queries" in through_worker.stderr
    sneaky = stack.cli("sql", "SELECT 1; DROP TABLE llm_events", check=False)
    assert "one statement" in sneaky.stderr
    assert stack.stop_worker(worker) == 0
    offline = stack.cli("sql", "INSERT INTO llm_events (event_id) VALUES ('x')", check=False)
    assert offline.returncode != 0
    assert stack.scalar("SELECT count() FROM system.tables WHERE name = 'llm_events'") == 1
