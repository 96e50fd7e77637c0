"""Plain-text helpers for claim checking: sentences, numbers, names and content words.

Model outputs and retrieved context arrive in many shapes: clean prose, Wikipedia
paragraphs glued together without a space after the full stop, and lowercased,
tokenised summaries (`` `` `` quotes, `` -lrb- ``, ``UNK``). These helpers make
them comparable with regular expressions alone, so checking a sentence costs
microseconds next to the embedding model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache

__all__ = [
    "STOPWORDS",
    "case_profile",
    "content_words",
    "is_lowercased",
    "name_tokens",
    "normalise",
    "numbers",
    "split_sentences",
    "stem",
    "words",
]


def _words(text: str) -> list[str]:
    return text.split()


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


MAX_SENTENCE_WORDS = 60  # longer runs (missing punctuation) are cut into windows

STOPWORDS = _wordset(
    """a about above after again against all also although am among an and another any are
    around as at be became because become been before being below between both but by can
    could did do does doing done down during each either even ever every few for from further
    had has have having he her here hers herself him himself his how however i if in into is
    it its itself just least less like made make many may me might more most much must my
    myself neither no nor not now of off on once one only or other others our ours ourselves
    out over own per perhaps rather said same say says several she should since so some such
    than that the their theirs them themselves then there these they this those though through
    thus to too under until up upon us very via was we were what when where whether which
    while who whom whose why will with within without would yet you your yours yourself
    according already always still told yes"""
)

_ABBREVIATIONS = _wordset(
    """mr mrs ms dr st jr sr prof gen col lt sgt capt rev gov sen rep inc ltd co corp vs etc
    no nos fig al approx dept est jan feb mar apr jun jul aug sep sept oct nov dec mt ft"""
)

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        _words(
            "zero _ two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
    if w != "_"
}
_NUMBER_WORDS |= {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60"}
_NUMBER_WORDS |= {"seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100"}
_NUMBER_WORDS |= {
    w: str(i)
    for i, w in enumerate(
        _words("_ _ second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth")
    )
    if w != "_"
}

_TOKENISED = [
    (re.compile("[\u2018\u2019]"), "'"),  # curly quotes, so patterns below see one kind
    (re.compile("[\u201c\u201d]"), '"'),
    (re.compile(r"\\(['\"])"), r"\1"),  # escaped quotes left in released files
    (re.compile(r"``|''"), '"'),
    (re.compile(r"-lrb-", re.I), "("),
    (re.compile(r"-rrb-", re.I), ")"),
    (re.compile(r"\s+"), " "),
]
_END = re.compile(r"[.!?]+[\"')\]]*")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_NAME_SPAN = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_SUFFIXES = ("'s", "ians", "ans", "ian", "ese", "ish", "ies", "ns", "an", "es", "s",
             "a", "y", "i", "n", "e")  # fmt: skip
_UNK = re.compile(r"\bUNK\b|<unk>")


def normalise(text: str) -> str:
    """Undo the tokenisation artefacts of released corpora; collapse whitespace."""
    for pattern, repl in _TOKENISED:
        text = pattern.sub(repl, text)
    return text.strip()


def is_lowercased(text: str) -> bool:
    """True for text that lost its casing (``UNK`` placeholders do not count as case)."""
    letters = [c for c in _UNK.sub("", text) if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) <= len(letters) * 0.005


def _is_boundary(text: str, start: int, end: int, lower: bool) -> bool:
    if end >= len(text):
        return True
    before, nxt = text[start - 1 : start], text[end]
    if nxt.isspace():
        following = text[end + 1 : end + 2]
        opens = following.isupper() or following.isdigit() or following in "\"'(["
        if not following or not (opens or lower):
            return False
    elif not (nxt.isupper() and (before.isalnum() or before in ")\"'")):
        return False  # "hermeneutics.Lydia" is a boundary, "3.5" and "Amazon.com" are not
    if text[start] != ".":
        return True
    word = re.search(r"([^\W_]+)\W*$", text[max(0, start - 20) : start])
    if word is None:
        return True
    token = word.group(1)
    return not (token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isupper()))


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, with over-long runs cut into windows of words."""
    text = normalise(text)
    if not text:
        return []
    lower = is_lowercased(text)
    pieces, begin = [], 0
    for match in _END.finditer(text):
        if _is_boundary(text, match.start(), match.end(), lower):
            pieces.append(text[begin : match.end()].strip())
            begin = match.end()
    pieces.append(text[begin:].strip())
    out = []
    for piece in pieces:
        tokens = piece.split()
        for i in range(0, len(tokens), MAX_SENTENCE_WORDS):
            window = " ".join(tokens[i : i + MAX_SENTENCE_WORDS])
            if any(c.isalnum() for c in window):
                out.append(window)
    return out


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@lru_cache(maxsize=65536)
def stem(token: str) -> str:
    """Lowercase and strip inflection and demonym endings, so ``Italy`` meets ``Italian``.

    Deliberately crude and repeated to a fixed point; it only has to map related
    surface forms to one key, never to produce a word.
    """
    token = token.lower()
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if token.endswith(suffix) and len(token) - len(suffix) >= 4:
                token, changed = token[: -len(suffix)], True
                break
    return token


