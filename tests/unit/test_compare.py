"""llmpulse compare: the tests behind the verdict, Holm, and the command, on a fake source."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import analysis.compare as cmp
from analysis.compare import (
    MIN_EVENTS,
    Comparison,
    NoEventsError,
    Sample,
    compare,
    holm,
    two_proportion_z,
)
from llmpulse.cli import main

UNTIL = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
Row = dict[str, Any]


def events(
    n: int,
    seed: int,
    toxicity: float = 0.02,
    hallucination: float = 0.1,
    latency_scale: float = 1.0,
    relevance_drop: float = 0.0,
) -> list[Row]:
    """Synthetic per-event rows, shaped like the events query's columns."""
    rng = np.random.default_rng(seed)
    u = rng.random(size=(n, 8))
    latency = rng.lognormal(6.5, 0.4, size=n) * latency_scale
    cost = rng.lognormal(-6.0, 0.3, size=n)
    # relevance in hundredths, 0.30 to 0.89, drawn after the rest so their draws stay put
    answer = rng.integers(30, 90, size=n) / 100 - relevance_drop
    chunk = rng.integers(30, 90, size=n) / 100 - relevance_drop
    return [
        {
            "event_id": f"s{seed}-{i}",
            "error": int(u[i, 0] < 0.03),
            "latency_ms": float(latency[i]),
            "cost_usd": float(cost[i]),
            "toxicity": 0.9 if u[i, 1] < toxicity else 0.05,
            # 80% of events have a context to ground against
            "hallucination": (0.9 if u[i, 2] < hallucination else 0.1) if u[i, 3] < 0.8 else None,
            "pii": int(u[i, 4] < 0.05),
            "injection": 0.8 if u[i, 5] < 0.01 else 0.0,
            "feedback": (-1.0 if u[i, 6] < 0.2 else 1.0) if u[i, 7] < 0.3 else None,
            "answer_relevance": float(answer[i]),
            "context_relevance": float(chunk[i]) if u[i, 3] < 0.8 else None,  # with context
            "side_events": n,
        }
        for i in range(n)
    ]


def unit_vectors(n: int, seed: int, dim: int = 32) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class FakeSource:
    """Answers the three queries compare() sends, and records them."""

    def __init__(self, base: list[Row], cand: list[Row], base_seed: int, cand_seed: int) -> None:
        self.rows = [{"side": "baseline", **r} for r in base]
        self.rows += [{"side": "candidate", **r} for r in cand]
        n_b, n_c = len(base), len(cand)
        self.vectors = {
            kind: [{"side": "baseline", "vector": v.tolist()}
                   for v in unit_vectors(n_b, base_seed * 10 + k)]
            + [{"side": "candidate", "vector": v.tolist()}
               for v in unit_vectors(n_c, cand_seed * 10 + k)]
            for k, kind in enumerate(("input", "output"))
        }  # fmt: skip
        self.sql: list[str] = []

    def __call__(self, sql: str) -> list[Row]:
        self.sql.append(sql)
        if "llm_embeddings" in sql:
            return self.vectors["output" if "kind = 'output'" in sql else "input"]
        if "AS version" in sql:
            return [{"version": "v6", "events": 10}, {"version": "v7", "events": 8}]
        return self.rows


def source(base: list[Row], cand: list[Row], base_seed: int = 1, cand_seed: int = 2) -> FakeSource:
    return FakeSource(base, cand, base_seed, cand_seed)


def run(src: Callable[[str], list[Row]], **kwargs: Any) -> Comparison:
    return compare(src, "chat", "v6", "v7", "24h", until=UNTIL, **kwargs)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small matmuls: one torch thread beats two fighting a busy CI machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --- the statistics, by hand ------------------------------------------------------------------


def test_two_proportion_z_matches_a_hand_computed_value() -> None:
    # 10/100 vs 25/100: pooled 0.175, se = sqrt(0.175 * 0.825 * (1/100 + 1/100)) = 0.0537355,
    # z = 0.15 / se = 2.79145, two-sided p = erfc(z / sqrt 2) = 0.005247
    z, p = two_proportion_z(10, 100, 25, 100)
    assert z == pytest.approx(2.79145, abs=1e-5)
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert p == pytest.approx(0.005247, abs=1e-6)
    assert two_proportion_z(25, 100, 10, 100) == pytest.approx((-z, p))


