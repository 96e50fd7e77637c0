"""Direct PII found by checkable patterns: which kinds a text holds, and where.

Every event passes through here, so detection is precompiled regexes plus a checksum
or range test per candidate (Luhn, IBAN mod 97, ``ipaddress``, SSN rules), no model.
Kinds without a checkable shape (names, street addresses, driver licences) are not
attempted: a guess would miss most of them or flag every capitalised word.
What is found is rewritten before storage by :mod:`detectors.redaction`.

- ``1.2.3.4`` is a valid IPv4 address, and also how many products number their
  versions. It is reported unless a version cue (``version``, ``release``, ``build``)
  stands right before it, or a software cue (``upgraded``, ``SDK``, ``patch``,
  ``shipped`` ...) stands nearer to it than any network cue (``IP``, ``server``,
  ``ssh``, ``router``, ``reach`` ...). Addresses that identify no host (``0.0.0.0``, loopback,
  multicast, ``255.x``, a network's ``.0`` without a network cue) are not reported.
- Emails written to dodge scrapers (``jane at example dot com``,
  ``l.okafor[at]example[dot]org``) are emails: bracketed ``at`` alone, or upper-case
  ``AT`` with ``DOT``; a plain ``at`` only with ``dot`` before a common top-level
  domain, a mail cue (``email``, ``write to``, ``send`` ...) before it and "to",
  "is", "email" or a colon right before the address.
- Phone numbers in an unambiguous shape (``+`` country code, then digit groups of
  any size, ``+61 2 9374 4000``; North American ``555-234-5678``; a grouped national
  number with trunk ``0``, ``0176 2345 6789``) match alone; any
  other 7-12 digit run needs a cue (``phone``, ``tel``, ``call``, ``fax`` ...) just
  before it or a label (``office``, ``mobile``) just after it, so order numbers,
  zip codes and house numbers stay clean (:mod:`detectors.pii_phones`).
- IBANs are matched in upper case only, with or without spaces every 4 chars.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from detectors.base import TextBatch
from detectors.pii_phones import PHONE, phone_in

__all__ = ["BR_AT", "BR_DOT", "KINDS", "Pii", "PiiDetector", "PiiMatch", "find_pii"]

# Detection priority: where two candidates overlap, the earlier kind wins
# (a card number is not also a phone number; an address inside an email is the email).
KINDS = ("email", "iban", "credit_card", "us_ssn", "uk_nino", "ip_address", "phone")
_RANK = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class PiiMatch:
    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Pii:
    input: list[str]  # sorted unique kinds found in the input
    output: list[str]


# --- patterns: scanning is two-stage for speed: a pattern that starts with a plain character class
# (which the regex engine skips through in C) finds short "runs" of digits or
# upper-case-then-digits; the exact patterns then run only on those few windows.

_DIGIT = re.compile(r"\d")
_RUN = re.compile(r"[+(\d](?:[\d().+-]| (?=[\d(+]))*")  # digits with phone/card/IP separators
_CAPS = re.compile(r"[A-Z][A-Z] ?\d\d")  # where an IBAN or a NINO can start
_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")  # where an IPv6 address can be
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")  # greedy: the country sets the end
_NINO = re.compile(
    r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]( ?)\d{2}\1\d{2}\1\d{2}\1[A-D]\b"
)
_CARD = re.compile(r"(?<![\w.,+-])\d(?:[ -]?\d){11,18}(?!\d|[.,-]\d)")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d|-\d)")
_SSN_PLAIN = re.compile(r"(?<![\w-])(?!000|666|9)\d{3}( ?)(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])")
_SSN_CUE = re.compile(r"\b(?:ssn|social security)\b", re.I)
# A Luhn-valid number right after a card cue is a card even from an unlisted issuer range.
_CARD_CUE = re.compile(
    r"\b(?:card|cc|credit|debit|visa|mastercard|amex)\b(?:\W+(?:no|nr|number|is))*\W{0,6}$", re.I
)
_SSN_INVALID = {"078051120", "219099999", "123456789"}  # advertised or sample numbers
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}|(?=:))(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}(?![\w:])"
)
_VERSION_CUE = re.compile(r"(?:\bversion|\bver\.?|\brelease|\bbuild)\s*$", re.I)
# Near a dotted quad (40 chars before, 24 after): software talk, or network talk.
_SOFTWARE_CUE = re.compile(
    r"\b(?:versions?|releases?|release notes|builds?|patch|patched|sdk|firmware|update[ds]?"
    r"|upgrad(?:e|ed|es|ing)|install(?:ed|ing|s)?|package|app|plugin|library|lib"
    r"|changelog|shipped|rolled out|play store|app store|npm|pip|pypi|nuget|maven)\b",
    re.I,
)
_NETWORK_CUE = re.compile(
    r"\b(?:ip|ips|ipv4|address(?:es)?|host|hostname|server|ssh|ping|connect(?:ed|ing)?"
    r"|firewall|router|dns|subnet|gateway|proxy|vpn|whitelist|allowlist|blocklist|block"
    r"|unblock|blocked|port|login|logins|traffic|request|requests|network|lan|wan|nat"
    r"|route|curl|telnet|nslookup|reach|reachable|unreachable|resolve[sd]?)\b",
    re.I,
)
# Obfuscated emails: "jane at example dot com", "l.okafor[at]example[dot]org".
_OBFUSCATION_HINT = re.compile(r"[\[({<]\s*(?:at|dot)\s*[\])}>]|\bdot\b", re.I)
BR_AT = r"\s*[\[({<]\s*at\s*[\])}>]\s*"
BR_DOT = r"\s*[\[({<]\s*dot\s*[\])}>]\s*"
_TLD = (r"(?:com|org|net|edu|gov|io|co|uk|de|fr|nl|es|it|ru|jp|cn|in|au|ca|br|ch|se|no|dk"
        r"|fi|pl|be|at|ie|pt|info|biz|me|us|ai|app|dev)")  # fmt: skip
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LOCAL = r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
_EMAIL_BRACKETED = re.compile(
    rf"(?<![\w.%+-]){_LOCAL}(?:(?i:{BR_DOT}){_LOCAL})*(?i:{BR_AT})"
    rf"{_LABEL}(?:(?:(?i:{BR_DOT})|\.){_LABEL})*(?:(?i:{BR_DOT})|\.)[A-Za-z]{{2,24}}(?![\w-])"
)
_EMAIL_UPPER = re.compile(
    rf"(?<![\w.%+-]){_LOCAL}(?: DOT {_LOCAL})* AT {_LABEL}(?: DOT {_LABEL})+(?![\w-])"
)
_EMAIL_WORDS = re.compile(
    rf"(?<![\w.%+-]){_LOCAL}(?: dot {_LOCAL})* at {_LABEL}(?: dot {_LABEL})* dot {_TLD}\b"
)
# ... and the address follows "to", "is", "at", "email", a colon: "send the form at x dot
# com" names a site, "send it to jane at x dot com" an address.
_MAIL_LEAD = re.compile(r"(?:\b(?:to|is|at|e-?mail|mail|contact|address|cc|reach)|:)\s*$", re.I)
_MAIL_CUE = re.compile(
    r"\b(?:e-?mail(?:ed|ing)?|mail|write|wrote|send|sent|contact|reach|reply|cc|forward"
    r"|address|inbox|message)\b",
    re.I,
)

_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_ANY = tuple(range(12, 20))
# (first, last, prefix digits, allowed lengths): Visa, Mastercard, Amex, Diners, Discover,
# JCB, UnionPay, Maestro, Mir.
_IIN = (
    (4, 4, 1, (13, 16, 19)), (51, 55, 2, (16,)), (2221, 2720, 4, (16,)), (34, 34, 2, (15,)),
    (37, 37, 2, (15,)), (300, 305, 3, _ANY[2:]), (3095, 3095, 4, _ANY[2:]),
    (36, 36, 2, _ANY[2:]), (38, 39, 2, _ANY[2:]), (6011, 6011, 4, _ANY[4:]),
    (644, 649, 3, _ANY[4:]), (65, 65, 2, _ANY[4:]), (3528, 3589, 4, _ANY[4:]),
    (1800, 1800, 4, (15,)), (2131, 2131, 4, (15,)), (62, 62, 2, _ANY[4:]), (50, 50, 2, _ANY),
    (56, 58, 2, _ANY), (6304, 6304, 4, _ANY), (639, 639, 3, _ANY), (6759, 6759, 4, _ANY),
    (6761, 6763, 4, _ANY), (2200, 2204, 4, _ANY[4:]),
)  # fmt: skip


# --- checks ----------------------------------------------------------------------


def _iban_at(text: str, start: int) -> PiiMatch | None:
    m = _IBAN.match(text, start)
    length = _IBAN_LENGTH.get(m.group()[:2]) if m else None
    if m is None or length is None:
        return None
    taken, end = 0, start
    while taken < length and end < m.end():  # walk until `length` alnum chars are taken
        taken += text[end] != " "
        end += 1
    if taken < length or (end < len(text) and text[end].isalnum()):
        return None
    compact = text[start:end].replace(" ", "")
    number = int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4]))
    return PiiMatch("iban", start, end) if number % 97 == 1 else None


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(raw: str, cued: bool = False) -> bool:
    groups = re.split(r"[ -]", raw)
    if len(groups) > 1:
        if len(set(re.findall(r"[ -]", raw))) > 1:
            return False  # mixed separators: not how card numbers are written
        sizes = [len(g) for g in groups]
        if not (all(s == 4 for s in sizes[:-1]) or sizes[:2] == [4, 6]):
            return False
    digits = "".join(groups)
    n = len(digits)
    return (
        (cued and 13 <= n <= 19)
        or any(lo <= int(digits[:width]) <= hi and n in lengths for lo, hi, width, lengths in _IIN)
    ) and _luhn(digits)


def _host_ip(candidate: str) -> bool:
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
        return False
    return not (ip.version == 4 and candidate.startswith("255."))


def _ipv4_not_version(text: str, start: int, end: int, value: str) -> bool:
    """Whether a host-valid dotted quad reads as an address rather than a version."""
    if _VERSION_CUE.search(text, max(0, start - 12), start):
        return False  # "version 10.2.3.4"
    network, software = (
        _nearest(_NETWORK_CUE, text, start, end),
        _nearest(_SOFTWARE_CUE, text, start, end),
    )
    if network is not None and (software is None or network <= software):
        return True  # the nearer cue decides: "the gateway at 10.2.3.4 after the upgrade"
    return software is None and not value.endswith(".0")


def _nearest(cue: re.Pattern[str], text: str, start: int, end: int) -> int | None:
    """Characters between a dotted quad and the nearest cue within 40 before or 24 after."""
    before = [start - m.end() for m in cue.finditer(text, max(0, start - 40), start)]
    after = [m.start() - end for m in cue.finditer(text, end, end + 24)]
    return min(before + after, default=None)


def _obfuscated_emails(text: str) -> list[PiiMatch]:
    """Emails written with words or brackets for ``@`` and ``.`` (see the module doc)."""
    low = text.lower()  # a plain substring test first: this runs on every text
    if not ("dot" in low or any(b + "at" in low for b in "[({<")):
        return []
    if not _OBFUSCATION_HINT.search(text):
        return []
    found = [PiiMatch("email", m.start(), m.end()) for rx in (_EMAIL_BRACKETED, _EMAIL_UPPER)
             for m in rx.finditer(text)]  # fmt: skip
    for m in _EMAIL_WORDS.finditer(text):
        if _MAIL_CUE.search(text, max(0, m.start() - 40), m.start()) and _MAIL_LEAD.search(
            text, max(0, m.start() - 16), m.start()
        ):
            found.append(PiiMatch("email", m.start(), m.end()))
    return found


def _cued(cue: re.Pattern[str], text: str, at: int) -> bool:
    return bool(cue.search(text, max(0, at - 30), at))


# --- scanning --------------------------------------------------------------------


def _in_window(rx: re.Pattern[str], text: str, lo: int, s: int, e: int) -> list[re.Match[str]]:
    """Matches of ``rx`` inside text[s:e], seeing 2 chars before and 6 after for boundaries."""
    window = text[lo : e + 6]
    return [m for m in rx.finditer(window) if m.start() + lo >= s and m.end() + lo <= e]


def _digit_run(text: str, s: int, e: int) -> list[PiiMatch]:
    lo = max(0, s - 2)
    run = text[s:e]
    found = [
        PiiMatch("credit_card", lo + m.start(), lo + m.end())
        for m in _in_window(_CARD, text, lo, s, e)
        if _card_ok(m.group(), _cued(_CARD_CUE, text, lo + m.start()))
    ]
    ssn = [_SSN] if "-" in run else []  # undashed SSNs only right after an SSN cue
    ssn += [_SSN_PLAIN] if _SSN_CUE.search(text, max(0, s - 40), s) else []
    for m in (m for rx in ssn for m in _in_window(rx, text, lo, s, e)):
        if re.sub(r"\D", "", m.group()) not in _SSN_INVALID:
            found.append(PiiMatch("us_ssn", lo + m.start(), lo + m.end()))
    if "." in run:
        for m in _in_window(_IPV4, text, lo, s, e):
            a, b = lo + m.start(), lo + m.end()
            if _host_ip(m.group()) and _ipv4_not_version(text, a, b, m.group()):
                found.append(PiiMatch("ip_address", a, b))
    for m in _in_window(PHONE, text, lo, s, e):
        span = phone_in(text, lo + m.start(), lo + m.end())
        if span:
            found.append(PiiMatch("phone", *span))
    return found


def _scan(text: str) -> list[PiiMatch]:
    found: set[PiiMatch] = set()
    at = text.find("@")
    while at >= 0:  # emails only around an "@", never a scan of the whole text
        lo = max(0, at - 65)
        for m in _EMAIL.finditer(text[lo : at + 260]):
            found.add(PiiMatch("email", lo + m.start(), lo + m.end()))
        at = text.find("@", at + 1)
    found.update(_obfuscated_emails(text))
    if not _DIGIT.search(text):
        return list(found)  # every other kind has a digit
    for m in _CAPS.finditer(text):
        s = m.start()
        if s and text[s - 1].isalnum():
            continue
        hit = _iban_at(text, s)
        nino = None if hit else _NINO.match(text, s)
        found.update([hit] if hit else [PiiMatch("uk_nino", s, nino.end())] if nino else [])
    for m in _RUN.finditer(text):
        if m.end() - m.start() >= 7:  # the shortest kind, an IPv4 like 1.2.3.4
            found.update(_digit_run(text, m.start(), m.end()))
    for m in _COLONS.finditer(text):
        lo = max(0, m.start() - 45)
        for v6 in _IPV6.finditer(text[lo : m.end() + 45]):
            value = v6.group()
            if any(c.isdigit() for c in value) and _host_ip(value):
                found.add(PiiMatch("ip_address", lo + v6.start(), lo + v6.end()))
    return list(found)


def _resolve(text: str) -> tuple[PiiMatch, ...]:
    candidates = _scan(text)
    if len(candidates) < 2:
        return tuple(candidates)
    kept: list[PiiMatch] = []
    for c in sorted(candidates, key=lambda c: (_RANK[c.kind], c.start - c.end, c.start)):
        if all(c.end <= k.start or c.start >= k.end for k in kept):
            kept.append(c)
    return tuple(sorted(kept, key=lambda c: c.start))


# The detector scans each input and the redactor then rewrites the same string: cache
# short texts (bounded memory: at most 1024 x 8k chars), scan long ones twice.
_cached = lru_cache(maxsize=1024)(_resolve)


def _find(text: str) -> tuple[PiiMatch, ...]:
    return _cached(text) if len(text) <= 8192 else _resolve(text)


def find_pii(text: str) -> list[PiiMatch]:
    """Non-overlapping PII matches in ``text``, in order of position."""
    return list(_find(text)) if text else []


class PiiDetector:
    """Which PII kinds each event's input and output contain (contexts are only redacted)."""

    name = "pii"

    def score(self, batch: TextBatch) -> list[Pii]:
        return [Pii(_kinds(i), _kinds(o)) for i, o in zip(batch.inputs, batch.outputs, strict=True)]


def _kinds(text: str) -> list[str]:
    return sorted({m.kind for m in find_pii(text)})
