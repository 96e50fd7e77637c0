"""Envelopes: many events in one Kafka message, split back into one record per event.

A bad line is one dead letter naming its line; a bad envelope is one dead letter as a
whole; an envelope is never split across batches, so dedup tokens stay per content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from core.settings import load_settings
from ingest.envelope import (
    ENVELOPE_HEADER,
    ENVELOPE_VERSION,
    encode_envelope,
    envelope_version,
    split_envelope,
)
from ingest.schema import LIMITS, Event, Rejection, event_to_json, parse_event
from ingest.synthetic import synthetic_events
from processors.batch import Record, Scorer, build_scorer, event_records, micro_batches
from storage.writer import DEAD_LETTER_COLUMNS, EVENT_COLUMNS, batch_token

START = datetime(2026, 3, 1, tzinfo=UTC)
HEADERS = [(ENVELOPE_HEADER, ENVELOPE_VERSION)]


def lines(n: int, seed: int = 1) -> list[bytes]:
    """``n`` events in the SDK's wire form: canonical compact JSON."""
    out = []
    for e in synthetic_events(n, seed=seed, start=START):
        parsed = parse_event(json.dumps(e))
        assert isinstance(parsed, Event)
        out.append(event_to_json(parsed))
    return out


@dataclass
class Message:
    """What Faust's ``event.message`` gives the agent: the fields it reads."""

    value: bytes
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: bytes | None = None
    topic: str = "llm.events"
    partition: int = 2
    timestamp: float = 1_772_323_200.0


@dataclass
class FaustEvent:
    message: Message


@pytest.fixture(scope="module")
def cheap() -> Scorer:
    return build_scorer(load_settings({"LLMPULSE_MODELS": "off"}))


# --- the wire format --------------------------------------------------------------------


def test_an_envelope_is_its_events_one_per_line_and_splits_back_byte_for_byte() -> None:
    events = lines(3)
    value = encode_envelope(events)
    assert value == b"\n".join(events) and value.count(b"\n") == 2
    assert split_envelope(value, ENVELOPE_VERSION) == events
    assert split_envelope(value + b"\n", ENVELOPE_VERSION) == events  # one trailing newline


def test_only_the_envelope_header_marks_an_envelope() -> None:
    assert envelope_version(None) is None
    assert envelope_version([]) is None
    assert envelope_version([("llmpulse.other", b"1")]) is None
    assert envelope_version([("trace", b"x"), (ENVELOPE_HEADER, b"1")]) == b"1"


def test_a_value_that_is_no_envelope_is_refused_as_a_whole() -> None:
    big = b"x" * (LIMITS.payload_bytes + 1)
    assert split_envelope(big, ENVELOPE_VERSION) == Rejection(
        "envelope", f"larger than {LIMITS.payload_bytes} bytes"
    )
    assert split_envelope(b"", ENVELOPE_VERSION) == Rejection("envelope", "holds no events")
    assert split_envelope(b"\n", ENVELOPE_VERSION) == Rejection("envelope", "holds no events")
    refused = split_envelope(b"{}", b"2")
    assert isinstance(refused, Rejection) and refused.field == "envelope"
    assert "unknown envelope version '2'" in refused.rule


