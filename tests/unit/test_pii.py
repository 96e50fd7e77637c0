"""PII patterns: real values are found, look-alikes are not, redaction leaves nothing behind."""

from __future__ import annotations

import re

import pytest

from detectors.base import DetectorError, TextBatch
from detectors.pii import Pii, PiiDetector, find_pii
from detectors.redaction import REDACTION_MODES, Redactor, redact


def found(text: str) -> list[tuple[str, str]]:
    return [(m.kind, text[m.start : m.end]) for m in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        (
            "write to jane.doe+billing@example.co.uk today",
            "email",
            "jane.doe+billing@example.co.uk",
        ),
        ("call +44 20 7946 0958 after six", "phone", "+44 20 7946 0958"),
        ("Fax: +41 (0)62 585 51 90", "phone", "+41 (0)62 585 51 90"),
        ("my number is (415) 555-2671.", "phone", "(415) 555-2671"),
        ("reach me at 415.555.2671", "phone", "415.555.2671"),
        ("not answering at 07700 900 123", "phone", "07700 900 123"),
        ("They're not answering at 78 651 450", "phone", "78 651 450"),
        ("Can someone call me on 01.84.17.61.18?", "phone", "01.84.17.61.18"),
        ("Phone:\n780 6326", "phone", "780 6326"),
        ("card 4111 1111 1111 1111 declined", "credit_card", "4111 1111 1111 1111"),
        ("amex 3782-822463-10005", "credit_card", "3782-822463-10005"),
        ("Please block card no 5555555555554444", "credit_card", "5555555555554444"),
        # An unlisted issuer range (real JCB is 3528-3589) still counts right after a card cue.
        ("i have lost my card 3521213764418045.", "credit_card", "3521213764418045"),
        ("What's your credit card? 3522235032377454", "credit_card", "3522235032377454"),
        ("billed amount for cc 3509413199654323", "credit_card", "3509413199654323"),
        ("IBAN GB82 WEST 1234 5698 7654 32.", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("to DE89370400440532013000 please", "iban", "DE89370400440532013000"),
        ("blocked from 172.61.42.192 again", "ip_address", "172.61.42.192"),
        ("client 2001:db8::8a2e:370:7334 failed", "ip_address", "2001:db8::8a2e:370:7334"),
        ("His social security number is 832-13-6314", "us_ssn", "832-13-6314"),
        ("my SSN: 832 13 6314", "us_ssn", "832 13 6314"),
        ("NI number AB 12 34 56 C", "uk_nino", "AB 12 34 56 C"),
    ],
)
def test_each_kind_is_found_with_its_exact_span(text: str, kind: str, value: str) -> None:
    assert found(text) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "16 digits, Luhn-valid, no issuer: 9111111111111111",
        "order 3521213764418045 shipped (Luhn-valid, no issuer, no card cue)",
        "card 3521213764418046 fails Luhn, cue or not",
        "card 35212137 is too short for a card",
        "answering 3 questions at 10 000 feet",
        "card 4111 1111-1111 1111 mixes separators",
        "IBAN GB82 WEST 1234 5698 7654 31 has a wrong checksum",
        "XX82WEST12345698765432 is no country",
        "ping 999.1.1.1 and 256.0.0.1",
        "upgrade to version 1.2.3.4 now",
        "release 1.2.3 and 10.0.19041.1",
        "localhost 127.0.0.1 and 0.0.0.0 and mask 255.255.255.0",
        "timestamp 12:30:45 and MAC 00:1A:2B:3C:4D:5E and std::vector",
        "SSNs 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567, 123-45-0000",
        "born on 2003-08-28 12:13:52 or 28.08.2003",
        "ISBN 0-306-40615-2 and ISBN 978-3-16-148410-0",
        "order 123456789012 shipped, invoice 2023-000123",
        "it costs $1 299 000 or 1,299,000 EUR",
        "years 1999 2000 2001 2002 were good",
        "my address is 9554 62 Rue Gafsa, zip 61089",
        "Pi is 3.14159265358979 and e is 2.718281828",
    ],
)
def test_near_misses_are_not_pii(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Our Sydney office is on +61 2 9374 4000.", "+61 2 9374 4000"),
        ("My Dutch mobile is +31 6 12345678 if the line drops", "+31 6 12345678"),
        ("Notre standard: +33 1 42 68 53 00.", "+33 1 42 68 53 00"),
        ("Tokyo office: +81 3-1234-5678", "+81 3-1234-5678"),
        ("Telefon: +49 (0) 89 123456-0", "+49 (0) 89 123456-0"),
        ("Du erreichst mich unter 0176 2345 6789, am besten", "0176 2345 6789"),
    ],
)
def test_international_and_long_national_phone_formats_are_phones(text: str, value: str) -> None:
    assert found(text) == [("phone", value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Send the contract to name at example dot com and cc legal.",
         "name at example dot com"),
        ("Write to jane dot doe at gmail dot com, she handles refunds.",
         "jane dot doe at gmail dot com"),
        ("Contact: l.okafor[at]example[dot]org (replies in two days)",
         "l.okafor[at]example[dot]org"),
        ("mail me: tom (at) example (dot) net", "tom (at) example (dot) net"),
        ("Write to us at info{at}example{dot}de.", "info{at}example{dot}de"),
        ("Email is priya_k AT outlook DOT com", "priya_k AT outlook DOT com"),
    ],
)  # fmt: skip
def test_emails_written_to_dodge_scrapers_are_emails(text: str, value: str) -> None:
    assert found(text) == [("email", value)]


