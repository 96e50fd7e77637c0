"""Stored fragments and copies are redacted too: quoted sentences and dead-letter payloads.

(Tag values and unknown fields: tests/unit/test_batch.py, which has a scorer at hand.)
"""

from __future__ import annotations

import json
from collections.abc import Callable

from detectors.redaction import Redactor
from ingest.schema import Rejection
from processors.batch import Record, dead_letter_row
from storage.writer import DEAD_LETTER_COLUMNS

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
MASK = Redactor("mask")


def record(payload: bytes) -> Record:
    return Record("llm.events", 0, 7, None, payload)


def stored_payload(payload: bytes, redact: Callable[[str], str] | None = None) -> bytes:
    row = dead_letter_row(record(payload), Rejection("model", "required field is missing"),
                          redact)  # fmt: skip
    return dict(zip(DEAD_LETTER_COLUMNS, row, strict=True))["payload"]


def test_unsupported_quotes_keep_the_cue_of_the_whole_answer() -> None:
    # Quoted alone, "3522235032377454." has no card cue; in the answer it has one.
    output = "What's your credit card? 3522235032377454."
    assert MASK.redact("3522235032377454.") == "3522235032377454."
    assert MASK.redact_quotes(output, ["3522235032377454."]) == ["[CREDIT_CARD]."]


def test_a_json_dead_letter_is_masked_string_by_string() -> None:
    # json.dumps writes the newline as \n: in the raw bytes "n415..." hides the phone.
    payload = json.dumps({"event_id": "d1", "input": "Phone:\n(415) 555-2671\n" + EMAIL}).encode()
    assert "555-2671" in MASK.redact(payload.decode())  # why text is not enough
    stored = stored_payload(payload, MASK.redact)
    assert json.loads(stored) == {"event_id": "d1", "input": "Phone:\n[PHONE]\n[EMAIL]"}


def test_broken_payloads_are_masked_as_text_keeping_bytes_that_are_not_utf8() -> None:
    payload = b'{"input": "card ' + CARD.encode() + b'", \xff\xfe truncated'
    stored = stored_payload(payload, MASK.redact)
    assert stored == b'{"input": "card [CREDIT_CARD]", \xff\xfe truncated'


def test_a_payload_without_pii_is_stored_byte_for_byte() -> None:
    payload = b'{ "event_id" : "d2",   "input": "nothing to hide" }'
    assert stored_payload(payload, MASK.redact) == payload


def test_keep_mode_stores_the_original_bytes() -> None:
    payload = json.dumps({"input": f"card {CARD}"}).encode()
    assert stored_payload(payload, Redactor("keep").redact) == payload
    assert stored_payload(payload) == payload  # no redactor at all
