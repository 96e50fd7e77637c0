"""Groundedness: which claims of an answer the retrieved context contradicts or lacks.

Each output sentence is a claim, aligned with its most similar context sentences
by embedding cosine. :mod:`detectors.claims` then reads it against them: every
figure must be stated for the same thing or follow from the context's and the
user's figures, every name must occur, and a "yes" must not meet a "not". Each
failure is a finding that names the claim and the chunk it conflicts with; the
findings make the score, and ``unsupported`` quotes them, so an alert says why.

Without a finding the score stays below 0.5: a prior that is low for an answer
copied verbatim from the context and rises with the share of words taken from
the question rather than the context. The similarity features
(:mod:`detectors.hallucination_features`) and the logistic head trained on
HaluEval/FRANK (``head_path``) are kept for comparison only: on realistic RAG
answers they ranked hallucinations *below* grounded paraphrases, because
hallucinations copy the context's words and grounded answers rephrase and compute.
An NLI cross-encoder (``nli_path``) adds entailment per claim. Events without
context are not scored: ``score`` is None.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import DetectorError, TextBatch
from detectors.claims import Finding, check_claim, known_keys
from detectors.embeddings import EmbeddingModel
from detectors.hallucination_features import (
    FEATURES,
    FORM_FEATURES,
    Alignment,
    Event,
    check,
    neighbourhood,
)
from detectors.heads import LogisticHead
from detectors.text import content_words, numbers, split_sentences, words

__all__ = ["Groundedness", "HallucinationDetector", "holdout_key"]

MAX_CHUNKS = 400  # context sentences read per event; later ones cannot support anything
MAX_UNSUPPORTED = 5
MAX_QUOTE = 300  # characters kept of each unsupported sentence
MAX_ENTRY = 800  # ... of each entry: the sentence and its reasons
# The class of an NLI (entailment/neutral/contradiction) or fact-checking
# (consistent/hallucinated) cross-encoder that says the chunk supports the claim.
SUPPORT_LABELS = ("entail", "consistent", "supported", "grounded", "factual")
PRIOR_CAP = 0.45  # the head's probability alone stays below the 0.5 threshold
# The prior of an answer without findings: low when copied verbatim from the
# context, rising with the share of its content words taken from the question.
PRIOR_VERBATIM = 0.02
PRIOR_BASE = 0.1
PRIOR_QUESTION = 0.3


@dataclass(frozen=True)
class Groundedness:
    score: float | None  # P(hallucinated); None: no context
    # Claims with findings, each "<claim> [<reasons>]": at most 5, the claim cut at 300
    # characters, the entry at 800.
    unsupported: list[str]
    sentences: int
    method: str  # "claims" | "head" | "nli"


def holdout_key(dataset: str, row: Mapping[str, Any]) -> str:
    """The :func:`~detectors.heads.is_holdout` key of a hallucination-set row.

    Paired answers to one question (HaluEval QA, TruthfulQA: ``meta.pair_id``) and
    all summaries of one FRANK article share a key, so no question or article is
    both trained on and held out.
    """
    meta = row.get("meta") or {}
    if dataset == "frank_summaries":
        return str(meta["article_hash"])
    if "pair_id" in meta:
        return str(meta["pair_id"])
    return str(row["id"])


def has_context(context: Sequence[str] | None) -> bool:
    return bool(context) and any(c.strip() for c in context or ())


def is_claim(sentence: str) -> bool:
    """Whether a sentence states something a context could back or refute.

    Questions ("Anything else I can help with?") ask, and short exclamations
    without figures or names ("Happy to help!") are courtesy; counting them as
    unsupported would flag every polite answer.
    """
    text = sentence.strip()
    if text.endswith("?"):
        return False
    if text.endswith("!") and not numbers(text) and len(content_words(text)) <= 4:
        return any(w[:1].isupper() for w in words(text)[1:])  # a name makes it a claim
    return True


def _event(output: str, question: str, context: Sequence[str] | None) -> Event | None:
    if not has_context(context):
        return None
    assert context is not None
    chunks, parts = [], []
    for i, element in enumerate(context):
        for sentence in split_sentences(element):
            chunks.append(sentence)
            parts.append(i)
    sentences = [s for s in split_sentences(output) if is_claim(s)]
    if not sentences or not chunks:
        return None
    q = question if question.strip() else ""
    return Event(sentences, chunks[:MAX_CHUNKS], parts[:MAX_CHUNKS], q, output, chunks)


class HallucinationDetector:
    """Scores answers against their retrieved context; one embedding pass per batch.

    ``threshold`` is the cosine at which an aligned sentence counts as close; 0.65
    gave the rule its best AUROC on the training rows of both context sets.
    """

    name = "hallucination"

    def __init__(
        self,
        embeddings: EmbeddingModel,
        head_path: str | None = None,
        nli_path: str | None = None,
        threshold: float = 0.65,
        device: str = "auto",
    ) -> None:
        self.embeddings = embeddings
        self.threshold = threshold
        self.head: LogisticHead | None = None
        if head_path is not None:
            self.head = LogisticHead.load(head_path)
            if tuple(self.head.features) != FEATURES:
                raise DetectorError(
                    f"{head_path} was trained on other features than this detector computes; "
                    "retrain it with scripts/train_hallucination_head.py or set head_path=None"
                )
        self.nli: Any = None
        self._entail = 0
        if nli_path is not None:
            self._load_nli(Path(nli_path), device)

    @property
    def method(self) -> str:
        """NLI wins over the head: the head was trained on similarity, not entailment."""
        return "nli" if self.nli is not None else "head" if self.head is not None else "claims"

    def _load_nli(self, path: Path, device: str) -> None:
        if not (path / "config.json").exists():
            raise DetectorError(f"no cross-encoder in {path}; nli_path must be a local directory")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import CrossEncoder

        from detectors.device import resolve_device

        self.nli = CrossEncoder(str(path), device=resolve_device(device), local_files_only=True)
        labels = {int(k): str(v).lower() for k, v in self.nli.config.id2label.items()}
        entail = [i for i, label in labels.items() if label.startswith(SUPPORT_LABELS)]
        if len(labels) < 2 or len(entail) != 1:
            raise DetectorError(
                f"{path}: id2label {labels} in config.json names no single supporting class "
                f"(one of {', '.join(SUPPORT_LABELS)}); use an NLI or fact-checking "
                "cross-encoder, or add the label names to its config"
            )
        self._entail = entail[0]

    def score(self, batch: TextBatch, claims: dict[int, Event] | None = None) -> list[Groundedness]:
        """P(hallucinated): the claim-level findings, on top of a prior below 0.5.

        With NLI the prior is the share of claims no chunk entails, and can flag
        alone; the head's probability (``head_path``) is capped like the default.
        ``claims`` is :meth:`parse` of ``batch`` when the caller has it already.
        """
        alignments = self.align(batch, claims=claims)
        rows = [a.features for a in alignments if a is not None]
        head = self.head if self.method == "head" and rows else None
        probs = iter(head.predict(np.vstack(rows)).tolist() if head is not None else [])
        out = []
        for a, context in zip(alignments, batch.contexts, strict=True):
            if a is None:
                # With context but no claim to check (empty, or only questions and
                # courtesy), nothing is unsupported: 0, not NULL.
                value = 0.0 if has_context(context) else None
                out.append(Groundedness(value, [], 0, self.method))
                continue
            if self.method == "nli":
                prior = a.unsupported_share
            elif head is not None:
                prior = PRIOR_CAP * next(probs)
            else:
                prior = _prior(a)
            doubt = 1.0 - prior
            for finding in a.findings:
                doubt *= 1.0 - finding.strength
            quoted = _evidence(a, rejected=self.method == "nli")
            out.append(Groundedness(float(1.0 - doubt), quoted, len(a.sentences), self.method))
        return out

    def align(
        self, batch: TextBatch, with_form: bool = False, claims: dict[int, Event] | None = None
    ) -> list[Alignment | None]:
        """Per event, the sentence alignment and head features; None without context/output.

        ``question_cosine`` needs question and output vectors: taken from the batch
        when it carries them, encoded only ``with_form`` (training), else NaN.
        """
        events = self.parse(batch) if claims is None else claims
        if not events:
            return [None] * len(batch)
        texts = self.texts(events)
        asked = [i for i, e in events.items() if e.question]
        given = batch.input_vectors is not None and batch.output_vectors is not None
        encode_io = with_form and not given
        if encode_io:
            texts += [batch.inputs[i] for i in asked] + [batch.outputs[i] for i in asked]
        vectors = self.embeddings.encode(texts)  # the whole batch in one pass

        q_cos = dict.fromkeys(events, 0.0) | dict.fromkeys(asked, float("nan"))
        if batch.input_vectors is not None and batch.output_vectors is not None:
            for i in asked:
                q_cos[i] = float(batch.input_vectors[i] @ batch.output_vectors[i])
        elif encode_io:
            base = len(texts) - 2 * len(asked)
            for j, i in enumerate(asked):
                q_cos[i] = float(vectors[base + j] @ vectors[base + len(asked) + j])
        sims, offset = {}, 0
        for i, e in events.items():
            n_s, n_c = len(e.sentences), len(e.chunks)
            sent, chunk = vectors[offset : offset + n_s], vectors[offset + n_s : offset + n_s + n_c]
            sims[i] = sent @ chunk.T
            offset += n_s + n_c
        entail = self._entailment(events, sims) if self.nli is not None else {}
        out: list[Alignment | None] = [None] * len(batch)
        for i, e in events.items():
            found = _claims(e, sims[i])
            out[i] = check(e, sims[i], q_cos[i], entail.get(i), self.threshold, found)
        return out

    @staticmethod
    def parse(batch: TextBatch) -> dict[int, Event]:
        """Per event with context and claims, its answer sentences and context chunks."""
        columns = zip(batch.inputs, batch.outputs, batch.contexts, strict=True)
        return {i: e for i, (q, o, c) in enumerate(columns) if (e := _event(o, q, c)) is not None}

    @staticmethod
    def texts(claims: dict[int, Event]) -> list[str]:
        """The sentences and chunks :meth:`align` encodes, for the suite's one pass."""
        return [t for e in claims.values() for t in (*e.sentences, *e.chunks)]

    def _entailment(
        self, events: dict[int, Event], sims: dict[int, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """P(entailment) of each sentence given its aligned neighbourhood, in one predict."""
        pairs = []
        for i, event in events.items():
            for sentence, row in zip(event.sentences, sims[i], strict=True):
                near = neighbourhood(row, event.parts)
                pairs.append((" ".join(event.chunks[j] for j in near), sentence))
        probs = self.nli.predict(pairs, apply_softmax=True, show_progress_bar=False)
        probs = np.asarray(probs, dtype=np.float64).reshape(len(pairs), -1)[:, self._entail]
        out, start = {}, 0
        for i, event in events.items():
            out[i] = probs[start : start + len(event.sentences)]
            start += len(event.sentences)
        return out


def _claims(event: Event, sims: np.ndarray) -> tuple[Finding, ...]:
    """The claim-level evidence against each output sentence, see :mod:`detectors.claims`."""
    known = known_keys([*event.context, event.question])
    found: list[Finding] = []
    for sentence, row in zip(event.sentences, sims, strict=True):
        near = sorted(neighbourhood(row, event.parts), key=lambda j: -row[j])
        found += check_claim(
            sentence, event.question, event.context, near, known, answer=event.output
        )
    return tuple(found)


def _prior(a: Alignment) -> float:
    """P(hallucinated) before findings; at most PRIOR_BASE + PRIOR_QUESTION (0.4)."""
    if a.verbatim:
        return PRIOR_VERBATIM
    return PRIOR_BASE + PRIOR_QUESTION * float(a.form[FORM_FEATURES.index("question_overlap")])


def _evidence(a: Alignment, rejected: bool) -> list[str]:
    """Claims with findings, each with why, and (NLI) sentences no chunk entails."""
    why: dict[str, list[str]] = {}
    for f in a.findings:
        why.setdefault(f.claim, []).append(f.explain())
    if rejected:
        for s, ok in zip(a.sentences, a.supported, strict=True):
            if not ok:
                why.setdefault(s, []).append("no context sentence supports it")
    quoted = [f"{claim[:MAX_QUOTE]} [{'; '.join(reasons)}]" for claim, reasons in why.items()]
    return [q[:MAX_ENTRY] for q in quoted[:MAX_UNSUPPORTED]]
