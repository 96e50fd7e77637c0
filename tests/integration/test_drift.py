"""Drift in the stream: a prompt version that shifts topics is flagged, its sibling is not.

One run, read by every test here: v1 builds the app's reference from its first
events, the worker restarts, then v1 and v2 traffic interleave. v2 inherits v1's
reference (a new version is compared with what the app did before), and 30% of
its questions are about a topic the reference never saw.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest

from ingest.synthetic import synthetic_events
from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack, publish

pytestmark = pytest.mark.integration

REFERENCE, WINDOW, PER_VERSION = 300, 200, 600
APP = "shop"


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
        assert (
            stack.wait_for("SELECT count() FROM llm_drift FINAL", windows, timeout=300) == windows
        )
        seen["reference_after"] = stack.sql(
            "SELECT reference_id, size FROM llm_drift_references FINAL WHERE prompt_version='v1'"
        )
        yield stack, seen
        assert stack.stop_worker(worker) == 0
    finally:
        for w in stack.workers:
            if w.poll() is None:
                w.kill()
                w.wait(30)
        broker.stop()


def test_the_shifted_version_drifts_and_its_sibling_does_not(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    rows = stack.sql(
        "SELECT prompt_version, kind, countIf(drifted = 1) AS drifted, count() AS windows, "
        "min(p_value) AS p_min FROM llm_drift FINAL GROUP BY prompt_version, kind "
        "ORDER BY prompt_version, kind"
    )
    by = {(r["prompt_version"], r["kind"]): r for r in rows}
    assert set(by) == {("v1", "input"), ("v1", "output"), ("v2", "input"), ("v2", "output")}
    for kind in ("input", "output"):
        assert int(by[("v1", kind)]["drifted"]) == 0
        assert float(by[("v1", kind)]["p_min"]) > 0.01
        assert int(by[("v2", kind)]["drifted"]) == int(by[("v2", kind)]["windows"]) == 3


def test_each_row_is_a_decided_test_of_one_window(run: tuple[Stack, dict]) -> None:
    stack, _ = run
    row = stack.sql(
        "SELECT countIf(drifted != (p_value <= threshold)) AS inconsistent, "
        "countIf(threshold > alpha) AS above_alpha, min(n_cur) AS lo, max(n_cur) AS hi, "
        "min(n_ref) AS ref_lo, max(n_ref) AS ref_hi, countIf(window_end < window_start) AS bad, "
        "uniqExact(method) AS methods, countIf(distance < 0) AS negative FROM llm_drift FINAL"
    )[0]
    assert int(row["inconsistent"]) == 0 and int(row["above_alpha"]) == 0
    assert (int(row["lo"]), int(row["hi"])) == (WINDOW, WINDOW)
    assert (int(row["ref_lo"]), int(row["ref_hi"])) == (REFERENCE, REFERENCE)
    assert int(row["bad"]) == 0 and int(row["negative"]) == 0 and int(row["methods"]) == 1


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
    for row in rows:
        top = json.loads(row["explanation"])["top"][0]
        assert top["direction"] == "grew" and top["share_ref"] == 0.0
        assert 0.15 <= top["share_cur"] <= 0.45
        assert set(top["terms"]) & travel
        assert len(top["examples"]) == 3
        assert all(e.startswith("Traveller asks about") for e in top["examples"])
