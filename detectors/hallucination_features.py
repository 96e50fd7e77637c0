"""Per event, which output sentences the context supports, and the feature row.

:mod:`detectors.hallucination` embeds a whole batch in one pass (and runs the NLI
model, if any) and turns the result into a score; this module reads one event from
the cosines or entailment probabilities it is given: the support rule per sentence,
and the row of ``FEATURES`` (similarity, figures, names and words missing from the
aligned neighbourhood or the whole context, novel bigrams, repetition) that the
comparison head and ``scripts/train_hallucination_head.py`` read, with the
``FORM_FEATURES`` kept out of the head. No model here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from detectors.claims import Finding
from detectors.text import (
    case_profile,
    content_words,
    is_lowercased,
    name_tokens,
    numbers,
    stem,
    words,
)

__all__ = ["FEATURES", "FORM_FEATURES", "Alignment", "Event", "check", "neighbourhood"]

TOP_K = 2  # aligned context sentences per output sentence, each with one neighbour a side
NLI_THRESHOLD = 0.5

FEATURES = (
    "sim_min",  # cosine of the least supported sentence to its best context sentence
    "sim_mean",
    "sim_specificity",  # best minus mean cosine: a sentence about one place, not the topic
    "unsupported_share",  # the rule score
    "numbers_missing_local",  # share of stated numbers absent from the aligned neighbourhood
    "numbers_missing_global",  # ... absent from the whole context and the question
    "names_missing_local",
    "names_missing_global",
    "novel_local",  # share of content words absent from the aligned neighbourhood
    "novel_local_max",  # ... in the worst sentence
    "novel_global",
    "novel_bigrams",  # share of word bigrams that neither context nor question uses
    "repetition",  # share of repeated word trigrams: degenerate, looping output
)
# Computed, but kept out of the head: they read the answer's form, not its support.
# HaluEval's right answers are bare spans and its hallucinations full sentences that
# restate the question, so a head given these learns to flag every full sentence.
FORM_FEATURES = (
    "question_overlap",  # share of content words taken from the question
    # cosine(output, question); 0 without a question, see HallucinationDetector.align
    "question_cosine",
    "log_sentences",  # log(1 + sentences), at most 20
    "log_tokens",  # log(1 + words), at most 200
)


@dataclass(frozen=True)
class Alignment:
    """What the detector found for one event; the head and the training script read it."""

    sentences: list[str]
    similarity: list[float]  # best cosine per sentence
    supported: list[bool]
    features: np.ndarray  # columns as in FEATURES
    form: np.ndarray  # columns as in FORM_FEATURES
    findings: tuple[Finding, ...] = ()  # claim-level evidence, see detectors.claims
    verbatim: bool = False  # the whole answer is a span of the context

    @property
    def unsupported_share(self) -> float:
        return self.supported.count(False) / len(self.supported)


@dataclass
class Event:
    """One event's claims and context sentences, as :mod:`detectors.hallucination` splits them."""

    sentences: list[str]
    chunks: list[str]  # the first MAX_CHUNKS context sentences: what claims align with
    parts: list[int]  # which context element each chunk came from
    question: str
    output: str
    context: list[str]  # every context sentence: what figures and names are looked up in


def neighbourhood(sims_row: np.ndarray, parts: list[int]) -> list[int]:
    """The TOP_K best chunks and their neighbours within the same context element."""
    near = set()
    for c in np.argsort(-sims_row)[:TOP_K].tolist():
        near |= {j for j in (c - 1, c, c + 1) if 0 <= j < len(parts) and parts[j] == parts[c]}
    return sorted(near)


def check(
    event: Event,
    sims: np.ndarray,
    q_cos: float,
    entail: np.ndarray | None,
    threshold: float,
    findings: tuple[Finding, ...] = (),
) -> Alignment:
    """The support rule per sentence, and the event's feature row."""
    profile = case_profile([*event.chunks, event.question])
    lower = is_lowercased(event.output)
    chunk_stems = [{stem(w) for w in words(t)} for t in event.chunks]
    chunk_nums = [set(numbers(t)) for t in event.chunks]
    q_stems = {stem(w) for w in words(event.question)}
    q_nums = set(numbers(event.question))
    all_stems = set().union(*chunk_stems) | q_stems
    all_nums = set().union(*chunk_nums) | q_nums
    context_bigrams = set().union(*(_bigrams(t) for t in [*event.chunks, event.question]))
    best = sims.max(axis=1)

    supported: list[bool] = []
    # totals and misses: numbers, local, global; names, local, global; content, local, global
    tally = np.zeros(9, dtype=np.int64)
    novel_max = 0.0
    from_question = bigrams_novel = bigrams_total = 0
    for s, (sentence, row) in enumerate(zip(event.sentences, sims, strict=True)):
        near = neighbourhood(row, event.parts)
        local_stems = set().union(*(chunk_stems[j] for j in near)) | q_stems
        local_nums = set().union(*(chunk_nums[j] for j in near)) | q_nums
        nums = numbers(sentence)
        names = name_tokens(sentence, profile, lower)
        content = content_words(sentence)
        missing = (
            sum(n not in local_nums for n in nums),
            sum(n not in local_stems for n in names),
            sum(c not in local_stems for c in content),
        )
        tally += [
            len(nums), missing[0], sum(n not in all_nums for n in nums),
            len(names), missing[1], sum(n not in all_stems for n in names),
            len(content), missing[2], sum(c not in all_stems for c in content),
        ]  # fmt: skip
        novel_max = max(novel_max, _share(missing[2], len(content)))
        from_question += sum(c in q_stems for c in content)
        grams = _bigrams(sentence)
        bigrams_total += len(grams)
        bigrams_novel += len(grams - context_bigrams)
        if not (nums or names or content):
            supported.append(True)  # "Yes." states nothing a context could back or refute
            continue
        close = entail[s] >= NLI_THRESHOLD if entail is not None else best[s] >= threshold
        copied = missing[2] == 0  # short answers copied from the context score a low cosine
        supported.append(bool(close or copied) and missing[0] == 0 and missing[1] == 0)

    features = [
        best.min(),
        best.mean(),
        (best - sims.mean(axis=1)).mean(),
        supported.count(False) / len(supported),
        _share(tally[1], tally[0]),
        _share(tally[2], tally[0]),
        _share(tally[4], tally[3]),
        _share(tally[5], tally[3]),
        _share(tally[7], tally[6]),
        novel_max,
        _share(tally[8], tally[6]),
        _share(bigrams_novel, bigrams_total),
        _repetition(event.output),
    ]
    form = [
        _share(from_question, tally[6]),
        q_cos,
        np.log1p(min(len(event.sentences), 20)),
        np.log1p(min(len(words(event.output)), 200)),
    ]
    return Alignment(
        event.sentences,
        best.tolist(),
        supported,
        np.asarray(features, dtype=np.float64),
        np.asarray(form, dtype=np.float64),
        findings,
        verbatim=f" {_normal(event.output)} " in f" {_normal(' '.join(event.context))} ",
    )


def _share(missing: int, total: int) -> float:
    return missing / total if total else 0.0


def _normal(text: str) -> str:
    return " ".join(w.lower() for w in words(text))


def _bigrams(text: str) -> set[tuple[str, str]]:
    tokens = [stem(w) for w in words(text)]
    return set(itertools.pairwise(tokens))


def _repetition(text: str) -> float:
    tokens = [w.lower() for w in words(text)]
    grams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0