def test_an_upper_case_bracketed_dot_in_the_local_part_is_part_of_the_email() -> None:
    text = "john[DOT]smith[AT]example[DOT]com"
    assert found(text) == [("email", text)]


def test_a_count_after_an_international_number_is_not_part_of_it() -> None:
    assert found("I called +44 20 7946 0958 3 times") == [("phone", "+44 20 7946 0958")]


def test_a_twelve_digit_national_number_is_a_phone_only_with_a_mobile_prefix() -> None:
    assert found("Invoice 0100 2024 0001 is overdue") == []
    assert found("Mobil: 0176 2345 6789") == [("phone", "0176 2345 6789")]


@pytest.mark.parametrize(
    "text",
    [
        "Sign up at example dot com and pick the free tier.",  # a site, no mail cue
        "Let's connect the dots at the next standup.",
        "We met at the conference dot com era panel in 1999.",
        "I'm at home dot, call later.",
        "Please send feedback via the form at example dot com.",  # a site, not an address
        "3 apples (at) 0.50 each",
    ],
)
def test_at_and_dot_in_ordinary_sentences_are_not_emails(text: str) -> None:
    assert found(text) == []


def test_an_obfuscated_email_hashes_like_the_plain_one() -> None:
    r = Redactor("hash", salt="s")
    assert r.redact("write to jane at example dot com") == r.redact("write to jane@example.com")


@pytest.mark.parametrize(
    "text",
    [
        "We upgraded the gateway to version 10.2.3.4 last night.",
        "After installing 3.2.1.0 the export button is greyed out.",
        "Our SDK 2.14.0.3 throws on startup.",
        "Patch 7.1.0.4 rolled out to all tenants on Monday.",
        "Latency doubled after 5.2.0.1 shipped.",
        "We are on 4.18.2.0 since Tuesday.",  # a network's .0 is no host
    ],
)
def test_dotted_versions_are_not_ip_addresses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The DNS server 8.8.4.4 answers, but the app does not.", "8.8.4.4"),
        ("After the update the router at 192.168.0.1 drops packets.", "192.168.0.1"),
        ("The app cannot reach 81.2.69.142 since Monday.", "81.2.69.142"),  # nearer cue wins
        ("Please don't share 192.168.1.20 in the public ticket.", "192.168.1.20"),
        ("IP 10.20.30.0 keeps hitting the rate limit.", "10.20.30.0"),
    ],
)
def test_dotted_quads_near_network_words_or_without_software_words_are_ips(
    text: str, value: str
) -> None:
    assert found(text) == [("ip_address", value)]