def numbers(text: str) -> list[str]:
    """Numbers mentioned in ``text``, as canonical strings (``10,000`` -> ``10000``)."""
    found = []
    for match in _NUMBER.finditer(_UNK.sub(" ", text)):
        whole = match.group(1).replace(",", "").lstrip("0") or "0"
        frac = (match.group(2) or "").rstrip("0")
        found.append(f"{whole}.{frac}" if frac else whole)
    found += [_NUMBER_WORDS[w] for w in (t.lower() for t in words(text)) if w in _NUMBER_WORDS]
    return found


def content_words(text: str) -> list[str]:
    """Stems of the words that carry meaning: no stopwords, digits or placeholders."""
    return [
        stem(w)
        for w in words(_UNK.sub(" ", text))
        if len(w) > 2 and w.lower() not in STOPWORDS and not w.isdigit()
        and w.lower() not in _NUMBER_WORDS
    ]  # fmt: skip


def case_profile(texts: Iterable[str]) -> dict[str, bool]:
    """Per stem, whether the texts write it mostly capitalised away from sentence starts.

    This is how names are recognised in lowercased outputs: ``nhs`` is a name
    because the context writes ``NHS``.
    """
    upper: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for text in texts:
        for sentence in split_sentences(text):
            for i, token in enumerate(_NAME_SPAN.findall(sentence)):
                for part in re.split(r"[-']", token):
                    if not part or not part[0].isalpha():
                        continue
                    if part[0].isupper():
                        if i > 0:
                            upper[stem(part)] += 1
                    else:
                        lower[stem(part)] += 1
    return {s: upper[s] > lower[s] for s in upper | lower}


def name_tokens(sentence: str, profile: Mapping[str, bool], lower: bool) -> list[str]:
    """Stems of the named entities in ``sentence``: capitalised words and acronyms.

    In a lowercased sentence capitalisation is gone, so ``profile`` (from the
    context) decides. A capitalised first word counts only when the context does
    not write it in lower case, so "The", "Impressive" or "Badminton" at a
    sentence start are not taken for names.
    """
    out = []
    for i, token in enumerate(_NAME_SPAN.findall(_UNK.sub(" ", sentence))):
        for part in re.split(r"[-']", token):
            if len(part) < 2 or not part[0].isalpha() or part.lower() in STOPWORDS:
                continue
            key = stem(part)
            if lower or not part[0].isupper():
                if profile.get(key, False) and part.lower() not in _NUMBER_WORDS:
                    out.append(key)
            elif i > 0 or profile.get(key, True) or part.isupper():
                out.append(key)
    return out
