"""FeedbackHandler on a fake engine: rows, dead letters, redaction, storage retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.retry import Backoff
from processors.batch import Record
from processors.feedback import FEEDBACK_COLUMNS, FeedbackHandler
from storage.writer import DEAD_LETTER_COLUMNS, batch_token

TOPIC = "llm.feedback"


class FakeClient:
    """Records inserts; the first ``fail`` calls raise like a server that is down."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls = 0
        self.inserts: list[dict[str, Any]] = []

    def insert(
        self, table: str, rows: list[Any], column_names: list[str], settings: dict[str, str]
    ) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionError("server down")
        self.inserts.append({"table": table, "rows": rows, "columns": column_names,
                             "token": settings["insert_deduplication_token"]})  # fmt: skip


class FakeEngine:
    database = "llmpulse"

    def __init__(self, client: FakeClient) -> None:
        self.client = client

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, str]] = []

    async def __call__(self, record: Record, field: str, reason: str) -> Any:
        self.sent.append((record.offset, field, reason))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def records(*payloads: bytes | dict[str, Any]) -> list[Record]:
    return [
        Record(TOPIC, 1, 100 + i, None, p if isinstance(p, bytes) else json.dumps(p).encode())
        for i, p in enumerate(payloads)
    ]


def handler(
    client: FakeClient, sink: Sink, redact: Callable[[str], str] | None = None
) -> FeedbackHandler:
    fast = Backoff(first_s=0.001, max_s=0.002)
    return FeedbackHandler(FakeEngine(client), sink, fast, redact=redact)  # type: ignore[arg-type]


def table(client: FakeClient, name: str) -> list[dict[str, Any]]:
    (insert,) = [i for i in client.inserts if i["table"] == f"llmpulse.{name}"]
    return [dict(zip(insert["columns"], row, strict=True)) for row in insert["rows"]]


def test_valid_feedback_is_stored_with_its_columns_and_offsets() -> None:
    client, sink = FakeClient(), Sink()
    batch = records(
        {"event_id": "e1", "ts": "2026-11-01T10:00:00Z", "score": -1, "comment": "wrong",
         "source": "thumbs"},
        {"event_id": "e2", "ts": 1_793_527_200_000, "score": 0.5},
    )  # fmt: skip
    asyncio.run(handler(client, sink).handle(batch))
    assert not sink.sent
    assert [i["table"] for i in client.inserts] == ["llmpulse.llm_feedback"]
    insert = client.inserts[0]
    assert tuple(insert["columns"]) == FEEDBACK_COLUMNS
    assert insert["token"] == batch_token("feedback", [(TOPIC, 1, 100), (TOPIC, 1, 101)])
    first, second = table(client, "llm_feedback")
    assert first == {
        "event_id": "e1", "ts": datetime(2026, 11, 1, 10, tzinfo=UTC), "score": -1,
        "comment": "wrong", "source": "thumbs", "kafka_partition": 1, "kafka_offset": 100,
    }  # fmt: skip
    assert (second["comment"], second["source"], second["kafka_offset"]) == ("", "", 101)
    assert second["ts"] == datetime.fromtimestamp(1_793_527_200, UTC)


def test_invalid_feedback_goes_to_the_dead_letter_sink_and_table() -> None:
    client, sink = FakeClient(), Sink()
    batch = records(
        {"event_id": "ok", "ts": "2026-11-01T10:00:00Z", "score": 1},
        {"event_id": "e", "ts": "2026-11-01T10:00:00Z", "score": 2},
        b"{not json",
        {"event_id": "e", "ts": "2026-11-01T10:00:00Z", "score": 0, "app": "extra"},
    )
    h = handler(client, sink)
    asyncio.run(h.handle(batch))
    assert [(o, f) for o, f, _ in sink.sent] == [(101, "score"), (102, "payload"), (103, "app")]
    assert "less than or equal to 1" in sink.sent[0][2]
    dead = table(client, "dead_letters")
    assert tuple(client.inserts[0]["columns"]) == DEAD_LETTER_COLUMNS
    assert [(d["topic"], d["offset"], d["field"]) for d in dead] == [
        (TOPIC, 101, "score"), (TOPIC, 102, "payload"), (TOPIC, 103, "app"),
    ]  # fmt: skip
    assert dead[1]["payload"] == b"{not json"
    assert [r["event_id"] for r in table(client, "llm_feedback")] == ["ok"]
    assert (h.stats.stored, h.stats.dead) == (1, 3)


def test_comment_is_redacted_before_it_is_stored() -> None:
    client, sink = FakeClient(), Sink()
    payload = {"event_id": "e1", "ts": "2026-11-01T10:00:00Z", "score": -0.5,
               "comment": "mail me at jane@example.com"}  # fmt: skip
    asyncio.run(handler(client, sink, redact=lambda s: s.replace("jane@example.com", "<EMAIL>"))
                .handle(records(payload)))  # fmt: skip
    assert table(client, "llm_feedback")[0]["comment"] == "mail me at <EMAIL>"


def test_storage_failures_are_retried_with_the_same_tokens_until_they_succeed() -> None:
    client, sink = FakeClient(fail=3), Sink()
    h = handler(client, sink)
    batch = records({"event_id": "e1", "ts": "2026-11-01T10:00:00Z", "score": 1}, b"[]")
    asyncio.run(h.handle(batch))
    assert h.stats.storage_retries == 3
    assert client.calls == 5  # 3 failed attempts, then dead_letters and llm_feedback
    offsets = [(TOPIC, 1, 100), (TOPIC, 1, 101)]
    assert {i["table"]: i["token"] for i in client.inserts} == {
        "llmpulse.dead_letters": batch_token("dead", offsets),
        "llmpulse.llm_feedback": batch_token("feedback", offsets),
    }
    assert len(sink.sent) == 1  # a dead letter is produced once, not once per retry


def test_dead_letters_are_delivered_before_anything_is_stored() -> None:
    client, order = FakeClient(), []

    async def slow_sink(record: Record, field: str, reason: str) -> Any:
        async def delivered() -> None:
            await asyncio.sleep(0.01)
            order.append("delivered")

        return asyncio.ensure_future(delivered())

    h = FeedbackHandler(FakeEngine(client), slow_sink)  # type: ignore[arg-type]
    original = client.insert

    def insert(*args: Any, **kwargs: Any) -> None:
        order.append("insert")
        original(*args, **kwargs)

    client.insert = insert  # type: ignore[method-assign]
    valid = {"event_id": "e", "ts": "2026-11-01T10:00:00Z", "score": 0}
    asyncio.run(h.handle(records(b"x", valid)))
    assert order == ["delivered", "insert", "insert"]


def test_an_empty_batch_writes_nothing() -> None:
    client = FakeClient()
    asyncio.run(handler(client, Sink()).handle([]))
    assert client.calls == 0