def test_two_proportion_z_is_safe_when_nothing_varies() -> None:
    assert two_proportion_z(0, 50, 0, 80) == (0.0, 1.0)  # 0/0: no hits on either side
    assert two_proportion_z(50, 50, 80, 80) == (0.0, 1.0)
    assert two_proportion_z(0, 0, 3, 10) == (0.0, 1.0)


def test_holm_adjustment_on_a_hand_example() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


# --- verdicts ---------------------------------------------------------------------------------


def test_a_more_toxic_and_hallucinating_candidate_is_worse_on_both() -> None:
    base = events(400, seed=1, toxicity=0.02, hallucination=0.1)
    cand = events(400, seed=2, toxicity=0.4, hallucination=0.5)
    result = run(source(base, cand))
    for name in ("toxicity_rate", "hallucination_rate"):
        m = result.metric(name)
        assert m.verdict == "worse", m
        assert m.p_value is not None and m.p_value < 0.01
        assert m.p_adjusted is not None and m.p_adjusted < 0.01
        assert m.candidate.value is not None and m.baseline.value is not None
        assert m.candidate.value > m.baseline.value
    assert result.verdict.startswith("v7 is worse than v6 on toxicity_rate (")
    assert "hallucination_rate (" in result.verdict and "%" in result.verdict
    assert result.metric("latency_ms").verdict == "no significant difference"


def test_two_samples_of_one_distribution_get_no_verdict_and_no_drift() -> None:
    base, cand = events(400, seed=11), events(400, seed=12)
    first = run(source(base, cand, 11, 12))
    verdicts = {m.name: m.verdict for m in first.metrics}
    assert set(verdicts.values()) == {"no significant difference"}, verdicts
    assert first.metric("output_drift").p_value is not None
    assert "drifted" not in first.verdict and "worse" not in first.verdict
    again = run(source(base, cand, 11, 12))
    assert [m.p_value for m in again.metrics] == [m.p_value for m in first.metrics]


def test_latency_up_by_half_is_worse_by_mann_whitney() -> None:
    base, cand = events(300, seed=21), events(300, seed=22, latency_scale=1.5)
    m = run(source(base, cand, 21, 22)).metric("latency_ms")
    assert (m.test, m.verdict) == ("Mann-Whitney U", "worse")
    assert m.effect is not None and m.effect > 0.5  # P(candidate > baseline)
    assert m.candidate.value is not None and m.baseline.value is not None
    assert m.candidate.value / m.baseline.value == pytest.approx(1.5, rel=0.15)
    assert m.candidate.p95 is not None and m.p_adjusted is not None and m.p_adjusted < 0.01


def test_less_relevant_answers_and_chunks_are_worse() -> None:
    base, cand = events(300, seed=21), events(300, seed=22, relevance_drop=0.15)
    result = run(source(base, cand, 21, 22))
    for name in ("answer_relevance", "context_relevance"):
        m = result.metric(name)
        assert (m.test, m.verdict) == ("Mann-Whitney U", "worse"), name
        assert m.effect is not None and m.effect < 0.5  # P(candidate > baseline)
    assert result.metric("context_relevance").candidate.n < 300  # only events with context
    assert "answer_relevance (median " in result.verdict


def test_more_relevant_answers_are_better() -> None:
    base, cand = events(300, seed=21, relevance_drop=0.15), events(300, seed=22)
    assert run(source(base, cand, 21, 22)).metric("answer_relevance").verdict == "better"


def test_a_faster_candidate_is_better() -> None:
    base, cand = events(300, seed=21, latency_scale=1.5), events(300, seed=22)
    result = run(source(base, cand, 21, 22))
    assert result.metric("latency_ms").verdict == "better"
    assert result.verdict.startswith("v7 is better than v6 on latency_ms (median ")


def test_five_events_are_not_enough_data() -> None:
    result = run(source(events(5, seed=1), events(5, seed=2)))
    assert {m.verdict for m in result.metrics} == {"not enough data"}
    assert all(m.p_value is None and m.p_adjusted is None for m in result.metrics)
    assert result.verdict.startswith("not enough data for toxicity_rate")
    assert f"< {MIN_EVENTS} per side" in result.verdict


