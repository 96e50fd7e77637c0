"""Toxicity: Detoxify's own numbers in length-sorted batches, or the bundled MiniLM head."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from detoxify import Detoxify

from detectors.base import DetectorError, TextBatch
from detectors.embeddings import EmbeddingModel
from detectors.tone import ToneModel
from detectors.toxicity import (
    DetoxifyToxicity,
    HeadToxicity,
    Toxicity,
    load_tone,
    load_toxicity,
)
from tests.fixtures.tiny_detoxify import build_tiny_checkpoint

DETOXIFY_CLASSES = {
    "toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack",
}  # fmt: skip

# Very different token lengths, so length-sorted batches pad differently from one
# padded list; the longest is cut at 512 tokens by both.
TEXTS = [
    "",
    "ok",
    "You are a worthless idiot and nobody will ever want you around.",
    "Thanks for the detailed answer, it fixed my build. " * 12,
    "word " * 700,
    "Paris is the capital of France.",
    "?",
    "Here is a summary of the meeting notes you asked for. " * 40,
]
HOSTILE = "You are a disgusting, stupid idiot and I hate you. Shut up, you worthless moron."
FRIENDLY = "Thank you so much for your help today, have a wonderful weekend with your family!"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-detoxify"))


@pytest.fixture(scope="module")
def detector(tiny: tuple[Path, Path]) -> DetoxifyToxicity:
    checkpoint, config = tiny
    return DetoxifyToxicity(checkpoint, config, device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def embeddings() -> EmbeddingModel:
    model = EmbeddingModel(device="cpu")
    # The first encode starts tqdm's daemon monitor thread (even with the bar off);
    # starting it here keeps the per-test thread-leak check from waiting on it.
    model.encode(["warm up"])
    return model


@pytest.fixture(scope="module")
def head(embeddings: EmbeddingModel) -> HeadToxicity:
    return HeadToxicity(embeddings)


def outputs(texts: list[str]) -> TextBatch:
    return TextBatch.of(["prompt"] * len(texts), texts)


def test_batched_scores_equal_detoxify_predict(
    detector: DetoxifyToxicity, tiny: tuple[Path, Path]
) -> None:
    checkpoint, config = tiny
    reference = Detoxify(
        "original", checkpoint=str(checkpoint), device="cpu", huggingface_config_path=str(config)
    ).predict(TEXTS)
    probs = detector.predict(TEXTS)  # the model alone; score() adds the rules to toxicity
    assert probs.shape == (len(TEXTS), len(detector.class_names))
    for name, expected in reference.items():
        got = probs[:, detector.class_names.index(name)]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)


def test_detoxify_toxicity_is_combined_with_the_rules_and_other_classes_are_not(
    detector: DetoxifyToxicity,
) -> None:
    reply = "Stop asking. Did you even read the manual?"
    [scored] = detector.score(outputs([reply]))
    raw = dict(zip(detector.class_names, detector.predict([reply])[0], strict=True))
    assert scored.scores["toxicity"] == pytest.approx(1 - (1 - raw["toxicity"]) * 0.15 * 0.25)
    others = {k: v for k, v in scored.scores.items() if k != "toxicity"}
    assert others == pytest.approx({k: v for k, v in raw.items() if k != "toxicity"})


def test_scores_the_outputs_not_the_inputs(detector: DetoxifyToxicity) -> None:
    swapped = TextBatch.of(TEXTS[::-1], TEXTS)
    assert detector.score(swapped) == detector.score(outputs(TEXTS))


def test_order_is_kept_when_lengths_are_shuffled(detector: DetoxifyToxicity) -> None:
    base = {t: r.scores for t, r in zip(TEXTS, detector.score(outputs(TEXTS)), strict=True)}
    assert len({s["toxicity"] for s in base.values()}) == len(TEXTS)  # texts are told apart
    shuffled = TEXTS[:]
    random.Random(7).shuffle(shuffled)
    for text, result in zip(shuffled, detector.score(outputs(shuffled)), strict=True):
        assert result.scores == pytest.approx(base[text], abs=1e-5)


def test_all_six_classes_appear_with_detoxify_names(detector: DetoxifyToxicity) -> None:
    [result] = detector.score(outputs(["fine"]))
    assert isinstance(result, Toxicity)
    assert set(result.scores) == DETOXIFY_CLASSES
    assert all(0.0 <= v <= 1.0 for v in result.scores.values())
    assert result.model == "detoxify:tiny-detoxify.ckpt"


def test_an_empty_batch_gives_no_results(detector: DetoxifyToxicity) -> None:
    assert detector.score(outputs([])) == []


def test_a_missing_checkpoint_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="LLMPULSE_TOXICITY_CHECKPOINT"):
        DetoxifyToxicity(tmp_path / "nope.ckpt", device="cpu")


def test_a_file_that_is_not_a_checkpoint_names_the_setting(
    tmp_path: Path, tiny: tuple[Path, Path]
) -> None:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a torch checkpoint")
    with pytest.raises(DetectorError, match="LLMPULSE_TOXICITY_CHECKPOINT"):
        DetoxifyToxicity(bogus, tiny[1], device="cpu")


def test_a_config_dir_without_config_json_names_the_setting(
    tmp_path: Path, tiny: tuple[Path, Path]
) -> None:
    with pytest.raises(DetectorError, match="LLMPULSE_TOXICITY_CONFIG"):
        DetoxifyToxicity(tiny[0], tmp_path, device="cpu")


def test_head_scores_a_hostile_reply_above_a_friendly_one(head: HeadToxicity) -> None:
    hostile, friendly = head.score(outputs([HOSTILE, FRIENDLY]))
    assert set(hostile.scores) == {"toxicity"}
    assert 0.0 <= friendly.scores["toxicity"] < 0.5 < hostile.scores["toxicity"] <= 1.0
    assert hostile.model == "minilm-head:toxicity_head.json"


def test_head_reuses_the_batch_vectors(head: HeadToxicity, embeddings: EmbeddingModel) -> None:
    hostile = embeddings.encode([HOSTILE])
    # The vectors are the hostile text's, the string is friendly (no rule fires on it):
    # the score is the head's on the vectors.
    batch = outputs([FRIENDLY]).with_vectors(embeddings.encode(["prompt"]), hostile)
    [reused] = head.score(batch)
    expected = float(head.head.predict(hostile)[0])
    assert reused.scores["toxicity"] == pytest.approx(expected, abs=1e-6)


def test_a_condescending_reply_without_a_swear_word_is_flagged_by_the_rules(
    head: HeadToxicity, embeddings: EmbeddingModel
) -> None:
    reply = "Did you even read the manual? Stop asking me this."
    [scored] = head.score(outputs([reply]))
    model_alone = float(head.head.predict(embeddings.encode([reply]))[0])
    assert scored.scores["toxicity"] == pytest.approx(1 - (1 - model_alone) * 0.15 * 0.25)
    assert scored.scores["toxicity"] > 0.5


def test_head_gives_an_empty_reply_zero(head: HeadToxicity) -> None:
    empty, blank, hostile = head.score(outputs(["", "  \n", HOSTILE]))
    assert empty.scores["toxicity"] == blank.scores["toxicity"] == 0.0
    assert hostile.scores["toxicity"] > 0.5


def test_head_was_measured_on_held_out_rows(head: HeadToxicity) -> None:
    auroc = head.head.meta["holdout_auroc"]
    assert set(auroc) == {"toxicity_davidson", "toxicity_toxigen_seeds", "overall"}
    assert auroc["overall"] > 0.85


def test_load_toxicity_uses_the_head_without_a_checkpoint(
    embeddings: EmbeddingModel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="detectors.toxicity"):
        detector = load_toxicity(None, None, "cpu", embeddings)
    assert isinstance(detector, HeadToxicity)
    assert "minilm-head:toxicity_head.json" in caplog.text


def test_load_toxicity_uses_detoxify_with_a_checkpoint(
    tiny: tuple[Path, Path], embeddings: EmbeddingModel, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint, config = tiny
    with caplog.at_level(logging.INFO, logger="detectors.toxicity"):
        detector = load_toxicity(checkpoint, config, "cpu", embeddings)
    assert isinstance(detector, DetoxifyToxicity)
    assert str(checkpoint) in caplog.text


def test_load_toxicity_does_not_fall_back_when_the_checkpoint_is_broken(
    tmp_path: Path, embeddings: EmbeddingModel
) -> None:
    with pytest.raises(DetectorError, match="LLMPULSE_TOXICITY_CHECKPOINT"):
        load_toxicity(tmp_path / "missing.ckpt", None, "cpu", embeddings)


def test_load_toxicity_refuses_a_config_without_a_checkpoint(
    tiny: tuple[Path, Path], embeddings: EmbeddingModel
) -> None:
    with pytest.raises(DetectorError, match="LLMPULSE_TOXICITY_CHECKPOINT"):
        load_toxicity(None, tiny[1], "cpu", embeddings)


@pytest.fixture(scope="module")
def toned(embeddings: EmbeddingModel) -> HeadToxicity:
    return HeadToxicity(embeddings, tone=ToneModel(embeddings))


SNIDE = (
    "Sigh. Fine, I will explain it again, slowly this time, since the guide was "
    "apparently too much for you."
)
HELPFUL = "The export button is under Reports, top right. Happy to help!"


def test_the_tone_model_flags_a_snide_reply_the_head_alone_misses(
    head: HeadToxicity, toned: HeadToxicity
) -> None:
    [alone] = head.score(outputs([SNIDE.replace("Sigh. ", "")]))
    snide, helpful = toned.score(outputs([SNIDE.replace("Sigh. ", ""), HELPFUL]))
    assert alone.scores["toxicity"] < 0.5 < snide.scores["toxicity"]
    assert snide.scores["rude_tone"] > 0.5 > helpful.scores["rude_tone"]
    assert helpful.scores["toxicity"] < 0.5


def test_the_score_is_the_noisy_or_of_language_tone_and_rules(toned: HeadToxicity) -> None:
    [s] = toned.score(outputs([HELPFUL]))
    language, tone = s.scores["toxic_language"], s.scores["rude_tone"]
    assert s.scores["toxicity"] == pytest.approx(1 - (1 - language) * (1 - tone))


def test_the_tone_model_records_its_training_data_and_held_out_figures() -> None:
    tone = ToneModel(EmbeddingModel(device="cpu"))
    data = json.loads(tone.meta["data"])
    assert set(data) >= {"toxicity_replies.jsonl", "toxicity_replies_polite.jsonl"}
    assert all(len(v.get("sha256", "x" * 64)) == 64 for v in data.values())
    assert tone.figures()["holdout_auroc"] > 0.85
    assert tone.top == 2 and tone.layer == 4


def test_no_tone_model_for_other_embeddings(caplog: pytest.LogCaptureFixture) -> None:
    class Other:
        name = "some-other-model"

    with caplog.at_level(logging.WARNING, logger="detectors.toxicity"):
        assert load_tone(Other()) is None  # type: ignore[arg-type]
    assert "no tone model for some-other-model" in caplog.text
