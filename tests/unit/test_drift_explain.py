"""Drift explanations: the cluster that appeared or vanished, with its own texts and words."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.drift_explain import explain_drift, kmeans, top_terms

DIM = 32
# Four topics on orthogonal directions, each with its own vocabulary.
VOCABULARY = {
    0: ["recipe", "oven", "flour", "bake", "dough", "butter"],
    1: ["weather", "rain", "forecast", "storm", "sunny", "wind"],
    2: ["invoice", "refund", "payment", "billing", "charge", "receipt"],
    3: ["telescope", "planet", "orbit", "galaxy", "comet", "nebula"],
}


def sample(counts: dict[int, int], seed: int) -> tuple[np.ndarray, list[str]]:
    """Unit vectors around each topic's axis, and a text of that topic's words for each."""
    rng = np.random.default_rng(seed)
    vectors, texts = [], []
    for topic, n in counts.items():
        x = 0.15 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
        x[:, topic] += 1.0
        vectors.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        for i in range(n):
            words = rng.choice(VOCABULARY[topic], size=3, replace=False)
            texts.append(
                f"Question {seed}-{topic}-{i}: tell me about the {' and the '.join(words)}"
            )
    return np.concatenate(vectors).astype(np.float32), texts


# The reference has topics 0, 1, 3; the window has 0, 1 and a new topic 2 (30%).
REF = {0: 40, 1: 40, 3: 20}
CUR = {0: 35, 1: 35, 2: 30}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    ref, ref_texts = sample(REF, seed=1)
    cur, cur_texts = sample(CUR, seed=2)
    return ref, cur, ref_texts, cur_texts


@pytest.fixture(scope="module")
def explained(data: tuple) -> dict:
    ref, cur, ref_texts, cur_texts = data
    return explain_drift(ref, cur, ref_texts, cur_texts, clusters=4, seed=0)


def test_a_cluster_only_in_the_window_is_reported_first_as_grown(
    explained: dict, data: tuple
) -> None:
    _, _, _, cur_texts = data
    first = explained["top"][0]
    assert first["direction"] == "grew"
    assert first["share_ref"] == 0.0
    assert first["share_cur"] == pytest.approx(30 / 100, abs=0.02)
    assert first["change"] == pytest.approx(first["share_cur"])
    assert len(first["examples"]) == 3 and set(first["examples"]) <= set(cur_texts)
    assert all(text.startswith("Question 2-2-") for text in first["examples"])  # topic 2
    assert first["terms"] and set(first["terms"]) <= set(VOCABULARY[2])


def test_a_cluster_that_disappeared_is_reported_as_shrunk_with_reference_examples(
    explained: dict, data: tuple
) -> None:
    _, _, ref_texts, _ = data
    second = explained["top"][1]
    assert second["direction"] == "shrank"
    assert (second["share_ref"], second["share_cur"]) == (pytest.approx(0.2), 0.0)
    assert second["change"] == pytest.approx(-0.2)
    assert second["examples"] and set(second["examples"]) <= set(ref_texts)
    assert all(text.startswith("Question 1-3-") for text in second["examples"])
    assert set(second["terms"]) <= set(VOCABULARY[3])


def test_report_is_ordered_by_size_of_change_and_shares_add_up(explained: dict) -> None:
    assert explained["method"] == "spherical-kmeans" and explained["clusters"] == 4
    changes = [abs(c["change"]) for c in explained["top"]]
    assert changes == sorted(changes, reverse=True)
    assert sum(c["share_ref"] for c in explained["top"]) == pytest.approx(1.0, abs=1e-3)
    assert sum(c["share_cur"] for c in explained["top"]) == pytest.approx(1.0, abs=1e-3)


def test_report_examples_and_terms_limit_the_output(data: tuple) -> None:
    ref, cur, ref_texts, cur_texts = data
    out = explain_drift(ref, cur, ref_texts, cur_texts, clusters=4, report=2, examples=1, terms=2)
    assert len(out["top"]) == 2
    assert all(len(c["examples"]) == 1 and len(c["terms"]) <= 2 for c in out["top"])


def test_without_texts_the_clusters_come_with_no_examples_or_terms(data: tuple) -> None:
    ref, cur, _, _ = data
    out = explain_drift(ref, cur, clusters=4, seed=0)
    assert out["top"][0]["direction"] == "grew" and out["top"][0]["share_ref"] == 0.0
    assert all(c["examples"] == [] and c["terms"] == [] for c in out["top"])


def test_the_same_seed_gives_the_same_explanation(data: tuple) -> None:
    ref, cur, ref_texts, cur_texts = data
    a = explain_drift(ref, cur, ref_texts, cur_texts, clusters=6, seed=3)
    b = explain_drift(ref, cur, ref_texts, cur_texts, clusters=6, seed=3)
    assert a == b


def test_kmeans_finds_well_separated_clusters_up_to_renaming() -> None:
    x, _ = sample({0: 10, 1: 10, 2: 10}, seed=5)
    labels = kmeans(x, 3, seed=0)
    assert [len(set(labels[i : i + 10])) for i in (0, 10, 20)] == [1, 1, 1]
    assert len(set(labels)) == 3


def test_top_terms_are_words_common_inside_and_rare_outside() -> None:
    inside = ["refund my invoice please", "the invoice has a wrong refund", "refund the invoice"]
    outside = ["bake the bread", "the oven is hot", "my invoice for bread"]
    assert top_terms(inside, outside, limit=2) == ["refund", "invoice"]
    assert "the" not in top_terms(inside, outside, limit=10)  # stopwords never come back


def test_with_more_clusters_than_topics_the_new_topics_pieces_hold_its_share(data: tuple) -> None:
    ref, cur, ref_texts, cur_texts = data
    out = explain_drift(ref, cur, ref_texts, cur_texts, clusters=8, report=8, seed=0)
    new = [c for c in out["top"] if c["share_ref"] == 0.0 and c["direction"] == "grew"]
    assert out["top"][0] in new
    assert sum(c["share_cur"] for c in new) == pytest.approx(0.3, abs=1e-9)
    assert all(t.startswith("Question 2-2-") for c in new for t in c["examples"])
