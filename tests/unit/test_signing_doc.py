"""The verifier that docs/alerting-receivers.md tells receivers to copy, run as written.

The snippet is taken from the document itself, so a change to either the signer or
the documentation that breaks receivers fails here. It reads the clock, so calls are
signed relative to now, by the same ``signed_headers`` the notifiers use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from alerting.signing import signed_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "alerting-receivers.md"
KEY = "receiver-key-5e1d"
BODY = b'{"alert_id":"a1","type":"llmpulse.rollback"}'


@pytest.fixture(scope="module")
def documented_verify() -> Callable[..., bool]:
    section = DOC.read_text().split("## Verifying a rollback or webhook call", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the verifier snippet is missing from docs/alerting-receivers.md"
    namespace: dict = {}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)  # our own doc
    return namespace["verify"]


def test_a_call_signed_by_llmpulse_is_accepted(documented_verify: Callable[..., bool]) -> None:
    assert documented_verify(KEY.encode(), signed_headers(KEY, BODY, time.time()), BODY)


def test_header_names_are_matched_case_insensitively(
    documented_verify: Callable[..., bool],
) -> None:
    headers = {k.upper(): v for k, v in signed_headers(KEY, BODY, time.time()).items()}
    assert documented_verify(KEY.encode(), headers, BODY)


def test_a_wrong_key_is_rejected(documented_verify: Callable[..., bool]) -> None:
    assert not documented_verify(b"another-key", signed_headers(KEY, BODY, time.time()), BODY)


def test_an_altered_body_is_rejected(documented_verify: Callable[..., bool]) -> None:
    headers = signed_headers(KEY, BODY, time.time())
    assert not documented_verify(KEY.encode(), headers, BODY.replace(b"a1", b"a2"))


def test_a_replay_older_than_five_minutes_is_rejected(
    documented_verify: Callable[..., bool],
) -> None:
    old = signed_headers(KEY, BODY, time.time() - 301)
    assert not documented_verify(KEY.encode(), old, BODY)
    fresh_stamp = {**old, "X-Llmpulse-Timestamp": str(int(time.time()))}
    assert not documented_verify(KEY.encode(), fresh_stamp, BODY)  # re-stamping breaks the MAC


def test_a_timestamp_far_in_the_future_is_rejected(
    documented_verify: Callable[..., bool],
) -> None:
    assert not documented_verify(KEY.encode(), signed_headers(KEY, BODY, time.time() + 301), BODY)


@pytest.mark.parametrize("drop", ["X-Llmpulse-Timestamp", "X-Llmpulse-Signature"])
def test_a_missing_header_is_rejected(documented_verify: Callable[..., bool], drop: str) -> None:
    headers = signed_headers(KEY, BODY, time.time())
    del headers[drop]
    assert not documented_verify(KEY.encode(), headers, BODY)


# The last one is "1700000000" in Arabic-Indic digits: str.isdigit() alone accepts it.
@pytest.mark.parametrize("stamp", ["", "+1700000000", "1.7e9", "\u0661\u0667" + "\u0660" * 8])
def test_a_malformed_timestamp_is_rejected_not_crashing(
    documented_verify: Callable[..., bool], stamp: str
) -> None:
    headers = {**signed_headers(KEY, BODY, time.time()), "X-Llmpulse-Timestamp": stamp}
    assert not documented_verify(KEY.encode(), headers, BODY)
