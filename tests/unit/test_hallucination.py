"""Groundedness: answers are checked sentence by sentence against the context they cite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detectors.base import DetectorError, TextBatch
from detectors.embeddings import EmbeddingModel, default_model_path
from detectors.hallucination import (
    MAX_CHUNKS,
    PRIOR_BASE,
    PRIOR_QUESTION,
    PRIOR_VERBATIM,
    Groundedness,
    HallucinationDetector,
)
from detectors.hallucination_features import FEATURES, FORM_FEATURES
from detectors.heads import LogisticHead
from detectors.text import case_profile, name_tokens, numbers, split_sentences

CONTEXT = [
    "The Eiffel Tower was completed in 1889 in Paris. It is 330 metres tall and was designed "
    "by the engineering company of Gustave Eiffel.",
    "The tower is the most visited paid monument in the world. Its elevators were supplied by "
    "the Otis Elevator Company.",
    "During the Second World War, the lifts were disabled. Hitler visited the city in June 1940.",
    "Watkin's Tower in London was begun in Wembley in 1891 but never finished.",
]
QUESTION = "When was the Eiffel Tower completed and how tall is it?"
GROUNDED = "The Eiffel Tower was completed in 1889 and is 330 metres tall."
NUMBER_SWAP = "The Eiffel Tower was completed in 1899 and is 330 metres tall."
NAME_SWAP = "The Eiffel Tower was completed in 1889 in London and is 330 metres tall."


class CountingEncoder:
    """The embedding model, counting how often it is asked to encode."""

    def __init__(self, model: EmbeddingModel) -> None:
        self.model, self.calls = model, 0

    def encode(self, texts):
        self.calls += 1
        return self.model.encode(texts)


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return EmbeddingModel(device="cpu")


@pytest.fixture(scope="module")
def claims(model: EmbeddingModel) -> HallucinationDetector:
    return HallucinationDetector(model, device="cpu")


@pytest.fixture(scope="module")
def head(model: EmbeddingModel) -> HallucinationDetector:
    return HallucinationDetector(model, head_path="hallucination_head.json", device="cpu")


def score(detector: HallucinationDetector, *outputs: str, question: str = QUESTION):
    n = len(outputs)
    return detector.score(TextBatch.of([question] * n, list(outputs), [CONTEXT] * n))


def test_a_swapped_number_is_flagged_and_the_grounded_answer_is_not(claims) -> None:
    grounded, swapped = score(claims, GROUNDED, NUMBER_SWAP)
    assert grounded.method == swapped.method == "claims"
    assert grounded.score < 0.5 < swapped.score


def test_the_optional_head_ranks_a_name_found_elsewhere_in_the_context_higher(head) -> None:
    """No finding sees "London" (the context names it, for another tower); the head does."""
    grounded, swapped = score(head, GROUNDED, NAME_SWAP)
    assert grounded.method == "head"
    assert grounded.score < swapped.score < 0.5


def test_a_full_sentence_restating_the_question_is_not_flagged(claims) -> None:
    """HaluEval teaches that full sentences are hallucinations; the detector must not."""
    (answer,) = score(claims, "The Eiffel Tower was completed in 1889 and it is 330 metres tall.")
    assert answer.score < 0.5
    assert answer.unsupported == []


def test_the_swapped_sentence_is_listed_with_the_reason(claims) -> None:
    (result,) = score(claims, f"{GROUNDED} It was designed by the company of Thomas Edison.")
    assert result.sentences == 2
    assert result.unsupported == [
        "It was designed by the company of Thomas Edison. [name_unsupported: 'Thomas' is not "
        "mentioned in the context or the question; name_unsupported: 'Edison' is not mentioned "
        "in the context or the question]"
    ]
    assert result.score > 0.9


def test_without_findings_the_score_is_a_prior_below_the_threshold(claims) -> None:
    copied, restated = score(
        claims,
        "The tower is the most visited paid monument in the world.",
        "The Eiffel Tower was completed and it is tall.",
    )
    assert copied.score == pytest.approx(PRIOR_VERBATIM)  # a span of the context
    assert PRIOR_BASE < restated.score <= PRIOR_BASE + PRIOR_QUESTION < 0.5
    assert copied.unsupported == restated.unsupported == []


def test_each_finding_multiplies_the_doubt_that_the_answer_is_grounded(claims) -> None:
    answer = (
        "The Eiffel Tower was completed in 1899. It is 330 metres tall. Its elevators were "
        "supplied by the Siemens company. Hitler visited the city in June 1940."
    )
    (result,) = score(claims, answer)
    (aligned,) = claims.align(TextBatch.of([QUESTION], [answer], [CONTEXT]))
    assert aligned is not None
    overlap = aligned.form[FORM_FEATURES.index("question_overlap")]
    prior = PRIOR_BASE + PRIOR_QUESTION * overlap
    assert result.score == pytest.approx(1 - (1 - prior) * (1 - 0.9) * (1 - 0.7))
    assert [u.split(" [")[0] for u in result.unsupported] == [
        "The Eiffel Tower was completed in 1899.",
        "Its elevators were supplied by the Siemens company.",
    ]
    assert result.sentences == 4 and result.method == "claims"


@pytest.mark.parametrize("context", [None, [], [""], ["  "]])
def test_without_context_there_is_no_score(claims, context) -> None:
    (result,) = claims.score(TextBatch.of([QUESTION], [NUMBER_SWAP], [context]))
    assert result == Groundedness(score=None, unsupported=[], sentences=0, method="claims")


def test_scores_lie_between_zero_and_one(claims, head) -> None:
    outputs = [GROUNDED, NUMBER_SWAP, NAME_SWAP, "Yes.", "Lorem ipsum dolor sit amet. " * 40]
    for detector in (claims, head):
        values = [r.score for r in score(detector, *outputs)]
        assert all(v is not None and 0.0 <= v <= 1.0 for v in values), values


def test_a_mixed_batch_keeps_event_order(claims) -> None:
    events = [
        (QUESTION, NUMBER_SWAP, CONTEXT),
        ("", "A summary of nothing.", None),
        (QUESTION, GROUNDED, CONTEXT),
        ("Who built it?", "", CONTEXT),
        ("Who supplied the lifts?", "The Otis Elevator Company.", CONTEXT[1:2]),
    ]
    inputs, outputs, contexts = (list(column) for column in zip(*events, strict=True))
    batched = claims.score(TextBatch.of(inputs, outputs, contexts))
    alone = [claims.score(TextBatch.of([q], [o], [c]))[0] for q, o, c in events]
    assert [r.score is None for r in batched] == [False, True, False, False, False]
    assert batched[3].score == 0.0  # context but an empty answer: nothing unsupported
    for got, want in zip(batched, alone, strict=True):
        assert got.unsupported == want.unsupported
        assert got.score == pytest.approx(want.score, abs=1e-4)


def test_figures_and_names_past_the_aligned_chunks_still_count_as_stated(claims) -> None:
    filler = [f"Note {i} concerns the lobby." for i in range(MAX_CHUNKS + 20)]
    context = [" ".join(filler), "The Otis Elevator Company installed 7 lifts in 1889."]
    (result,) = claims.score(TextBatch.of([""], ["Otis installed 7 lifts in 1889."], [context]))
    assert result.unsupported == []
    assert result.score is not None and result.score < 0.5


def test_a_batch_is_encoded_in_one_call(model) -> None:
    encoder = CountingEncoder(model)
    detector = HallucinationDetector(encoder, device="cpu")  # type: ignore[arg-type]
    detector.score(TextBatch.of([QUESTION] * 3, [GROUNDED, NUMBER_SWAP, NAME_SWAP], [CONTEXT] * 3))
    assert encoder.calls == 1


def test_lowercased_tokenised_answers_are_checked_too(claims) -> None:
    grounded, number = score(
        claims,
        "the eiffel tower was completed in 1889 in paris , and it is 330 metres tall .",
        "the eiffel tower was completed in 1899 in paris , and it is 330 metres tall .",
        question="",
    )
    assert grounded.unsupported == []
    assert number.unsupported[0].startswith("the eiffel tower was completed in 1899")
    assert grounded.score < 0.5 < number.score


def test_the_shipped_head_records_its_held_out_scores() -> None:
    head = LogisticHead.load("hallucination_head.json")
    auroc = head.meta["holdout_auroc"]
    assert tuple(head.features) == FEATURES
    assert auroc["pooled"]["head"] >= 0.80
    assert {"halueval_qa", "frank_summaries"} <= auroc.keys()
    assert {"rule_unsupported_share", "length_chars"} <= auroc["pooled"].keys()


def test_a_head_for_other_features_is_refused(model, tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"name": "old", "features": ["x"], "mean": [0.0],
                                "scale": [1.0], "weights": [1.0], "bias": 0.0}))  # fmt: skip
    with pytest.raises(DetectorError, match="retrain"):
        HallucinationDetector(model, head_path=str(path))


def _tiny_cross_encoder(path: Path, labels: dict[int, str]) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tokenizer = BertTokenizerFast(str(default_model_path() / "vocab.txt"), model_max_length=128)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=128,
        num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_two_label_fact_checking_cross_encoder_is_accepted(model, tmp_path: Path) -> None:
    checker = _tiny_cross_encoder(tmp_path / "fc", {0: "hallucinated", 1: "consistent"})
    detector = HallucinationDetector(model, nli_path=str(checker), device="cpu")
    (result,) = detector.score(TextBatch.of([QUESTION], [NUMBER_SWAP], [CONTEXT]))
    assert (detector.method, detector._entail) == ("nli", 1)
    assert result.unsupported[0].startswith(f"{NUMBER_SWAP} [number_unsupported: 1899")


def test_an_nli_cross_encoder_replaces_the_similarity_test(model, tmp_path: Path) -> None:
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    nli = _tiny_cross_encoder(tmp_path / "nli", labels)
    detector = HallucinationDetector(model, nli_path=str(nli), device="cpu")
    results = detector.score(
        TextBatch.of(
            [QUESTION] * 3, [GROUNDED, f"{NUMBER_SWAP} Yes.", "x"], [CONTEXT, CONTEXT, None]
        )
    )
    assert [r.method for r in results] == ["nli"] * 3
    assert [r.sentences for r in results] == [1, 2, 0]
    assert all(0.0 <= r.score <= 1.0 for r in results[:2])
    # a swapped number fails whatever NLI says
    assert results[1].unsupported[0].startswith(f"{NUMBER_SWAP} [number_unsupported: 1899")
    assert results[2].score is None


def test_a_cross_encoder_without_a_supporting_label_is_refused(model, tmp_path: Path) -> None:
    nli = _tiny_cross_encoder(tmp_path / "nli", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(DetectorError, match="no single supporting class"):
        HallucinationDetector(model, nli_path=str(nli), device="cpu")


def test_glued_and_abbreviated_sentences_split_where_a_reader_would() -> None:
    text = (
        "Heidegger was a German philosopher.Lydia Davis (born July 15, 1947) is a writer. "
        "Mr. Smith paid $3.5 million in the U.S. on Monday. It ended."
    )
    assert split_sentences(text) == [
        "Heidegger was a German philosopher.",
        "Lydia Davis (born July 15, 1947) is a writer.",
        "Mr. Smith paid $3.5 million in the U.S. on Monday.",
        "It ended.",
    ]


def test_numbers_are_compared_in_one_spelling() -> None:
    assert numbers("10,000 fans, 3.50 m, three goals, 145lbs, the 2nd") == [
        "10000", "3.5", "145", "2", "3",
    ]  # fmt: skip


def test_names_in_lowercased_text_are_recognised_by_the_context_casing() -> None:
    profile = case_profile(["Funding for the NHS in England was cut, the report said."])
    assert name_tokens("the nhs in england needs more funding .", profile, lower=True) == [
        "nhs",
        "england",
    ]
    assert name_tokens("The report says more.", profile, lower=False) == []


def test_alignment_features_match_the_head_columns(head) -> None:
    (alignment,) = head.align(TextBatch.of([QUESTION], [GROUNDED], [CONTEXT]))
    assert alignment is not None
    assert alignment.features.shape == (len(FEATURES),)
    assert np.isfinite(alignment.features).all()


def test_questions_and_courtesy_are_not_claims(head) -> None:
    polite = f"{GROUNDED} Anything else I can help with? Happy to help!"
    outputs = [GROUNDED, polite, "Anything else? Glad to help!"]
    plain, courteous, only_courtesy = head.score(
        TextBatch.of([QUESTION] * 3, outputs, [CONTEXT] * 3)
    )
    assert courteous.unsupported == [] and courteous.sentences == plain.sentences
    assert courteous.score == pytest.approx(plain.score, abs=1e-6)
    assert (only_courtesy.score, only_courtesy.sentences) == (0.0, 0)
