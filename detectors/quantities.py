"""The figures a text states: value, unit, precision, and the words of their clause.

Reading figures is its own concern, apart from judging them (:mod:`detectors.claims`):
"$1,200", "EUR 12,50", "53.2p", "23 cents", "4.5k", "9:30", "twelve" and "half" become
values with a unit ("$", "eur", "gbp", "%", "time", or keys of the words after the
figure), comparable across texts, and each keeps the keys of its clause's content
words, which say what it counts. Cached per text: every claim of a batch reads the
same chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from detectors.text import STOPWORDS, split_sentences, words

__all__ = ["WORD_NUMBERS", "Quantity", "clauses", "key", "keys", "quantities"]

# Units a figure is read with; a unit word is the stem of the word after the figure.
_CURRENCY = {"$": "$", "usd": "$", "€": "eur", "eur": "eur", "£": "gbp", "gbp": "gbp"}
_QUANTITY = re.compile(
    r"(?P<cur>[$€£]|\b(?:USD|EUR|GBP)\s?)?"
    r"(?<![\w.,:])(?P<num>\d{1,3}(?:,\d{3})+(?![\d])|\d+)"
    r"(?:\.(?P<frac>\d+)|,(?P<cfrac>\d{1,2})(?!\d))?(?![\d:])"  # 12,50 is a decimal comma
    r"(?P<suf>\s?%|\s?per\s?cent\b|\s?percent\b|k\b|x\b|p\b)?",
    re.IGNORECASE,
)
_FIGURE = re.compile(r"[$€£]?\d[\d,.:]*%?")
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b")
WORD_NUMBERS = {w: float(i) for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
     "eleven", "twelve")
)} | {"half": 0.5, "twenty": 20.0, "thirty": 30.0, "forty": 40.0, "fifty": 50.0}  # fmt: skip
_WORD_NUMBER = re.compile(r"\b(" + "|".join(WORD_NUMBERS) + r")\b", re.IGNORECASE)
MAX_DIGITS = 15  # longer digit runs are identifiers, not figures (and overflow a float)

_CLAUSE = re.compile(
    r"\s*(?:[;()\u2014]|:(?=\s)|\s-\s|,?\s+(?:and|but|while|whereas|or|so|which)\s+(?=\D))\s*"
)
_KEY_SUFFIXES = ("ions", "ion", "ings", "ing", "ied", "ies", "ed", "es", "ly", "s")
_KEY_ENDINGS = {"ied": "y", "ies": "y"}


@dataclass(frozen=True)
class Quantity:
    value: float
    text: str
    unit: frozenset[str]  # "$", "eur", "%", "time", or keys of the next words; empty: unknown
    anchors: frozenset[str]  # keys of the content words of its clause: what it counts
    clause: str = ""  # the clause it is stated in, figures masked
    decimals: int = 0  # digits stated after the point: what rounding it allows
    loose: bool = False  # "two", "half": number words that are often no figure


def key(token: str) -> str:
    """A crude word key: 'rotated', 'rotates' and 'rotation' all read 'rotat'."""
    token = token.lower()
    for suffix in _KEY_SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            token = token[: -len(suffix)] + _KEY_ENDINGS.get(suffix, "")
            break
    return token[:5]


def keys(text: str) -> frozenset[str]:
    """Keys of the content words of ``text``: no stopwords, figures or number words."""
    return frozenset(
        key(t)
        for t in words(text)
        if len(t) > 2 and t.lower() not in STOPWORDS and not t[0].isdigit()
        and t.lower() not in WORD_NUMBERS
    )  # fmt: skip


def clauses(text: str) -> list[str]:
    """``text`` cut at semicolons, dashes and coordinating conjunctions."""
    return [c for c in _CLAUSE.split(text) if c and c.strip()]


def _unit_after(text: str) -> frozenset[str]:
    """Keys of up to two of the three words after a figure, stopwords skipped:
    '5 unused days' -> unus, day."""
    found = []
    for word in re.findall(r"[^\W\d_]+", text)[:3]:
        low = word.lower()
        if low in _CURRENCY:  # "5 euros"; but "5 GB for EUR 7" counts gigabytes
            return frozenset(found) if found else frozenset({_CURRENCY[low]})
        if low not in STOPWORDS:
            found.append(key(low))
        if len(found) == 2:
            break
    return frozenset(found)


def _subunit(
    value: float, unit: frozenset[str], decimals: int, pence: bool = False
) -> tuple[float, frozenset[str], int]:
    """'23 cents' is 0.23 of a dollar or euro and '53.2p' 0.532 of a pound, comparable
    with '$1.39 an hour'; the two extra decimals are the precision they were stated to."""
    if pence:
        return value / 100, frozenset({"gbp"}), decimals + 2
    if "cent" in unit:
        return value / 100, frozenset({"$", "eur"}), decimals + 2
    return value, unit, decimals


def quantities(text: str) -> list[Quantity]:
    """The figures of ``text`` with their units and the words of their clause."""
    return list(_quantities(text))


@lru_cache(maxsize=8192)
def _quantities(text: str) -> tuple[Quantity, ...]:
    """Cached: the same chunks are read for every claim of a batch, and again later."""
    out = []
    pieces = [c for sentence in split_sentences(text) for c in clauses(sentence)]
    for clause in pieces:
        anchors = keys(clause)
        masked = _FIGURE.sub("#", clause)  # compared by what it says, not by its figures
        taken: list[tuple[int, int]] = []
        for m in _CLOCK.finditer(clause):
            value = int(m.group(1)) + int(m.group(2)) / 60
            taken.append(m.span())
            out.append(Quantity(value, m.group(0), frozenset({"time"}), anchors, masked))
        for m in _QUANTITY.finditer(clause):
            if any(a <= m.start() < b for a, b in taken) or len(m.group("num")) > MAX_DIGITS:
                continue
            frac = m.group("frac") or m.group("cfrac") or ""
            whole = m.group("num").replace(",", "")
            value = float(f"{whole}.{frac}" if frac else whole)
            suffix = re.sub(r"\s", "", (m.group("suf") or "").lower())
            value *= 1000 if suffix == "k" else 1
            cur = (m.group("cur") or "").strip().lower()
            unit = (
                frozenset({_CURRENCY[cur]}) if cur
                else frozenset({"%"}) if suffix in ("%", "percent")
                else _unit_after(clause[m.end() :])
            )  # fmt: skip
            value, unit, decimals = _subunit(value, unit, len(frac), pence=suffix == "p")
            out.append(Quantity(value, m.group(0), unit, anchors, masked, decimals))
        for m in _WORD_NUMBER.finditer(clause):
            if m.group(1).lower() == "one":
                continue  # "the old one", "one of": rarely a figure
            number = WORD_NUMBERS[m.group(1).lower()]
            value, unit, decimals = _subunit(number, _unit_after(clause[m.end() :]), 0)
            out.append(Quantity(value, m.group(0), unit, anchors, masked, decimals, value <= 2))
    return tuple(out)
