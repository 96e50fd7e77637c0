"""Every stored event carries every score; NULL only where a rule says so."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ingest.synthetic import synthetic_events
from llmpulse.broker import EmbeddedBroker, free_port
from tests.integration.conftest import Stack, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 2_000


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(synthetic_events(N, seed=11))


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, events: list[dict]) -> Iterator[Stack]:
    """One run of the stream, read by every test here (scoring 2,000 events takes a while)."""
    root = tmp_path_factory.mktemp("scores")
    broker = EmbeddedBroker("127.0.0.1", free_port(), root / "broker-logs")
    broker.start()
    stack = Stack(root / "home", broker.bootstrap, free_port())
    try:
        worker = stack.start_worker()
        payloads = [(e["event_id"].encode(), json.dumps(e).encode()) for e in events]
        publish(stack.bootstrap, payloads)
        assert stack.wait_for("SELECT count() FROM llm_events FINAL", N) == N
        yield stack
        assert stack.stop_worker(worker) == 0
    finally:
        stack.kill_workers()
        broker.stop()


def test_two_thousand_events_get_every_score_column(scored: Stack, events: list[dict]) -> None:
    with_context = sum(1 for e in events if e.get("context"))
    row = scored.sql(
        "SELECT count() AS n, countIf(hallucination IS NULL) AS no_grounding, "
        "countIf(hallucination IS NULL AND notEmpty(context)) AS missing_grounding, "
        "countIf(empty(toxicity_scores) OR toxicity_model = '') AS no_toxicity, "
        "countIf(toxicity < 0 OR toxicity > 1 OR injection < 0 OR injection > 1) AS out_of_range, "
        "countIf(hallucination_method = '' AND notEmpty(context)) AS no_method, "
        "uniqExact(embedding_model) AS models, any(embedding_model) AS model, "
        "any(redaction) AS redaction FROM llm_events FINAL"
    )[0]
    assert int(row["n"]) == N
    assert int(row["no_grounding"]) == N - with_context  # NULL exactly where there is no context
    assert int(row["missing_grounding"]) == 0
    assert int(row["no_toxicity"]) == 0 and int(row["out_of_range"]) == 0
    assert int(row["no_method"]) == 0
    assert (int(row["models"]), row["model"], row["redaction"]) == (1, "all-MiniLM-L6-v2", "mask")


def test_embeddings_are_stored_once_per_event_and_kind(scored: Stack) -> None:
    row = scored.sql(
        "SELECT count() AS n, uniqExact(event_id) AS events, min(length(vector)) AS lo, "
        "max(length(vector)) AS hi, countIf(kind = 'input') AS inputs FROM llm_embeddings FINAL"
    )[0]
    assert [int(row[k]) for k in ("n", "events", "lo", "hi", "inputs")] == [2 * N, N, 384, 384, N]


def test_pii_is_found_before_it_is_masked_in_storage(scored: Stack, events: list[dict]) -> None:
    emails = [e["event_id"] for e in events if "@example.com" in e["input"]]
    assert emails, "the synthetic stream must hold some emails"
    row = scored.sql(
        "SELECT countIf(has(pii_input, 'email')) AS found, "
        "countIf(position(input, '@example.com') > 0) AS raw_left FROM llm_events FINAL "
        f"WHERE event_id IN ({', '.join(repr(i) for i in emails)})"
    )[0]
    assert (int(row["found"]), int(row["raw_left"])) == (len(emails), 0)


def test_injection_attempts_score_above_ordinary_questions(scored: Stack) -> None:
    row = scored.sql(
        "SELECT minIf(injection, startsWith(input, 'Ignore all previous')) AS attack_min, "
        "quantileExactIf(0.99)(injection, startsWith(input, 'Customer')) AS benign_p99 "
        "FROM llm_events FINAL"
    )[0]
    assert float(row["attack_min"]) > float(row["benign_p99"])


def test_answers_that_change_the_context_figures_are_flagged(
    scored: Stack, events: list[dict]
) -> None:
    changed = {e["event_id"] for e in events if e.get("context") and
               not e["output"].startswith(e["context"][0])}  # fmt: skip
    rows = scored.sql(
        "SELECT event_id, hallucination, length(unsupported) AS n_unsupported "
        "FROM llm_events FINAL WHERE notEmpty(context)"
    )
    flagged = {r["event_id"] for r in rows if int(r["n_unsupported"]) > 0}
    assert changed and len(flagged & changed) >= 0.9 * len(changed)
    assert len(flagged - changed) <= 0.05 * (len(rows) - len(changed))
    bad = [float(r["hallucination"]) for r in rows if r["event_id"] in changed]
    good = [float(r["hallucination"]) for r in rows if r["event_id"] not in changed]
    assert sum(bad) / len(bad) > sum(good) / len(good) + 0.2
