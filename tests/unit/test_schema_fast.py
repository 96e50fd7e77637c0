"""Validation takes pydantic's JSON parser for speed; it must answer exactly what the
reference path (json.loads, limits, validate) answers: the same event, or the same
rejection naming the same field and rule, on valid, odd and broken payloads alike."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from ingest.schema import LIMITS, Event, Feedback, Rejection, _parse, _parse_slow
from ingest.synthetic import MALFORMED_KINDS, malformed_payload, synthetic_events

START = datetime(2026, 3, 1, tzinfo=UTC)
# Values that are right for some fields and wrong for others.
VALUES = [None, True, False, 0, -1, 1, 1.0, 0.5, -0.0, 1e308, 10**20, float("nan"),
          float("inf"), "", "x", "x" * 300, "2026-03-01T00:00:00Z", "2026-03-01T00:00:00",
          1_772_323_200_000, [], ["a", "b"], {}, {"input_tokens": 1.0}, {"a": "b"},
          {"a": 1}, [1, [2, [3]]], "\u2028\ud7ff\U0001f600", "ok", "error", 2]  # fmt: skip
JUNK = [b"\n", b"\t", b"\x00", b"\xff", b"\xc3\x28", b'"', b"\\", b"\\u", b"\\ud800", b"{",
        b"}", b"[", b",", b":", b"1", b"e", b"-", b"NaN", b"Infinity", b"\xef\xbb\xbf"]  # fmt: skip


def answer(result: BaseModel | Rejection) -> object:
    """Comparable: the rejection, or the model's type, fields and unknown fields (repr,
    so a NaN equals itself)."""
    if isinstance(result, Rejection):
        return result
    return type(result), repr(result.model_dump()), repr(result.model_extra)


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def variants(rng: random.Random, base: list[dict], n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        event = dict(rng.choice(base))
        kind = rng.randrange(6)
        if kind == 0:  # a field, known or not, set to any value
            event[rng.choice([*event, "usage", "tags", "context", "crm", "schema_version"])] = (
                rng.choice(VALUES)
            )
        elif kind == 1:  # an unknown field nested about as deep as the limit allows
            event["extra"] = nested(rng.randint(LIMITS.json_depth - 3, LIMITS.json_depth + 3))
        raw = json.dumps(event, ensure_ascii=rng.random() < 0.5).encode()
        if kind == 2:  # junk spliced in
            at = rng.randrange(len(raw))
            raw = raw[:at] + rng.choice(JUNK) + raw[at:]
        elif kind == 3:  # truncated
            raw = raw[: rng.randrange(len(raw))]
        elif kind == 4:  # a duplicate key, the last one winning or failing
            raw = raw[:-1] + b', "model": ' + json.dumps(rng.choice(VALUES)).encode() + b"}"
        out.append(raw)
    return out


def test_every_malformed_kind_is_rejected_as_before() -> None:
    for i, kind in enumerate(MALFORMED_KINDS):
        payload, _ = malformed_payload(kind, i)
        assert answer(_parse(payload, Event)) == answer(_parse_slow(payload, Event)), kind


def test_valid_events_parse_to_the_same_event() -> None:
    for e in synthetic_events(200, seed=5, start=START):
        for payload in (json.dumps(e).encode(), json.dumps(e, ensure_ascii=False)):
            fast = _parse(payload, Event)
            assert isinstance(fast, Event)
            assert answer(fast) == answer(_parse_slow(payload, Event))


@pytest.mark.parametrize("seed", range(4))
def test_odd_and_broken_payloads_get_the_same_answer(seed: int) -> None:
    rng = random.Random(seed)
    base = list(synthetic_events(50, seed=seed, start=START))
    payloads = variants(rng, base, 2500)
    accepted = 0
    for payload in payloads:
        fast, slow = _parse(payload, Event), _parse_slow(payload, Event)
        assert answer(fast) == answer(slow), payload[:300]
        accepted += isinstance(fast, Event)
    assert 0 < accepted < len(payloads)  # both sides of the line were tried


def test_edge_cases_of_the_two_json_parsers_agree() -> None:
    base = json.dumps({"event_id": "e", "ts": "2026-03-01T00:00:00Z", "app": "a", "model": "m",
                       "input": "i", "output": "o"}).encode()  # fmt: skip
    extra = base[:-1] + b', "x": '
    cases = [
        base.replace(b'"i"', b'"\\ud800"'),  # lone surrogate: json.loads takes it, str refuses
        base.replace(b'"i"', b'"\xff"'),  # invalid UTF-8
        extra + b"1" * 5000 + b"}",  # past Python's int-to-str digit limit
        extra + b"1e400}",  # infinity by overflow
        extra + b"NaN}",
        base[:-1] + b', "cost_usd": NaN}',
        base[:-1] + b', "schema_version": 1.0}',
        base[:-1] + b', "usage": {"input_tokens": 1.0}}',
        b"\xef\xbb\xbf" + base,  # byte order mark
        base + b" \r\n",
        base + b" x",
        base.replace(b'"i"', b'"a\nb"'),  # raw control character
        extra + b"[" * 300 + b"]" * 300 + b"}",
        b"[]",
        b"",
        b"x" * (LIMITS.payload_bytes + 1),
    ]
    for payload in cases:
        assert answer(_parse(payload, Event)) == answer(_parse_slow(payload, Event)), payload[:80]


def test_feedback_takes_the_same_path() -> None:
    rng = random.Random(9)
    base = [{"event_id": f"e{i}", "ts": "2026-03-01T00:00:00Z", "score": rng.uniform(-1, 1),
             "comment": "fine", "source": "thumbs"} for i in range(20)]  # fmt: skip
    for payload in variants(rng, base, 1000):
        fast, slow = _parse(payload, Feedback), _parse_slow(payload, Feedback)
        assert answer(fast) == answer(slow), payload[:300]
