"""Claim-level evidence: which figure, name or polarity of a claim the context contradicts.

Realistic hallucinations copy the context's words and change one thing: a figure
that belongs to another item, a scope, a yes for a no, a fee nobody mentioned.
Sentence similarity cannot see that, and grounded answers that paraphrase or
compute score lower on it than the hallucinations do. These checks read the
claim instead: each quantity must be stated in the context *for the same thing*
(its neighbouring words and names agree) or follow from the context's and the
question's figures by one step of arithmetic; each name must occur in the
context; a claim that says what the context denies conflicts with that chunk.

Every check returns a :class:`Finding` naming the claim and the chunk it
conflicts with (or None: no chunk supports it), so an alert can say why.
Pure Python: no model; the caller aligns claims to chunks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.quantities import WORD_NUMBERS, Quantity, quantities
from detectors.text import STOPWORDS, words

__all__ = ["CHECKS", "Finding", "abstains", "check_claim", "known_keys", "names"]

CHECKS = (
    "number_unsupported",  # a figure neither stated nor computable from the context
    "number_elsewhere",  # a figure the context states, but for another thing
    "name_unsupported",  # a name the context and the question never mention
    "polarity",  # a bare "yes" where the aligned context says no/not
    "scope",  # every, all, automatically ... where the aligned context has no wide word
)

# Constants the words of a question or claim imply, with the unit of what they count:
# "a year" brings 12 months, "a week" 7 days. They are operands, never a figure alone.
_IMPLIED: dict[str, tuple[tuple[float, str], ...]] = {
    "month": ((12.0, "month"), (30.0, "day")),
    "year": ((12.0, "month"), (52.0, "week"), (365.0, "day")),
    "annual": ((12.0, "month"),),
    "week": ((7.0, "day"),),
    "day": ((24.0, "hour"),),
    "hour": ((60.0, "minut"),),
    "half": ((2.0, ""),),
    "double": ((2.0, ""),),
    "twice": ((2.0, ""),),
}
# Units of one dimension: a figure moved from "16 weeks" to "within 16 weeks of
# the birth" competes with the "12 months" the context gives for that.
_DIMENSION = {u: "duration" for u in ("secon", "minut", "hour", "day", "week", "month", "year")}
_DIMENSION |= {u: "money" for u in ("$", "eur", "gbp", "cent", "penc")}
_DIMENSION |= {"%": "share", "perce": "share", "point": "share"}
_MONEY = frozenset({"$", "eur", "gbp"})
_REL_TOLERANCE = 0.02  # how far "about 23 cents" may be from 0.2317
_APPROXIMATE = re.compile(r"\b(?:about|roughly|around|approximately|nearly|almost|some)\b|~")
# Words that say two of the context's figures are added up.
_SUM = re.compile(
    r"\b(?:plus|total|together|combined|altogether|in all|sum of|adds? up|added up)\b|\s\+\s"
)
MAX_OPERANDS = 24  # figures tried per derivation: 24 ** 3 triples stay near 10 ms
ELSEWHERE_MARGIN = 0.25  # how much better another figure's clause must fit the claim

_CALENDAR = frozenset((
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january",
    "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december",
))  # fmt: skip
_CALENDAR_KEYS = frozenset(m[:5] for m in _CALENDAR)
_NEGATION = frozenset((
    "not", "no", "never", "none", "nothing", "cannot", "can't", "won't", "isn't", "aren't",
    "doesn't", "don't", "didn't", "wasn't", "weren't", "hasn't", "haven't", "neither", "nor",
    "n't",
))  # fmt: skip
_UNIVERSAL = frozenset(["every", "all", "automatically", "unlimited", "everyone"])
# Words on the context side that state a scope as wide: "each region" for "every region".
_WIDE = _UNIVERSAL | {"each", "any", "always", "anyone", "everything", "whole"}
_RESTRICTING = frozenset(("only", "except", "exclusively", "excluding"))
_ABSTAIN = re.compile(
    r"\b(?:does(?:n't| not)|do(?:n't| not)|is(?:n't| not)|are(?:n't| not)|says? nothing|"
    r"no(?:thing)? (?:in|about)|not)\b[^.]{0,40}?\b(?:say|says|mention|mentioned|specify|"
    r"specified|state|stated|cover|covered|address|addressed|list|listed|give|given|include|"
    r"information|detail)s?\b|\bno information\b|\bcontext (?:only|doesn't|does not)\b|"
    r"\b(?:isn't|is not|aren't|are not) (?:documented|specified|mentioned|stated)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Finding:
    check: str  # one of CHECKS
    claim: str
    chunk: str | None  # the chunk it conflicts with; None: no chunk supports it
    detail: str
    strength: float  # 0..1, how sure the check is

    def explain(self) -> str:
        where = f" (context: {self.chunk[:160]!r})" if self.chunk else ""
        return f"{self.check}: {self.detail}{where}"


def abstains(claim: str) -> bool:
    """'The policy doesn't say …': a claim about the context's silence states no fact."""
    return _ABSTAIN.search(claim) is not None


def known_keys(texts: Iterable[str]) -> frozenset[str]:
    """Every word of ``texts``, lowercased, short ones too ('EU' and 'GB' are names),
    also without a plural or possessive ending: 'Andersen' is not 'Anderson'."""
    return frozenset(form for text in texts for t in words(text) for form in _forms(t))


def _forms(word: str) -> tuple[str, ...]:
    low = word.lower()
    bare = re.sub(r"(?:'s|s')$|(?<=[^s])s$", "", low)
    return (low, bare) if bare != low and len(bare) > 1 else (low,)


def _same(a: float, b: float) -> bool:
    """A stated figure matches only itself: 1899 is not 1889."""
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def _tolerance(q: Quantity, approximate: bool) -> float:
    """How far a computation may be from the figure that states it: half a unit of its
    last decimal (25 / 12 is "2.08"); a whole number must be exact (114.50 / 12 is not
    "10"), unless the claim says "about": then half a unit, or 2 %."""
    exact = 1e-9 * max(abs(q.value), 1.0)
    if approximate:
        return max(0.5 * 10.0**-q.decimals, _REL_TOLERANCE * abs(q.value))
    return 0.5 * 10.0**-q.decimals if q.decimals else exact


@functools.lru_cache(maxsize=4096)
def _compatible(a: frozenset[str], b: frozenset[str]) -> bool:
    """Units that may be added or compared: equal keys, one dimension, or one unknown."""
    if not a or not b or a & b:
        return True
    da, db = {_DIMENSION.get(u) for u in a} - {None}, {_DIMENSION.get(u) for u in b} - {None}
    return bool(da & db) or not (da or db)  # one dimension, or both counts of things


# value, unit, source: "given" (the question or the claim), "context" or "implied"
_Operand = tuple[float, frozenset[str], str]


def _derivable(
    value: float, unit: frozenset[str], pool: Sequence[_Operand], tol: float, summed: bool
) -> bool:
    """Whether ``value`` is one arithmetic step from the pool: a±b, a·b, a/b, a% of b, a·b/c,
    a·b·c.

    A grounded computation applies the context to the user's figures or restates
    the claim's own: at most one operand may come from the context alone (two when
    the claim says it adds them up: ``summed``), and implied constants only convert
    units. Sums and differences need compatible units, so "10 days" is not "7 + 3".

    Every ordered pair and triple of the pool is tried at once, as arrays: up to 24³
    triples a claim, and this was most of the detector's time as a Python loop.
    """
    n = len(pool)
    if n < 2:
        return False
    v = np.array([o[0] for o in pool], dtype=np.float64)
    implied = np.array([o[2] == "implied" for o in pool], dtype=np.int8)
    context = np.array([o[2] == "context" for o in pool], dtype=np.int8)
    percent = np.array(["%" in o[1] for o in pool])
    # a figure restated, not computed, is no operand of a derivation of itself
    scale = np.maximum(np.abs(v), max(abs(value), 1.0))
    usable = ~((v == value) | (np.abs(value - v) <= 1e-9 * scale))
    distinct = ~np.eye(n, dtype=bool)

    def close(c: np.ndarray) -> np.ndarray:
        return np.abs(value - c) <= tol

    a, b = v[:, None], v[None, :]
    both = distinct & usable[:, None] & usable[None, :]
    n_implied = implied[:, None] + implied[None, :]
    n_context = context[:, None] + context[None, :]
    # one unit conversion a step, and not the constants alone
    one_step = both & (n_implied <= 1)
    scaled = one_step & (n_context <= 1) & (implied[:, None] == 0)
    given_b = scaled & (implied[None, :] == 0)
    units = [o[1] for o in pool]
    compatible = np.array(
        [[_compatible(ua, ub) and _compatible(ua, unit) for ub in units] for ua in units]
    )
    same = np.array([[ua == ub and bool(ua) and ua == unit for ub in units] for ua in units])
    added = one_step & compatible & (n_context <= np.where(same & summed, 2, 1))
    nonzero_b = b != 0
    with np.errstate(all="ignore"):
        found = (
            (scaled & (close(a * b) | (nonzero_b & close(a / b))))
            | (given_b & (close(a * b / 100) | (nonzero_b & close(100 * a / b))))
            | (given_b & percent[None, :] & (close(a * (1 - b / 100)) | close(a * (1 + b / 100))))
            | (added & (close(a + b) | close(a - b)))
        )
        if found.any():
            return True
        if n < 3:
            return False
        x, y, z = v[:, None, None], v[None, :, None], v[None, None, :]
        triple = (
            both[:, :, None] & distinct[:, None, :] & distinct[None, :, :]
            & (implied[:, None, None] == 0) & (z != 0)
            & (implied[:, None, None] + implied[None, :, None] + implied[None, None, :] <= 1)
            & (context[:, None, None] + context[None, :, None] + context[None, None, :] <= 1)
        )  # fmt: skip
        # pro rata (a·b/c), and repeated amounts (2 x £9.90 x 12)
        return bool((triple & (close(x * y / z) | close(x * y * z))).any())


def _pool(local: Sequence[Quantity], given: Sequence[Quantity], text: str) -> list[_Operand]:
    """Operands a grounded computation may use: the aligned chunks' and the question's
    figures, the claim's other figures, and constants its words imply."""
    out: dict[_Operand, None] = {}
    for q in given:
        out[(q.value, q.unit, "given")] = None
    for w in words(text.lower()):
        for value, unit in _IMPLIED.get(w.rstrip("s"), ()) or _IMPLIED.get(w[:-2], ()):
            out[(value, frozenset({unit}) if unit else frozenset(), "implied")] = None
    for q in local:  # the best-aligned chunks first, so a long table loses its tail
        if (q.value, q.unit, "given") not in out:
            out[(q.value, q.unit, "context")] = None
    return list(out)[:MAX_OPERANDS]


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a) if a else 1.0


