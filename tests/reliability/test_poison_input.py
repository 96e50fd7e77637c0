"""Poison input: whatever bytes arrive, validation answers Event or Rejection, fast.

Property-based (hypothesis): arbitrary bytes, arbitrary JSON, valid events with one
field replaced by arbitrary JSON, deep nesting and oversize payloads. The 100,000-input
fuzz run with atheris and the throughput figure are ``bench/fuzz_events.py``.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.schema import LIMITS, Event, Rejection, parse_event, parse_feedback
from ingest.synthetic import synthetic_events

VALID = next(synthetic_events(1, seed=99))
FIELDS = [*sorted(VALID), "usage.input_tokens", "context", "tags", "cost_usd", "ttft_ms"]
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=9), inner),
    max_leaves=30,
)


def answers(payload: bytes) -> Event | Rejection:
    result = parse_event(payload)  # must never raise
    assert isinstance(result, Event | Rejection)
    if isinstance(result, Rejection):
        assert result.field and result.rule, "every rejection names a field and a rule"
        assert result.reason.startswith(result.field)
    return result


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_answered(payload: bytes) -> None:
    answers(payload)


@FAST
@given(json_values)
def test_arbitrary_json_is_answered(value: Any) -> None:
    answers(json.dumps(value).encode())


@FAST
@given(st.sampled_from(FIELDS), json_values)
def test_a_valid_event_with_one_field_replaced_is_answered(field: str, value: Any) -> None:
    event = json.loads(json.dumps(VALID))
    if "." in field:
        outer, inner = field.split(".")
        event.setdefault(outer, {})
        if isinstance(event[outer], dict):
            event[outer][inner] = value
    else:
        event[field] = value
    answers(json.dumps(event).encode())


@FAST
@given(st.sampled_from(FIELDS), st.binary(min_size=1, max_size=40))
def test_bytes_spliced_into_a_valid_event_are_answered(field: str, junk: bytes) -> None:
    raw = json.dumps(VALID).encode()
    at = raw.find(field.split(".")[0].encode())
    answers(raw[: max(at, 0)] + junk + raw[max(at, 0) :])


@FAST
@given(st.binary(max_size=300))
def test_feedback_is_answered_too(payload: bytes) -> None:
    result = parse_feedback(payload)
    assert hasattr(result, "event_id") or (result.field and result.rule)


def timed(payload: bytes) -> tuple[Event | Rejection, float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    result = answers(payload)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def test_nesting_far_past_the_limit_is_refused_quickly() -> None:
    for depth in (LIMITS.json_depth + 1, 1_000, 100_000):
        payload = b'{"event_id": ' + b"[" * depth + b"]" * depth + b"}"
        result, seconds, peak = timed(payload)
        assert isinstance(result, Rejection) and "nested deeper" in result.rule, depth
        assert seconds < 1.0 and peak < 64 * 2**20, (depth, seconds, peak)


def test_an_oversize_payload_is_refused_before_it_is_parsed() -> None:
    payload = b'{"output": "' + b"x" * (8 * LIMITS.payload_bytes) + b'"}'
    result, seconds, peak = timed(payload)
    assert isinstance(result, Rejection) and result.field == "payload"
    assert "larger than" in result.rule
    assert seconds < 0.1 and peak < 2**20  # refused from its length, nothing copied


def test_the_largest_allowed_payload_is_answered_in_bounded_time_and_memory() -> None:
    event = dict(VALID, output="y" * LIMITS.text_chars, input="z" * LIMITS.text_chars)
    payload = json.dumps(event).encode()
    assert len(payload) <= LIMITS.payload_bytes
    result, seconds, peak = timed(payload)
    assert isinstance(result, Event)
    assert seconds < 1.0 and peak < 20 * len(payload), (seconds, peak)


def test_lone_surrogates_never_reach_storage() -> None:
    # Valid UTF-8 JSON whose escape decodes to a lone surrogate: storing it would fail
    # on every retry and block the partition, so it must be a rejection here.
    raw = json.dumps(dict(VALID, output="bad")).replace('"bad"', '"bad \\ud800"').encode()
    result = answers(raw)
    assert isinstance(result, Rejection) and result.field == "output"
