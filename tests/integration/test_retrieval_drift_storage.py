"""Retrieval drift's storage on the real engine: a time-range reference carries the stored
events' retrieval numbers, the monitor reads them back per kind, and llm_drift keeps a
row of each retrieval kind.

Runs in a child process: chdb allows one engine directory per process.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import run_script

pytestmark = pytest.mark.integration

# Four events of rag v1 in the range: two chunks of 10 and 30 characters (a blank third
# retrieved nothing), one chunk of 7 characters, no context, and one whose chunk holds an
# email that storage keeps masked ("[EMAIL]"), so its stored length is the masked one.
SCRIPT = r"""
import json, sys
from datetime import UTC, datetime, timedelta
from processors.references import ReferenceRequest, apply_request
from storage.drift import DriftStore
from storage.engine import Engine
from storage.migrations import migrate
from storage.rows import DriftRow

DB = "llmpulse_retrieval"
# a day ago, whole minutes: stored rows stay within the retention whatever day it runs
start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
events = [
    ("a", ["x" * 10, "y" * 30, "  "], 0.75),
    ("b", ["z" * 7], 0.5),
    ("c", [], None),
    ("d", ["mail [EMAIL] now"], 0.25),
]
with Engine(f"chdb://{sys.argv[1]}", DB) as engine:
    engine.call(migrate, engine.client, DB, ttl_days=3650)
    c = engine.client
    store = DriftStore(c, DB)
    def go():
        for i, (eid, context, rel) in enumerate(events):
            ts = start + timedelta(seconds=i)
            c.insert(f"{DB}.llm_events",
                     [[eid, ts, "rag", "m", "v1", "q", "a", context, rel]],
                     column_names=["event_id", "ts", "app", "model", "prompt_version", "input",
                                   "output", "context", "context_relevance_max"])
            c.insert(f"{DB}.llm_embeddings",
                     [[eid, ts, "rag", "v1", kind, "mini", [1.0, float(i)]]
                      for kind in ("input", "output")],
                     column_names=["event_id", "ts", "app", "prompt_version", "kind", "model",
                                   "vector"])
        req = ReferenceRequest("rag", "v1", "range", start=start.isoformat(),
                               end=(start + timedelta(minutes=1)).isoformat(), size=100)
        made = apply_request(store, req, model="mini")
        rid = made["reference_id"]
        out = {"size": made["size"]}
        for kind in ("input", "context_relevance", "chunk_count", "chunk_length"):
            vectors, texts = store.vectors(rid, kind)
            out[kind] = vectors.tolist()
        out["values"] = {k: list(v) for k, v in store.retrieval_values(
            "rag", ["a", "b", "c", "d"]).items()}
        now = datetime.now(UTC)
        row = DriftRow(key="rag|v1", app="rag", prompt_version="v1", kind="chunk_count",
                       window_start=now, window_end=now, n_ref=4, n_cur=4, statistic=0.5,
                       p_value=0.001, threshold=0.002, drifted=1, distance=-1.0,
                       explanation="{}", method="ks-perm", version=1, alpha=0.01,
                       family_size=5, permutations=1000, bandwidth=0.0, reference_id=rid,
                       embedding_model="mini", kafka_partition=0, first_offset=0,
                       last_offset=3, tested_at=now)
        store.write_results([row], "t")
        out["drift"] = [list(r) for r in c.query(
            f"SELECT toString(kind), method, distance FROM {DB}.llm_drift FINAL").result_rows]
        return out
    print(json.dumps(engine.call(go)))
"""


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_script(SCRIPT, tmp_path_factory.mktemp("chdb"))


def test_stored_retrieval_numbers_count_only_chunks_with_text(found: dict) -> None:
    assert found["values"] == {
        "a": [0.75, 2, 20.0],  # the blank third chunk retrieved nothing
        "b": [0.5, 1, 7.0],
        "c": [None, 0, None],
        "d": [0.25, 1, float(len("mail [EMAIL] now"))],  # the stored, masked length
    }


def test_a_range_reference_holds_one_number_per_event_and_retrieval_kind(found: dict) -> None:
    assert found["size"] == 4 and len(found["input"]) == 4
    # read back ordered by event_id; the event without context has a count of 0 only
    assert found["chunk_count"] == [[2.0], [1.0], [0.0], [1.0]]
    assert found["chunk_length"] == [[20.0], [7.0], [16.0]]
    assert found["context_relevance"] == [[0.75], [0.5], [0.25]]


def test_llm_drift_keeps_a_retrieval_row_with_its_kind_and_method(found: dict) -> None:
    assert found["drift"] == [["chunk_count", "ks-perm", -1.0]]
