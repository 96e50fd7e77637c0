"""HMAC signing of webhook and rollback calls, and the verifier receivers copy."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from alerting.signing import SignatureError, sign, signed_headers, verify

KEY = "k3y-for-tests"
BODY = b'{"alert_id":"a1","type":"llmpulse.rollback"}'
NOW = 1_700_000_000.0


def _reason(
    headers: dict[str, str], *, key: str = KEY, body: bytes = BODY, now: float = NOW
) -> str:
    with pytest.raises(SignatureError) as err:
        verify(KEY, headers, body, NOW)
    return err.value.reason


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # What receivers in other languages must compute to check a call.
    expected = hmac.new(KEY.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(KEY, 1_700_000_000, BODY) == "sha256=" + expected


def test_signed_headers_carry_integer_timestamp_and_signature() -> None:
    headers = signed_headers(KEY, BODY, NOW + 0.9)
    assert headers == {
        "X-Llmpulse-Timestamp": "1700000000",
        "X-Llmpulse-Signature": sign(KEY, 1_700_000_000, BODY),
    }


def test_round_trip_verifies() -> None:
    verify(KEY, signed_headers(KEY, BODY, NOW), BODY, NOW + 10)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signed_headers(KEY, BODY, NOW).items()}
    verify(KEY, headers, BODY, NOW)


def test_wrong_key_is_a_bad_signature() -> None:
    assert _reason(signed_headers("another-key", BODY, NOW)) == "bad_signature"


def test_altered_body_is_a_bad_signature() -> None:
    assert _reason(signed_headers(KEY, BODY, NOW), body=BODY.replace(b"a1", b"a2")) == (
        "bad_signature"
    )


def test_timestamp_older_than_five_minutes_is_a_replay() -> None:
    assert _reason(signed_headers(KEY, BODY, NOW - 301)) == "too_old"


def test_timestamp_within_tolerance_is_accepted() -> None:
    verify(KEY, signed_headers(KEY, BODY, NOW - 299), BODY, NOW)


def test_timestamp_in_the_future_is_rejected() -> None:
    assert _reason(signed_headers(KEY, BODY, NOW + 301)) == "too_new"


def test_missing_signature_header_is_rejected() -> None:
    headers = signed_headers(KEY, BODY, NOW)
    del headers["X-Llmpulse-Signature"]
    assert _reason(headers) == "missing_header"


def test_missing_timestamp_header_is_rejected() -> None:
    headers = signed_headers(KEY, BODY, NOW)
    del headers["X-Llmpulse-Timestamp"]
    assert _reason(headers) == "missing_header"


@pytest.mark.parametrize("ts", ["", "1.7e9", "+1700000000", " 1700000000", "1_700_000_000"])
def test_non_integer_timestamp_is_rejected(ts: str) -> None:
    headers = {**signed_headers(KEY, BODY, NOW), "X-Llmpulse-Timestamp": ts}
    assert _reason(headers) == "bad_timestamp"


def test_timestamp_cannot_be_swapped_without_the_key() -> None:
    # A captured request re-sent with a fresh timestamp no longer matches its signature.
    old = signed_headers(KEY, BODY, NOW - 3600)
    assert _reason({**old, "X-Llmpulse-Timestamp": str(int(NOW))}) == "bad_signature"


def test_non_ascii_signature_is_rejected_not_crashing() -> None:
    headers = {**signed_headers(KEY, BODY, NOW), "X-Llmpulse-Signature": "sha256=é"}
    assert _reason(headers) == "bad_signature"
