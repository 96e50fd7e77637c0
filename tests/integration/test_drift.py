"""Drift in the stream: a prompt version that shifts topics is flagged, its sibling is not.

One run, read by every test here: v1 builds the app's reference from its first
events, the worker restarts, then v1 and v2 traffic interleave. v2 inherits v1's
reference (a new version is compared with what the app did before), and 30% of
its questions are about a topic the reference never saw. About half the events carry
two retrieved chunks, so every window is also tested on its retrieval numbers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.synthetic import synthetic_events
from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFERENCE, WINDOW, PER_VERSION = 200, 200, 400
APP = "shop"
VECTORS = "kind IN ('input', 'output')"
RETRIEVAL = "kind IN ('context_relevance', 'chunk_count', 'chunk_length')"


def _payloads(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e["event_id"].encode(), json.dumps(e).encode()) for e in events]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict]]:
    root = tmp_path_factory.mktemp("drift")
    broker = EmbeddedBroker("127.0.0.1", free_port(), root / "broker-logs")
    broker.start()
    stack = Stack(root / "home", broker.bootstrap, free_port())
    stack.extra_env.update(
        {
            "LLMPULSE_DRIFT_REFERENCE_SIZE": str(REFERENCE),
            "LLMPULSE_DRIFT_WINDOW_SIZE": str(WINDOW),
            "LLMPULSE_DRIFT_ROUND_S": "1",
            "LLMPULSE_DRIFT_ALPHA": "0.01",
        }
    )
    seen: dict = {}
    try:
        worker = stack.start_worker()
        first = synthetic_events(REFERENCE, seed=41, app=APP, prompt_version="v1", prefix="ref")
        publish(stack.bootstrap, _payloads(list(first)))
        complete = (
            "SELECT count() FROM llm_drift_references FINAL "
            f"WHERE app = '{APP}' AND prompt_version = 'v1' AND complete = 1"
        )
        assert stack.wait_for(complete, 1) == 1
        seen["reference_before"] = stack.sql(
            "SELECT reference_id, size FROM llm_drift_references FINAL WHERE prompt_version='v1'"
        )
        assert stack.stop_worker(worker) == 0
        worker = stack.start_worker()
        v1 = synthetic_events(PER_VERSION, seed=42, app=APP, prompt_version="v1", prefix="a")
        v2 = synthetic_events(
            PER_VERSION, seed=43, app=APP, prompt_version="v2", prefix="b", new_topic_share=0.3
        )
        mixed = [e for pair in itertools.zip_longest(v1, v2) for e in pair if e]
        publish(stack.bootstrap, _payloads(mixed))
        windows = 2 * 2 * (PER_VERSION // WINDOW)  # versions x kinds x windows
        tested = f"SELECT count() FROM llm_drift FINAL WHERE {VECTORS}"
        assert stack.wait_for(tested, windows, timeout=300) == windows
        seen["reference_after"] = stack.sql(
            "SELECT reference_id, size FROM llm_drift_references FINAL WHERE prompt_version='v1'"
        )
        yield stack, seen
        assert stack.stop_worker(worker) == 0
    finally:
        stack.kill_workers()
        broker.stop()


def test_the_shifted_version_drifts_and_its_sibling_does_not(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    rows = stack.sql(
        "SELECT prompt_version, kind, countIf(drifted = 1) AS drifted, count() AS windows, "
        f"min(p_value) AS p_min FROM llm_drift FINAL WHERE {VECTORS} "
        "GROUP BY prompt_version, kind ORDER BY prompt_version, kind"
    )
    by = {(r["prompt_version"], r["kind"]): r for r in rows}
    assert set(by) == {("v1", "input"), ("v1", "output"), ("v2", "input"), ("v2", "output")}
    for kind in ("input", "output"):
        assert int(by[("v1", kind)]["drifted"]) == 0
        assert float(by[("v1", kind)]["p_min"]) > 0.01
        assert (
            int(by[("v2", kind)]["drifted"])
            == int(by[("v2", kind)]["windows"])
            == PER_VERSION // WINDOW
        )


def test_each_row_is_a_decided_test_of_one_window(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    row = stack.sql(
        "SELECT countIf(drifted != (p_value <= threshold)) AS inconsistent, "
        "countIf(threshold > alpha) AS above_alpha, min(n_cur) AS lo, max(n_cur) AS hi, "
        "min(n_ref) AS ref_lo, max(n_ref) AS ref_hi, countIf(window_end < window_start) AS bad, "
        "uniqExact(method) AS methods, countIf(distance < 0) AS negative FROM llm_drift FINAL "
        f"WHERE {VECTORS}"
    )[0]
    assert int(row["inconsistent"]) == 0 and int(row["above_alpha"]) == 0
    assert (int(row["lo"]), int(row["hi"])) == (WINDOW, WINDOW)
    assert (int(row["ref_lo"]), int(row["ref_hi"])) == (REFERENCE, REFERENCE)
    assert int(row["bad"]) == 0 and int(row["negative"]) == 0 and int(row["methods"]) == 1


def test_each_window_is_also_tested_on_its_retrieval_numbers(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    rows = stack.sql(
        "SELECT prompt_version, toString(kind) AS kind, count() AS windows, "
        "countIf(drifted != (p_value <= threshold)) AS inconsistent, "
        "uniqExact(method) AS methods, any(method) AS test, max(family_size) AS family, "
        f"min(n_cur) AS lo, max(n_cur) AS hi FROM llm_drift FINAL WHERE {RETRIEVAL} "
        "GROUP BY prompt_version, kind ORDER BY prompt_version, kind"
    )
    by = {(r["prompt_version"], r["kind"]): r for r in rows}
    kinds = ("chunk_count", "chunk_length", "context_relevance")
    assert set(by) == {(v, k) for v in ("v1", "v2") for k in kinds}
    for row in rows:
        assert int(row["windows"]) == PER_VERSION // WINDOW
        assert int(row["inconsistent"]) == 0 and int(row["methods"]) == 1
        assert row["test"] == "ks-perm"
        assert int(row["family"]) >= 5  # in the same family as the vectors of its window
        if row["kind"] == "chunk_count":  # every event has a count
            assert int(row["lo"]) == int(row["hi"]) == WINDOW
        else:  # only the events with context have a length and a relevance: about half
            # of v1's, about a third of v2's (its travel questions retrieve nothing)
            assert 0.2 * WINDOW < int(row["lo"]) <= int(row["hi"]) < 0.7 * WINDOW
    v1 = stack.scalar(
        f"SELECT countIf(drifted = 1) FROM llm_drift FINAL WHERE {RETRIEVAL} "
        "AND prompt_version = 'v1'"
    )
    assert v1 == 0  # its retrieval is drawn as its reference's was


def test_the_new_version_is_compared_with_the_apps_reference(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    refs = {
        r["prompt_version"]: r
        for r in stack.sql(
            "SELECT prompt_version, source, vectors_id, reference_id, complete "
            "FROM llm_drift_references FINAL WHERE active = 1"
        )
    }
    assert refs["v1"]["source"] == "first" and int(refs["v1"]["complete"]) == 1
    assert refs["v2"]["source"] == "inherited"
    assert refs["v2"]["vectors_id"] == refs["v1"]["reference_id"]


def test_the_reference_survives_a_restart(run: tuple[Stack, dict]) -> None:
    _, seen = run
    assert seen["reference_before"] == seen["reference_after"]
    assert int(seen["reference_after"][0]["size"]) == REFERENCE


def test_the_explanation_names_the_new_topic(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    rows = stack.sql(
        "SELECT explanation FROM llm_drift FINAL "
        "WHERE prompt_version = 'v2' AND kind = 'input' AND drifted = 1"
    )
    travel = {"flight", "hotel", "visa", "luggage", "boarding", "passport", "layover",
              "seat", "itinerary", "airport", "cancellation", "baggage", "terminal", "gate",
              "check-in", "traveller"}  # fmt: skip
    assert rows
    for row in rows:
        top = json.loads(row["explanation"])["top"]
        new = [t for t in top if t["direction"] == "grew" and t["share_ref"] == 0.0]
        assert new and new[0] is top[0]  # what appeared is reported first
        assert 0.15 <= sum(t["share_cur"] for t in new) <= 0.45  # 30% of the traffic
        assert set(new[0]["terms"]) & travel
        assert len(new[0]["examples"]) == 3
        assert all(e.startswith("Traveller asks about") for e in new[0]["examples"])


def test_references_are_listed_and_replaced_through_the_running_worker(
    run: tuple[Stack, dict], tmp_path: Path
) -> None:
    stack, _ = run
    listed = json.loads(stack.cli("reference", "show", "--format", "json").stdout)
    assert {(r["prompt_version"], r["source"]) for r in listed} == {
        ("v1", "first"), ("v2", "inherited")
    }  # fmt: skip
    events = tmp_path / "golden.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in synthetic_events(40, seed=7, app=APP)))
    done = json.loads(stack.cli("reference", "set", APP, "v3", "--file", str(events)).stdout)
    assert (done["source"], done["size"]) == ("file", 40)
    ranged = json.loads(
        stack.cli("reference", "set", APP, "v2", "--from", "2000-01-01T00:00:00Z",
                  "--to", "2100-01-01T00:00:00Z", "--size", "100").stdout
    )  # fmt: skip
    assert (ranged["source"], ranged["size"]) == ("range", 100)
    stack.cli("reference", "clear", APP, "v3")
    listed = {
        r["prompt_version"]: r
        for r in json.loads(stack.cli("reference", "show", "--format", "json").stdout)
    }
    assert set(listed) == {"v1", "v2"}
    assert (listed["v2"]["source"], int(listed["v2"]["size"])) == ("range", 100)
    stored = stack.scalar(
        "SELECT count() FROM llm_drift_reference_vectors FINAL "
        f"WHERE reference_id = '{ranged['reference_id']}' AND {VECTORS}"
    )
    assert stored == 2 * 100  # both kinds
    counts = stack.scalar(
        "SELECT count() FROM llm_drift_reference_vectors FINAL "
        f"WHERE reference_id = '{ranged['reference_id']}' AND kind = 'chunk_count'"
    )
    assert counts == 100  # and the retrieval numbers of the stored events


def test_a_reference_is_set_without_a_worker_on_the_embedded_engine(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "home", "127.0.0.1:1", free_port())
    stack.cli("migrate")
    events = tmp_path / "golden.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in synthetic_events(30, seed=8)))
    done = json.loads(stack.cli("reference", "set", "bot", "v1", "--file", str(events)).stdout)
    assert (done["source"], done["size"]) == ("file", 30)
    bad = stack.cli("reference", "set", "bot", "v1", "--first", "5", "--file", str(events),
                    check=False)  # fmt: skip
    assert bad.returncode == 2 and "exactly one of" in bad.stderr
    missing = stack.cli("reference", "clear", "bot", "v9", check=False)
    assert missing.returncode == 1 and "bot|v9 has no reference" in missing.stderr
    listed = json.loads(stack.cli("reference", "show", "--format", "json").stdout)
    assert [(r["app"], r["prompt_version"], int(r["size"])) for r in listed] == [("bot", "v1", 30)]


def test_windows_are_tested_again_after_the_embedded_broker_restarts(tmp_path: Path) -> None:
    """Tansu keeps topics in memory: offsets restart at 0 while llm_drift remembers old ones."""
    home = tmp_path / "home"
    settings = {"LLMPULSE_DRIFT_REFERENCE_SIZE": "100", "LLMPULSE_DRIFT_WINDOW_SIZE": "100",
                "LLMPULSE_DRIFT_ROUND_S": "1"}  # fmt: skip
    tested = f"SELECT count() FROM llm_drift FINAL WHERE {VECTORS}"
    for run, expected in ((0, 2), (1, 6)):  # 1 window x 2 kinds, then 2 more windows
        broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / f"broker-{run}")
        broker.start()
        stack = Stack(home, broker.bootstrap, free_port(), extra_env=settings)
        try:
            worker = stack.start_worker()
            events = synthetic_events(200, seed=50 + run, app=APP, prompt_version="v1",
                                      prefix=f"run{run}")  # fmt: skip
            publish(stack.bootstrap, _payloads(list(events)))
            assert stack.wait_for(tested, expected) == expected
            assert stack.stop_worker(worker) == 0
        finally:
            stack.kill_workers()
            broker.stop()
