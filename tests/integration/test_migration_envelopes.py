"""Migration 0008 on the real engine: a database with rows gains envelope_line (0 on old
rows), and two bad lines of one envelope stay two dead letters, while a replayed dead
letter still collapses. Runs in a child process: chdb allows one engine directory per
process."""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

SCRIPT = r"""
import json, sys
from datetime import UTC, datetime, timedelta
import storage.migrations as migrations
from storage.engine import Engine
from storage.rows import DEAD_LETTER_COLUMNS, EVENT_COLUMNS, DeadLetterRow
from storage.writer import Writer

DB = "llmpulse_envelopes"
ts = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # inside any retention
every = migrations.available
with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    c = engine.client
    out = {}
    def run():
        migrations.available = lambda: [m for m in every() if m.version < 8]
        migrations.migrate(c, DB, ttl_days=30)
        c.insert(f"{DB}.llm_events", [["old", ts, "a", 3, 7]],
                 column_names=["event_id", "ts", "app", "kafka_partition", "kafka_offset"])
        c.insert(f"{DB}.dead_letters", [["llm.events", 1, 5, "model", "model: missing"]],
                 column_names=["topic", "partition", "offset", "field", "reason"])
        migrations.available = every
        out["applied"] = [m.version for m in migrations.migrate(c, DB, ttl_days=30)]
        out["event_columns"] = [r[0] for r in c.query(
            f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = 'llm_events' "
            "AND name != 'ingested_at' ORDER BY position").result_rows]
        out["dead_columns"] = [r[0] for r in c.query(
            f"SELECT name FROM system.columns WHERE database = '{DB}' "
            "AND table = 'dead_letters' AND name != 'received_at' ORDER BY position").result_rows]
        out["sorting_key"] = c.command(
            f"SELECT sorting_key FROM system.tables WHERE database = '{DB}' "
            "AND name = 'dead_letters'")
        out["old_event"] = c.command(f"SELECT envelope_line FROM {DB}.llm_events")
        writer = Writer(c, DB)
        def dead(line, field):
            return DeadLetterRow(topic="llm.events", partition=2, offset=9, envelope_line=line,
                                 field=field, reason=f"{field}: bad", payload=b"{}",
                                 payload_size=2)
        writer.write_dead_letters([dead(1, "payload"), dead(3, "ts")], "dead-a")
        writer.write_dead_letters([dead(3, "ts")], "dead-b")  # the same line, replayed
        out["dead"] = [list(r) for r in c.query(
            f"SELECT partition, offset, envelope_line, field FROM {DB}.dead_letters FINAL "
            "ORDER BY partition, offset, envelope_line").result_rows]
        out["row_columns"] = [list(EVENT_COLUMNS), list(DEAD_LETTER_COLUMNS)]
    engine.call(run)
    print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_script(SCRIPT, tmp_path_factory.mktemp("run") / "chdb")


def test_0008_upgrades_a_database_with_rows(found: dict) -> None:
    assert found["applied"][0] == 8
    assert found["old_event"] == 0  # stored before envelopes: not an envelope line
    events, dead = found["row_columns"]
    assert found["event_columns"] == events  # rows still fill the tables' columns in order
    assert found["dead_columns"] == dead
    assert found["sorting_key"] == "topic, partition, offset, envelope_line"


def test_dead_letters_of_one_envelope_stay_apart_and_a_replay_collapses(found: dict) -> None:
    assert found["dead"] == [
        [1, 5, 0, "model"],  # stored before 0008
        [2, 9, 1, "payload"],
        [2, 9, 3, "ts"],
    ]