def names(claim: str) -> list[str]:
    """Capitalised words and acronyms past the first word: what a claim names.

    Weekdays, months and number words are dates and counts, not entities, and
    lowercased text (tokenised corpora) names nothing that case could show.
    """
    out = []
    tokens = re.findall(r"[^\W_][\w'-]*", claim)
    for i, token in enumerate(tokens):
        for part in re.split(r"[-']", token):
            low = part.lower()
            if len(part) < 2 or not part[0].isalpha() or low in STOPWORDS:
                continue
            if low in _CALENDAR or low in WORD_NUMBERS:
                continue
            if (i > 0 and part[0].isupper()) or (part.isupper() and len(part) > 1):
                out.append(part)
    return out


def check_claim(
    claim: str,
    question: str,
    chunks: Sequence[str],
    near: Sequence[int],
    known: frozenset[str],
    answer: str = "",
) -> list[Finding]:
    """Evidence against one claim; ``near`` are the chunks aligned with it, best first.

    ``known`` are the :func:`known_keys` of the context and the question, against which
    the claim's names are checked. Which figure a clause is about is read from the
    words the claim and the clause share. The figures of the whole ``answer`` are
    operands: one sentence may compute from another's.
    """
    if abstains(claim):
        return []
    found: list[Finding] = []
    asked = quantities(question)
    stated = [(i, q) for i, c in enumerate(chunks) for q in quantities(c)]
    rank = {i: r for r, i in enumerate(near)}
    local = sorted(((i, q) for i, q in stated if i in rank), key=lambda iq: rank[iq[0]])
    mine = quantities(claim)
    elsewhere = [o for o in quantities(answer) if o.clause not in {q.clause for q in mine}]
    pool = _pool([q for _, q in local], asked, f"{question} {claim}")
    approximate = _APPROXIMATE.search(claim) is not None
    summed = _SUM.search(claim) is not None

    def derivable(q: Quantity, operands: Sequence[_Operand]) -> bool:
        return _derivable(q.value, q.unit, operands, _tolerance(q, approximate), summed)

    # The answer's other figures are operands only if they stand by themselves
    # (stated, or one step from the context and the question), so that invented
    # figures cannot vouch for each other; worked out once, at most MAX_OPERANDS.
    standing: list[tuple[Quantity, _Operand]] = []
    for o in [*mine, *elsewhere]:
        if len(standing) == MAX_OPERANDS:
            break
        if any(_same(o.value, s.value) for _, s in stated) or derivable(o, pool):
            standing.append((o, (o.value, o.unit, "given")))
    for q in mine:
        if q.unit & _CALENDAR_KEYS or any(_same(q.value, a.value) for a in asked):
            continue  # "31 March": a date the claim may compute; the user's own figure
        computed = derivable(q, [*pool, *(op for o, op in standing if o is not q)])
        same = [(i, s) for i, s in stated if _same(s.value, q.value)]
        if not same:
            if not computed and not q.loose:
                detail = f"{q.text.strip()} is neither stated in the context nor computable from it"
                found.append(Finding("number_unsupported", claim, None, detail, 0.9))
            continue
        if computed:
            continue  # "1.5 % of EUR 2,000 is EUR 30", whatever else costs EUR 30
        fits = max(_overlap(q.anchors, s.anchors) for _, s in same)
        rivals = [
            (_overlap(q.anchors, s.anchors), i, s)
            for i, s in stated
            if not _same(s.value, q.value)
            and s.unit
            and q.unit
            and _compatible(s.unit, q.unit)
            and not any(_same(s.value, m.value) for m in mine)  # "$20 instead of $25"
        ]
        if not rivals:
            continue
        best, i, s = max(rivals, key=lambda r: r[0])
        if best >= 0.4 and best >= fits + ELSEWHERE_MARGIN:
            detail = (
                f"{q.text.strip()} is stated for something else; for this the context "
                f"gives {s.text.strip()}"
            )
            found.append(Finding("number_elsewhere", claim, chunks[i], detail, 0.8))
    for name in dict.fromkeys(names(claim)):
        if not any(form in known for form in _forms(name)):
            detail = f"'{name}' is not mentioned in the context or the question"
            found.append(Finding("name_unsupported", claim, None, detail, 0.7))
    if near:
        found += _polarity(claim, [chunks[i] for i in near])
        found += _scope(claim, [chunks[i] for i in near])
    return list({(f.check, f.detail): f for f in found}.values())  # a repeat adds nothing


def _negated(text: str) -> bool:
    lowered = text.lower().replace("\u2019", "'")
    return any(t in _NEGATION for t in re.findall(r"[a-z]+(?:'[a-z]+)?", lowered))


def _polarity(claim: str, near: Sequence[str]) -> list[Finding]:
    """A bare "Yes" where the best-aligned chunk is negated. The reverse ("No" against
    an affirmation) is not checked: answers say no to the user's premise too often."""
    best = near[0]
    says_yes = re.match(r"\s*yes\b", claim, re.IGNORECASE) is not None and not _negated(claim)
    if says_yes and _negated(best):
        detail = "affirms what the aligned context states with a negation"
        return [Finding("polarity", claim, best, detail, 0.6)]
    return []


def _scope(claim: str, near: Sequence[str]) -> list[Finding]:
    said = {t.lower() for t in words(claim)} & _UNIVERSAL
    if not said:
        return []
    context = {t.lower() for c in near for t in words(c)}
    if context & _WIDE and not context & _RESTRICTING:
        return []  # "each region" for "every region"; but "all plans …, SCIM on X only"
    detail = f"'{sorted(said)[0]}' widens the scope the aligned context states"
    return [Finding("scope", claim, near[0], detail, 0.45)]
