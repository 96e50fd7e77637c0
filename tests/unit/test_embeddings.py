"""The shared embedding model: offline default, normalised vectors, a cache that changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.base import DetectorError, TextBatch
from detectors.embeddings import EmbeddingModel, EmbeddingsDetector


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    m = EmbeddingModel(device="cpu", cache_size=4)
    m.encode(["warm-up"])  # the first call allocates; keep it out of the tests
    return m


def test_the_default_is_the_bundled_minilm(model: EmbeddingModel) -> None:
    assert (model.name, model.dim, model.device) == ("all-MiniLM-L6-v2", 384, "cpu")


def test_vectors_are_unit_length_and_similar_texts_are_closer(model: EmbeddingModel) -> None:
    a, b, c = model.encode(["my invoice is wrong", "the bill I got is incorrect", "tiger"])
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) > float(a @ c) + 0.2


def test_cached_vectors_equal_fresh_ones(model: EmbeddingModel) -> None:
    fresh = EmbeddingModel(device="cpu", cache_size=0)
    texts = ["refund please", "where is my parcel", "refund please"]
    first = model.encode(texts)
    hits = model.hits
    again = model.encode(texts)
    assert model.hits == hits + 3
    np.testing.assert_allclose(again, first)
    np.testing.assert_allclose(fresh.encode(texts), first, atol=1e-5)


def test_the_cache_stays_within_its_bound(model: EmbeddingModel) -> None:
    model.encode([f"text number {i}" for i in range(10)])
    assert len(model._cache) == 4


def test_inputs_and_outputs_are_embedded_in_order(model: EmbeddingModel) -> None:
    batch = EmbeddingsDetector(model).embed(TextBatch.of(["hello", "bye"], ["hi", "ciao"]))
    assert batch.input_vectors is not None and batch.output_vectors is not None
    np.testing.assert_allclose(batch.output_vectors[1], model.encode(["ciao"])[0], atol=1e-6)


def test_a_directory_without_a_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DetectorError, match="LLMPULSE_EMBEDDING_MODEL"):
        EmbeddingModel(tmp_path)


def test_the_suite_passes_each_text_of_a_batch_through_the_model_once() -> None:
    from detectors.suite import DetectorSuite, SuiteConfig

    suite = DetectorSuite(SuiteConfig(device="cpu", precision="fp32"))
    model = suite.embeddings
    calls: list[tuple[str, int]] = []
    encode, with_hidden = model.model.encode, model.encode_with_hidden
    model.model.encode = lambda texts, **kw: (calls.append(("encode", len(texts))) or encode(
        texts, **kw
    ))  # fmt: skip
    model.encode_with_hidden = lambda texts, layer: (
        calls.append(("outputs", len(texts))) or with_hidden(texts, layer)
    )
    context = ["Refunds are paid within 14 days.", "Shipping costs $5 per order."]
    batch = TextBatch.of(
        ["when is my refund paid?", "hello"],
        ["Your refund arrives within 14 days. Shipping is free.", "hi there"],
        [context, None],
    )
    scores = suite.score(batch)
    assert scores[0].hallucination is not None and scores[0].hallucination.score is not None
    # the two outputs in the tone model's pass (their vectors come with it), then the
    # inputs, the two claim sentences and the two chunk sentences in one encode
    assert calls == [("outputs", 2), ("encode", 6)]


def test_vectors_from_the_shared_pass_equal_encoded_ones() -> None:
    shared = EmbeddingModel(device="cpu", precision="fp32")
    fresh = EmbeddingModel(device="cpu", precision="fp32", cache_size=0)
    texts = ["a short one", "a somewhat longer reply, with a clause or two in it."]
    states = shared.encode_with_hidden(texts, 4)
    assert [s.shape[1] for s in states] == [384, 384]
    assert states[0].shape[0] < states[1].shape[0]  # one state per token, padding trimmed
    misses = shared.misses
    vectors = shared.encode(texts)
    assert shared.misses == misses  # both came from the shared pass
    np.testing.assert_allclose(vectors, fresh.encode(texts), atol=1e-5)