def test_encoding_refuses_what_a_worker_could_not_split() -> None:
    with pytest.raises(ValueError, match="at least one"):
        encode_envelope([])
    with pytest.raises(ValueError, match="spans lines"):
        encode_envelope([b'{"a": 1}', b'{\n"a": 1}'])
    with pytest.raises(ValueError, match="exceeds"):
        encode_envelope([b"x" * (LIMITS.payload_bytes // 2)] * 3)


# --- from messages to records and batches -----------------------------------------------


def test_a_message_without_the_header_is_one_event_as_before() -> None:
    (record,) = event_records(Message(b'{"a": 1}', offset=5, key=b"k"))
    assert record == Record("llm.events", 2, 5, b"k", b'{"a": 1}', 1_772_323_200.0)
    assert record.line == 0 and record.envelope is None and record.refused is None


def test_each_line_of_an_envelope_is_a_record_at_the_envelope_offset() -> None:
    events = lines(3)
    records = event_records(Message(encode_envelope(events), offset=9, headers=HEADERS))
    assert [r.value for r in records] == events
    assert [r.line for r in records] == [1, 2, 3]
    assert {(r.topic, r.partition, r.offset, r.envelope) for r in records} == {
        ("llm.events", 2, 9, b"1")
    }


def test_a_refused_envelope_is_one_record_carrying_its_rejection() -> None:
    (record,) = event_records(Message(b"", offset=4, headers=HEADERS))
    assert record.refused == Rejection("envelope", "holds no events")
    assert record.line == 0 and record.envelope == b"1"


def test_batches_hold_whole_envelopes_so_no_two_share_a_message() -> None:
    taken = [FaustEvent(Message(encode_envelope(lines(4, seed=i)), i, HEADERS)) for i in range(5)]
    taken.insert(2, FaustEvent(Message(lines(1, seed=9)[0], 99)))  # a single event among them
    batches = list(micro_batches(taken, max_records=10))
    # 4 + 4 (+ 1 would still fit, but the next envelope would not) ...
    assert [len(records) for _, records in batches] == [9, 8, 4]
    assert [len(group) for group, _ in batches] == [3, 2, 1]
    assert [e for group, _ in batches for e in group] == taken  # every message once, in order
    offsets = [{(r.topic, r.partition, r.offset) for r in records} for _, records in batches]
    assert all(a.isdisjoint(b) for i, a in enumerate(offsets) for b in offsets[i + 1 :])


def test_an_envelope_larger_than_a_batch_is_a_batch_alone_and_singles_one_per_take() -> None:
    big = FaustEvent(Message(encode_envelope(lines(7)), 1, HEADERS))
    assert [len(r) for _, r in micro_batches([big], max_records=3)] == [7]
    singles = [FaustEvent(Message(v, i)) for i, v in enumerate(lines(6))]
    ((group, records),) = micro_batches(singles, max_records=6)
    assert group == singles and [r.offset for r in records] == list(range(6))


# --- scoring: per-event dead letters ----------------------------------------------------


def test_a_bad_line_is_one_dead_letter_naming_its_line_and_the_rest_are_stored(
    cheap: Scorer,
) -> None:
    events = lines(4)
    bad = json.loads(events[2])
    del bad["model"]
    events[2] = json.dumps(bad, separators=(",", ":")).encode()
    records = event_records(Message(encode_envelope(events), offset=40, headers=HEADERS))
    batch = cheap.score(records)

    rows = [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in batch.rows]
    assert [r["envelope_line"] for r in rows] == [1, 2, 4]
    assert {(r["kafka_partition"], r["kafka_offset"]) for r in rows} == {(2, 40)}
    (dead,) = [dict(zip(DEAD_LETTER_COLUMNS, d, strict=True)) for d in batch.dead_letters]
    assert (dead["topic"], dead["partition"], dead["offset"], dead["envelope_line"]) == (
        "llm.events", 2, 40, 3,
    )  # fmt: skip
    assert dead["field"] == "model" and dead["payload"] == events[2]  # that line alone
    ((record, rejection),) = batch.rejected
    assert record.line == 3 and record.value == events[2] and rejection.field == "model"
    # one message, once: the dedup tokens are those of the message set
    assert batch.offsets == [("llm.events", 2, 40)]
    assert batch_token("events", batch.offsets) == batch_token("events", [("llm.events", 2, 40)])


def test_two_bad_lines_of_one_envelope_are_two_dead_letters(cheap: Scorer) -> None:
    events = [b"not json", *lines(1), b'{"event_id": "x"}']
    batch = cheap.score(event_records(Message(encode_envelope(events), 3, HEADERS)))
    dead = [dict(zip(DEAD_LETTER_COLUMNS, d, strict=True)) for d in batch.dead_letters]
    assert [(d["envelope_line"], d["field"]) for d in dead] == [(1, "payload"), (3, "ts")]
    assert len(batch.rows) == 1


def test_a_refused_envelope_is_one_dead_letter_with_no_line(cheap: Scorer) -> None:
    value = encode_envelope(lines(2))
    batch = cheap.score(event_records(Message(value, 8, [(ENVELOPE_HEADER, b"7")])))
    assert not batch.rows
    (dead,) = [dict(zip(DEAD_LETTER_COLUMNS, d, strict=True)) for d in batch.dead_letters]
    assert (dead["offset"], dead["envelope_line"], dead["field"]) == (8, 0, "envelope")
    assert dead["payload_size"] == len(value)
    assert len(dead["payload"].split(b"\n")) == 2  # both lines kept (PII masked in them)


def test_a_refused_envelope_is_redacted_line_by_line_as_json(cheap: Scorer) -> None:
    first = json.dumps({"input": "Phone:\n(415) 555-2671"}, separators=(",", ":")).encode()
    value = first + b"\n" + b'{"input":"jane.doe@example.com"}'
    batch = cheap.score(event_records(Message(value, 8, [(ENVELOPE_HEADER, b"2")])))
    (dead,) = [dict(zip(DEAD_LETTER_COLUMNS, d, strict=True)) for d in batch.dead_letters]
    stored = dead["payload"].split(b"\n")
    assert [json.loads(s) for s in stored] == [{"input": "Phone:\n[PHONE]"}, {"input": "[EMAIL]"}]


def test_envelope_lines_and_single_events_mix_in_one_batch(cheap: Scorer) -> None:
    env = event_records(Message(encode_envelope(lines(3, seed=2)), 11, HEADERS))
    single = event_records(Message(lines(1, seed=3)[0], 12))
    batch = cheap.score(env + single)
    assert [r.envelope_line for r in batch.rows] == [1, 2, 3, 0]
    assert batch.offsets == [("llm.events", 2, 11), ("llm.events", 2, 12)]