def test_drift_of_outputs_is_found_and_named() -> None:
    src = source(events(200, seed=1), events(200, seed=2))
    shifted = unit_vectors(200, 99) + np.eye(32, dtype=np.float32)[0]
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    src.vectors["output"][200:] = [{"side": "candidate", "vector": v.tolist()} for v in shifted]
    result = run(src)
    assert result.metric("output_drift").verdict == "drifted"
    assert result.metric("input_drift").verdict == "no significant difference"
    assert "outputs drifted (MMD adj. p=" in result.verdict


def shed(rows: list[Row], scored: int) -> list[Row]:
    """The worker under load: only the first ``scored`` events got the model scores."""
    unscored = {"toxicity": None, "injection": None, "hallucination": None}
    return [r if i < scored else r | unscored for i, r in enumerate(rows)]


def test_model_score_rates_are_over_the_scored_events_of_each_side() -> None:
    # candidate: 40 of 160 events model-scored, 8 of them toxic and 4 injections: 20 %
    # and 10 %, not 5 % and 2.5 % of all its events
    cand = [r | {"toxicity": 0.9 if i < 8 else 0.05, "injection": 0.8 if i < 4 else 0.0}
            for i, r in enumerate(events(160, seed=2))]  # fmt: skip
    result = run(source(events(100, seed=1), shed(cand, 40)))
    assert result.metric("toxicity_rate").candidate == Sample(40, pytest.approx(0.2), 8)
    assert result.metric("injection_rate").candidate == Sample(40, pytest.approx(0.1), 4)
    assert result.metric("toxicity_rate").baseline.n == 100  # all scored
    assert result.metric("error_rate").candidate.n == 160  # not a model score: every event
    counts = result.counts["candidate"]
    assert (counts["sampled"], counts["with_toxicity"], counts["with_injection"]) == (160, 40, 40)


def stepped(flagged_full: int, flagged_shed: int) -> list[Row]:
    """Shedding starts inside the window: 100 events scored at rate 1.0, then 200 at
    rate 0.2 of which 40 were scored; ``flagged_*`` of the scored ones are toxic."""
    rows = events(300, seed=2)
    for i, r in enumerate(rows):
        toxic = i < flagged_full if i < 100 else i - 100 < flagged_shed
        r.update(toxicity=0.9 if toxic else 0.05, sample_rate=1.0 if i < 100 else 0.2)
        if i >= 140:  # shed: not model-scored
            r.update(toxicity=None, injection=None, hallucination=None)
    return rows


def test_a_model_score_rate_weights_each_scored_event_by_one_over_its_sample_rate() -> None:
    # 10 % of 100 at rate 1, 30 % of 40 at 0.2 (standing for 200): (10 + 12 / 0.2) /
    # (100 + 40 / 0.2) = 70 / 300, where flagged / scored would say 22 / 140
    result = run(source(events(100, seed=1), stepped(10, 12)))
    tox = result.metric("toxicity_rate").candidate
    assert (tox.n, tox.value) == (140, pytest.approx(70 / 300))
    assert tox.hits == pytest.approx(140 * 70 / 300)  # what the z-test reads
    assert result.metric("error_rate").candidate.n == 300  # not a model score: unweighted
    assert "sumIf(1 / greatest(sample_rate, 1e-06), toxicity >= 0.5)" in (
        result.metric("toxicity_rate").sql
    )


def test_at_sample_rate_one_the_weighted_rate_is_the_plain_share() -> None:
    rows = [r | {"sample_rate": 1.0} for r in events(100, seed=2)]
    toxic = sum(r["toxicity"] >= 0.5 for r in rows)
    tox = run(source(events(100, seed=1), rows)).metric("toxicity_rate").candidate
    assert tox == Sample(100, toxic / 100, toxic)  # exactly: every weight is 1


def test_a_side_with_no_scored_event_has_no_rate_and_no_test() -> None:
    result = run(source(events(100, seed=1), shed(events(100, seed=2), 0)))
    m = result.metric("toxicity_rate")
    assert m.candidate == Sample(0, None, 0)
    assert (m.p_value, m.verdict) == (None, "not enough data")


# --- evidence and errors ----------------------------------------------------------------------