def test_a_card_number_is_not_also_a_phone() -> None:
    assert found("call 4111-1111-1111-1111") == [("credit_card", "4111-1111-1111-1111")]


def test_digits_inside_an_email_belong_to_the_email() -> None:
    assert found("mail 4155552671@sms.example.com") == [("email", "4155552671@sms.example.com")]


def test_a_bare_digit_run_is_a_phone_only_next_to_a_phone_cue() -> None:
    assert found("Desk: 5403926876") == [("phone", "5403926876")]
    assert found("Order 5403926876 is late") == []


def test_matches_come_in_text_order() -> None:
    text = "ip 10.1.2.3, mail a@b.io, card 4111111111111111"
    assert [m.kind for m in find_pii(text)] == ["ip_address", "email", "credit_card"]


@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_masked_and_hashed_text_keeps_no_raw_value(mode: str) -> None:
    values = ["bob@example.com", "(415) 555-2671", "4111 1111 1111 1111", "832-13-6314",
              "GB82 WEST 1234 5698 7654 32", "172.61.42.192"]  # fmt: skip
    text = "; ".join(f"item {v}" for v in values)
    out = Redactor(mode, salt="s3cret").redact(text)
    for v in values:
        assert v not in out
    assert re.sub(r"\[[A-Z_]+(:[0-9a-f]{10})?\]", "", out) == "; ".join(["item "] * len(values))


def test_mask_uses_kind_placeholders() -> None:
    assert redact("mail bob@example.com or call 415-555-2671", "mask") == (
        "mail [EMAIL] or call [PHONE]"
    )


def test_hash_tags_are_stable_for_equal_values_and_differ_across_salts() -> None:
    a, b = Redactor("hash", salt="one"), Redactor("hash", salt="two")
    first = a.redact("call 415-555-2671")
    assert first == a.redact("call 415-555-2671")
    assert re.fullmatch(r"call \[PHONE:[0-9a-f]{10}\]", first)
    assert first != b.redact("call 415-555-2671")
    assert a.redact("Bob@Example.com") == a.redact("bob@example.com")  # one spelling per value
    assert a.redact("call (415) 555-2671") == first


def test_hash_tag_differs_for_different_values() -> None:
    r = Redactor("hash", salt="one")
    assert r.redact("415-555-2671") != r.redact("415-555-2672")


def test_keep_mode_returns_text_unchanged() -> None:
    text = "mail bob@example.com"
    assert redact(text, "keep") == text


def test_unknown_mode_is_a_configuration_error() -> None:
    assert REDACTION_MODES == ("keep", "mask", "hash")
    with pytest.raises(DetectorError, match="redaction mode"):
        Redactor("scramble")


def test_redactor_repr_hides_the_salt() -> None:
    assert "s3cret" not in repr(Redactor("hash", salt="s3cret"))


def test_detector_reports_sorted_unique_kinds_per_side_in_order() -> None:
    batch = TextBatch.of(
        ["mail a@b.io or c@d.io, call 415-555-2671", "nothing here", ""],
        ["ip 10.1.2.3", "", "card 4111111111111111"],
    )
    assert PiiDetector().score(batch) == [
        Pii(["email", "phone"], ["ip_address"]),
        Pii([], []),
        Pii([], ["credit_card"]),
    ]
    assert PiiDetector.name == "pii"


def test_quotes_are_redacted_with_the_cues_and_values_of_their_source() -> None:
    # Unsupported sentences are fragments: the cue may sit in the previous sentence,
    # and a quote cut at its length limit may stop inside a value.
    source = "What's your credit card? 3522235032377454. Call 415-555-2671 now"
    quotes = ["3522235032377454.", "Call 415-555-26"]
    assert Redactor("mask").redact_quotes(source, quotes) == ["[CREDIT_CARD].", "Call [PHONE]"]
    hashed = Redactor("hash", salt="s")
    tag = hashed.redact_quotes(source, ["3522235032377454."])[0].rstrip(".")
    assert tag.startswith("[CREDIT_CARD:") and tag in hashed.redact(source)  # same tag
    assert Redactor("keep").redact_quotes(source, quotes) == quotes
