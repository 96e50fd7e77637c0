"""Whether a run of digits is a phone number: the shape of its groups, or a cue beside it.

Phone numbers carry no checksum, unlike cards and IBANs, so telling them from order
numbers, prices, dates, years, versions and counts takes more rules than any other
PII kind. :mod:`detectors.pii`, whose module doc states the rules, finds the
candidates with ``PHONE`` and asks :func:`phone_in` which part of each is a phone.
"""

from __future__ import annotations

import re

__all__ = ["PHONE", "phone_in"]

# A run of digit groups, with an optional +country code, "(0)" and "(area)" in front.
PHONE = re.compile(
    r"(?<![\w+/.:-])(?<!\d,)(?:\+\d{1,3}[ .-]?)?(?:\(0\)[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?"
    r"\d{1,12}(?:[ .-]\d{1,8}){0,5}(?!\w|[.-]\d|,\d{3}(?!\d))"
)
_NANP = re.compile(
    r"(?:\+?1[ .-]?)?(?:\([2-9]\d\d\) ?[2-9]\d\d[ .-]\d{4}|[2-9]\d\d([ .-])[2-9]\d\d\1\d{4})"
)
_PHONE_CUE_BEFORE = re.compile(
    r"\b(?:phone|tel|telephone|mobile|mob|cell|cellphone|fax|call|calling|ring|dial|text|sms"
    r"|whatsapp|contact|reach|answering|desk|office|landline|hotline)\b"
    r"(?:\W+(?:me|us|him|her|them|on|at|to|is|my|our|his|their|your|number|no|nr))*\W{0,12}$",
    re.I,
)
_PHONE_CUE_AFTER = re.compile(r"\W{0,3}(?:office|fax|mobile|cell|home|work|tel)\b", re.I)
_YEAR = re.compile(r"(?:19|20)\d\d")
_CURRENCY = frozenset("$€£¥₹")


def _phone_shape(raw: str) -> str | None:
    """'strong' if the shape alone says phone, 'weak' if a cue is needed, else None."""
    groups = re.findall(r"\d+", raw)
    digits = "".join(groups)
    n = len(digits)
    plus = raw.startswith("+")
    extension = plus and len(groups) > 2 and raw.endswith("-" + groups[-1])
    if not 7 <= n <= 15 or (len(groups[-1]) < 2 and not extension):
        return None
    # After a +country code, one-digit groups in the middle are area or mobile prefixes
    # (+61 2 ..., +31 6 ...); a last one only after "-" (switchboard +49 89 123456-0, see
    # above), so "+44 20 7946 0958 3 times" keeps its count out of the number.
    if not plus and any(len(g) == 1 for g in groups[1:]) and "(0)" not in raw:
        return None
    if "." in raw and any(len(g) > 4 for g in groups):
        return None  # dotted runs with long groups are versions or decimals
    if len(groups) >= 3 and _is_date(groups):
        return None
    if len(groups) >= 2 and all(len(g) == 4 and _YEAR.fullmatch(g) for g in groups):
        return None
    if plus or (digits[:2] == "00" and digits[2] != "0"):
        return "strong" if 8 <= n <= 15 else None
    if _NANP.fullmatch(raw):
        return "strong"
    trunk = digits[0] == "0" and digits[1] != "0"
    mobile_12 = n == 12 and digits[:3] in ("015", "016", "017")  # 0176 2345 6789
    if trunk and len(groups) >= 2 and len(groups[0]) >= 2 and (9 <= n <= 11 or mobile_12):
        return "strong"
    return "weak" if n <= 12 else None


def _is_date(groups: list[str]) -> bool:
    a, b, c = (int(g) for g in groups[:3])
    if len(groups[0]) == 4 and _YEAR.fullmatch(groups[0]):
        return 1 <= b <= 12 and 1 <= c <= 31
    if len(groups[2]) == 4 and _YEAR.fullmatch(groups[2]):
        return (a <= 31 and b <= 12) or (a <= 12 and b <= 31)
    return False


def _phone_at(text: str, start: int, end: int) -> bool:
    if text[max(0, start - 2) : start].strip()[-1:] in _CURRENCY:
        return False  # "$1 299 000" is a price
    shape = _phone_shape(text[start:end])
    return shape == "strong" or (
        shape == "weak"
        and bool(
            _PHONE_CUE_BEFORE.search(text, max(0, start - 40), start)
            or _PHONE_CUE_AFTER.match(text, end, end + 16)
        )
    )


def phone_in(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The candidate itself, else its longest space-separated part that is a phone."""
    if _phone_at(text, start, end):
        return start, end
    cuts = [start] + [i + 1 for i in range(start, end) if text[i] == " "] + [end + 1]
    spans = [(cuts[i], cuts[j] - 1) for i in range(len(cuts)) for j in range(i + 1, len(cuts))]
    spans.sort(key=lambda s: s[0] - s[1])
    return next((s for s in spans[1:] if _phone_at(text, *s)), None)
