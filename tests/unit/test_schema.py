"""Event v1 validation: what is accepted, and that every rejection names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.schema import LIMITS, Event, Rejection, event_to_json, parse_event, parse_feedback

BASE = {
    "event_id": "e-1",
    "ts": "2026-11-22T10:00:00Z",
    "app": "support-bot",
    "model": "gpt-4o-mini",
    "input": "hi",
    "output": "hello",
}


def parse(**changes: object) -> Event | Rejection:
    body = {**BASE, **changes}
    return parse_event(json.dumps({k: v for k, v in body.items() if v is not ...}))


def test_minimal_event_is_accepted_with_defaults() -> None:
    event = parse()
    assert isinstance(event, Event)
    assert event.ts == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert event.status == "ok" and event.schema_version == 1


def test_epoch_milliseconds_and_offsets_become_utc() -> None:
    assert parse(ts=1_795_000_000_000).ts == datetime.fromtimestamp(1_795_000_000, UTC)
    assert parse(ts="2026-11-22T12:00:00+02:00").ts == datetime(2026, 11, 22, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"model": ...}, "model", "required field is missing"),
        ({"latency_ms": "fast"}, "latency_ms", "valid number"),
        ({"usage": {"input_tokens": -1}}, "usage.input_tokens", "greater than or equal to 0"),
        ({"usage": {"input_tokens": "12"}}, "usage.input_tokens", "valid integer"),
        ({"output": "x" * (LIMITS.text_chars + 1)}, "output", "at most 262144 characters"),
        ({"ts": "yesterday"}, "ts", "RFC 3339"),
        ({"ts": "2026-11-22T10:00:00"}, "ts", "UTC offset"),
        ({"ts": True}, "ts", "boolean"),
        ({"status": "maybe"}, "status", "'ok' or 'error'"),
        ({"context": ["c"] * (LIMITS.context_chunks + 1)}, "context", "at most 64 items"),
        ({"tags": {"k": 1}}, "tags.k", "valid string"),
        ({"event_id": ""}, "event_id", "at least 1 character"),
        ({"schema_version": 2}, "schema_version", "1"),
        ({"usage": {"tokens": 3}}, "usage.tokens", "Extra inputs"),
    ],
)
def test_rejection_names_field_and_rule(changes: dict, field: str, rule: str) -> None:
    rejection = parse(**changes)
    assert isinstance(rejection, Rejection)
    assert rejection.field == field
    assert rule in rejection.rule
    assert rejection.reason.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (b'{"event_id": ', "not valid JSON"),
        (b'{"event_id": "\xff"}', "invalid UTF-8 at byte 14"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"x" * (LIMITS.payload_bytes + 1), "larger than 1048576 bytes"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ],
)
def test_undecodable_payloads_are_rejected_as_payload(payload: bytes, rule: str) -> None:
    rejection = parse_event(payload)
    assert isinstance(rejection, Rejection)
    assert rejection.field == "payload"
    assert rule in rejection.rule


def test_unknown_fields_are_kept_in_extra() -> None:
    event = parse(team="search", experiment={"id": 3})
    assert event.extra == {"team": "search", "experiment": {"id": 3}}


def test_wire_form_round_trips() -> None:
    event = parse(usage={"input_tokens": 5, "output_tokens": 7}, tags={"region": "eu"})
    again = parse_event(event_to_json(event))
    assert again == event


def test_feedback_score_is_bounded() -> None:
    ok = parse_feedback(json.dumps({"event_id": "e-1", "ts": 1_795_000_000_000, "score": -1}))
    assert not isinstance(ok, Rejection) and ok.score == -1
    bad = parse_feedback(json.dumps({"event_id": "e-1", "ts": 1_795_000_000_000, "score": 2}))
    assert isinstance(bad, Rejection) and bad.field == "score"
