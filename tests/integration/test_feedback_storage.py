"""FeedbackHandler on the real engine: the migration, dedup tokens, latest verdict wins.

Runs in a child process: chdb allows one engine directory per process, and
``test_storage`` holds its own for the whole module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

SCRIPT = r"""
import asyncio, json, sys
from datetime import UTC, datetime, timedelta
from processors.batch import Record
from processors.feedback import FeedbackHandler
from storage.engine import Engine
from storage.migrations import migrate

DB = "llmpulse_fb"
# Timestamps relative to now (fixed dates expire under the table's TTL): the first
# verdicts in the last second of the previous month, the change of mind in this one.
MONTH = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)

def at(seconds):
    return (MONTH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

def rec(offset, payload):
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Record("llm.feedback", 0, offset, None, value)

async def dead(record, field, reason):
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut

def q(engine, sql):
    return engine.call(lambda: engine.client.query(sql).result_rows)

with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    # A long TTL: retention is not what this checks, only that it is applied.
    engine.call(migrate, engine.client, DB, ttl_days=3650)
    h = FeedbackHandler(engine, dead, redact=lambda s: s.replace("jane@example.com", "<EMAIL>"))
    first = [
        rec(0, {"event_id": "e1", "ts": at(-3), "score": -1,
                "source": "thumbs", "comment": "mail jane@example.com"}),
        rec(1, {"event_id": "e1", "ts": at(-2), "score": 0.5, "source": "judge"}),
        rec(2, {"event_id": "e2", "ts": at(-1), "score": 0}),
        rec(3, b"not json"),
    ]
    asyncio.run(h.handle(first))
    asyncio.run(h.handle(first))  # the same batch again: same tokens, nothing stored twice
    raw = q(engine, f"SELECT count() FROM {DB}.llm_feedback")[0][0]
    dead_rows = q(engine, f"SELECT count() FROM {DB}.dead_letters WHERE topic = 'llm.feedback'")
    comment = q(engine, f"SELECT comment FROM {DB}.llm_feedback WHERE kafka_offset = 0")[0][0]
    # The thumbs source changes its mind next month: rows still collapse across months.
    asyncio.run(h.handle([rec(4, {"event_id": "e1", "ts": at(0), "score": 1,
                                  "source": "thumbs"})]))
    final = q(engine, f"SELECT event_id, source, score, comment, kafka_offset "
                      f"FROM {DB}.llm_feedback FINAL ORDER BY event_id, source")
    ttl = q(engine, f"SELECT create_table_query FROM system.tables "
                    f"WHERE database = '{DB}' AND name = 'llm_feedback'")[0][0]
    print(json.dumps({"raw": raw, "dead": dead_rows[0][0], "final": final, "comment": comment,
                      "ttl": "toIntervalDay(3650)" in ttl}))
"""


def test_feedback_rows_dedup_and_the_latest_verdict_wins(tmp_path: Path) -> None:
    out = run_script(SCRIPT, tmp_path / "chdb")
    assert out["raw"] == 3 and out["dead"] == 1
    assert out["comment"] == "mail <EMAIL>"
    assert out["final"] == [
        ["e1", "judge", 0.5, "", 1],
        ["e1", "thumbs", 1.0, "", 4],
        ["e2", "", 0.0, "", 2],
    ]
    assert out["ttl"]