def test_evidence_has_counts_sql_and_a_fixed_window() -> None:
    src = source(events(100, seed=1), events(60, seed=2))
    result = run(src, max_vectors=50)
    assert (
        result.counts["baseline"]["events"] == 100 and result.counts["candidate"]["sampled"] == 60
    )
    assert result.counts["baseline"]["output_vectors"] == 50  # subsampled, seeded
    assert (result.since, result.until) == (datetime(2025, 2, 28, 12, tzinfo=UTC), UNTIL)
    assert "toDateTime64('2025-02-28 12:00:00.000', 3, 'UTC')" in src.sql[0]
    tox = result.metric("toxicity_rate")
    assert "sumIf(1 / greatest(sample_rate, 1e-06), toxicity >= 0.5)" in tox.sql
    assert src.sql[0] in tox.sql
    assert all(m.sql for m in result.metrics)
    assert json.loads(json.dumps(result.as_dict()))["metrics"][0]["name"] == "toxicity_rate"


def test_string_literals_are_escaped() -> None:
    src = source(events(30, seed=1), events(30, seed=2))
    compare(src, "it's", "v6", "v7\\'; DROP", "1h", until=UNTIL)
    assert "app = 'it\\'s'" in src.sql[0] and "'v7\\\\\\'; DROP'" in src.sql[0]


def test_a_side_without_events_names_the_versions_seen() -> None:
    src = source(events(30, seed=1), [])
    with pytest.raises(NoEventsError, match=r"no events for app=chat prompt_version=v7 since "
                       r"2025-02-28T12:00:00\+00:00; prompt_versions seen: v6, v7"):  # fmt: skip
        run(src)


def test_bad_arguments_are_refused() -> None:
    src = source([], [])
    with pytest.raises(ValueError, match="both 'v6'"):
        compare(src, "chat", "v6", "v6", until=UNTIL)
    with pytest.raises(ValueError, match="neither a duration"):
        compare(src, "chat", "v6", "v7", "yesterday", until=UNTIL)
    with pytest.raises(ValueError, match="by must be"):
        compare(src, "chat", "v6", "v7", by="model", until=UNTIL)


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    src = source(events(200, seed=1, toxicity=0.02), events(200, seed=2, toxicity=0.4))
    real = cmp.compare

    def fake(_settings: object, *args: Any, **kwargs: Any) -> Comparison:
        return real(src, *args, until=UNTIL, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(cmp, "compare", fake)
    return src


def test_cli_says_how_many_events_were_model_scored(fake_backend: FakeSource) -> None:
    cand = [r for r in fake_backend.rows if r["side"] == "candidate"]
    fake_backend.rows = [r for r in fake_backend.rows if r["side"] == "baseline"]
    fake_backend.rows += shed(cand, 50)
    args = ["compare", "--app", "chat", "--baseline", "v6", "--candidate", "v7"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "baseline: 200 events, candidate: 200 events (50 of 200 used model-scored)" in (
        result.output
    )


def test_cli_shows_weighted_hits_of_a_model_score_to_one_decimal(fake_backend: FakeSource) -> None:
    fake_backend.rows = [r for r in fake_backend.rows if r["side"] == "baseline"]
    fake_backend.rows += [{"side": "candidate", **r} for r in stepped(10, 12)]
    args = ["compare", "--app", "chat", "--baseline", "v6", "--candidate", "v7"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "23.3% (32.7/140)" in result.output


@pytest.mark.usefixtures("fake_backend")
def test_cli_prints_a_table_and_the_verdict() -> None:
    args = ["compare", "--app", "chat", "--baseline", "v6", "--candidate", "v7"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for text in ("toxicity_rate", "adjusted p", "verdict: v7 is worse than v6 on toxicity_rate"):
        assert text in result.output


@pytest.mark.usefixtures("fake_backend")
def test_cli_json_is_one_object() -> None:
    args = ["compare", "--app", "chat", "--baseline", "v6", "--candidate", "v7", "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["verdict"].startswith("v7 is worse") and len(body["metrics"]) == 12


def test_cli_no_events_is_a_clear_error(fake_backend: FakeSource) -> None:
    fake_backend.rows = [r for r in fake_backend.rows if r["side"] == "baseline"]
    args = ["compare", "--app", "chat", "--baseline", "v6", "--candidate", "v9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "no events for app=chat prompt_version=v9 since" in result.output
    assert "prompt_versions seen: v6, v7" in result.output
