"""No record can stop an actor (unit tier: nothing started). Whatever bytes arrive, decoding
either yields valid records or raises `SchemaError` saying what is wrong; the in-flight journal
counts a death against exactly the records being handled when a process died."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.ingest.actor import check_sizes, parse_raw
from actors.ingest.config import IngestConfig
from schemas import DeadLetter, Document, PolicyVersion, RawDocument, Rollout, SchemaError, ScoredRollout, Task, decode
from schemas.codec import H_SCHEMA, H_VERSION
from streams.journal import Journal
from streams.kafka import Message

RECORD_TYPES = (RawDocument, Document, Task, Rollout, ScoredRollout, PolicyVersion, DeadLetter)
FIELDS = ("collection", "text", "source", "attrs", "doc_id", "produced_at")

# Any text, lone surrogates included (what a "\ud800" escape in JSON decodes to; UTF-8 cannot carry it).
TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Z", "C"]), max_size=12)
# Any JSON value.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _message(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> Message:
    return Message("docs.raw", 0, 0, b"k", value, headers or [])  # type: ignore[arg-type]


def _parse(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> list[RawDocument] | str:
    """The documents `value` becomes, or the reason it is dead-lettered; anything else fails the test."""
    try:
        raws = parse_raw(_message(value, headers))
        for raw in raws:
            check_sizes(raw, IngestConfig())
            for text in (raw.collection, raw.text, raw.source, *(x for pair in raw.attrs for x in pair)):
                text.encode("utf-8")  # what passes is storable as is
        return raws
    except SchemaError as exc:
        return str(exc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_become_documents_or_a_reason(value: bytes) -> None:
    _parse(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_json_value_becomes_documents_or_a_reason(value: object) -> None:
    _parse(json.dumps(value).encode())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS) | TEXT, JSON, max_size=6))
def test_any_value_in_any_field_becomes_a_document_or_a_reason(fields: dict) -> None:
    outcome = _parse(json.dumps(fields).encode())
    valid = (
        isinstance(fields.get("collection"), str)
        and isinstance(fields.get("text"), str)
        and fields["collection"].strip()
        and fields["text"].strip()
        and set(fields) <= set(FIELDS)
    )
    if not valid:  # a wrong or missing field is always a reason, never a document
        assert isinstance(outcome, str) and outcome.startswith(("RawDocument.", "payload:"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(RECORD_TYPES))
def test_any_bytes_under_valid_headers_decode_or_raise_schema_error(value: bytes, record_type: type) -> None:
    headers = [(H_SCHEMA, record_type.NAME.encode()), (H_VERSION, b"5")]
    with pytest.raises(SchemaError):
        decode(value, record_type, headers)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "payload: the message has no value (a tombstone, or empty)"),
        (b'{"collection": "c", "text": "\\ud800"}', "RawDocument.text: not valid Unicode: a lone surrogate \\ud800"),
        (b'{"collection": "c", "text": "t", "attrs": [1, 2]}', "RawDocument.attrs: expected an object of strings"),
        (b'{"collection": "c"}', "RawDocument.text: missing (required: collection, text)"),
        (b"[" * 50_000 + b"]" * 50_000, "payload: JSON nested too deeply to read"),
        (b'{"collection": "c", "text": "t", "colour": 1}', "RawDocument.colour: not a field of RawDocument"),
        (b'{"collection": "c", "text": "t", "produced_at": "now"}', "RawDocument.produced_at: expected an integer"),
        (b'{"collection": "' + b"c" * 5000 + b'", "text": "t"}', "RawDocument.collection: 5,000 characters"),
        (b'{"collection": "c", "text": "t", "n": 1' + b"0" * 5000 + b"}", "payload: invalid JSON"),
    ],
)
def test_each_poison_shape_is_refused_in_the_producers_terms(value: bytes | None, reason: str) -> None:
    outcome = _parse(value)
    assert isinstance(outcome, str) and reason in outcome
    assert "Error" not in outcome and "__init__" not in outcome, "no Python in a reason"


def test_scalars_in_attrs_are_kept_as_json_writes_them() -> None:
    [raw] = _parse(b'{"collection": "c", "text": "t", "attrs": {"n": 2, "ok": true, "x": 0.5, "s": "v"}}')
    assert raw.attrs == (("n", "2"), ("ok", "true"), ("x", "0.5"), ("s", "v"))


def test_the_journal_charges_a_death_to_a_record_alone_and_suspects_a_batch(tmp_path: Path) -> None:
    part = ("tasks", 0)
    first = Journal(tmp_path, "longtide-rollout")
    first.begin([(part, 3)])
    first.end()  # 3 was handled
    first.begin([(part, 4), (part, 5)])  # ... and the process dies handling 4 and 5 together
    second = Journal(tmp_path, "longtide-rollout")
    assert [second.deaths(part, o) for o in (3, 4, 5)] == [0, 0, 0]
    assert [second.suspect(part, o) for o in (3, 4, 5, 6)] == [False, True, True, False]
    second.begin([(part, 4)])  # handled alone now, and it kills this process too
    third = Journal(tmp_path, "longtide-rollout")
    assert [third.deaths(part, o) for o in (4, 5)] == [1, 0], "the culprit, named"
    third.committed({part: 5})  # committed past 4: forgotten; 5 is still a suspect
    fourth = Journal(tmp_path, "longtide-rollout")
    assert fourth.deaths(part, 4) == 0 and fourth.suspect(part, 5)
    fourth.begin([(part, 5)])
    fourth.close()  # a clean stop while 5 was being handled: not 5's fault
    assert Journal(tmp_path, "longtide-rollout").deaths(part, 5) == 0
    assert Journal(tmp_path, "other-group").suspect(part, 5) is False, "each consumer group has its own"
    assert Journal(None, "longtide-rollout").suspect(part, 5) is False, "no directory: nothing counted"


def test_a_partition_taken_away_is_read_again_when_it_comes_back(tmp_path: Path) -> None:
    """Two holders of one group take turns on a partition (a rebalance): each reads the file
    again on getting it back, so neither misses the other's death nor writes over its counts."""
    part = ("docs.raw", 0)
    mine, theirs = Journal(tmp_path, "g"), Journal(tmp_path, "g")
    assert mine.deaths(part, 7) == 0
    mine.forget([part])  # revoked
    theirs.begin([(part, 7)])  # ... the other holder dies handling 7 alone
    assert mine.deaths(part, 7) == 1, "read again on the way back"


def test_a_long_batch_in_flight_is_kept_whole(tmp_path: Path) -> None:
    part = ("tasks", 3)
    journal = Journal(tmp_path, "g")
    journal.begin([(part, 10_000_000 + o) for o in range(2000)])  # ~18 KB of offsets
    after = Journal(tmp_path, "g")
    assert after.suspect(part, 10_000_000) and after.suspect(part, 10_001_999)


def test_a_reason_quoting_text_utf8_cannot_carry_still_makes_a_dead_letter() -> None:
    """A reason may quote the record (an unknown field named with a lone surrogate): the dead letter
    escapes it, so dead-lettering the record cannot fail in turn (found by the operator fuzz)."""
    from schemas import encode
    from streams.processor import dead_letter

    outcome = _parse(b'{"collection": "c", "text": "t", "\\u8a9e\\ud800": 1}')
    assert isinstance(outcome, str) and "RawDocument.語\ud800: not a field" in outcome
    letter = dead_letter(_message(b"x"), actor="ingest-0", group="longtide-ingest", error=f"decode: {outcome}")
    assert "RawDocument.語\\ud800: not a field" in letter.error
    assert decode(encode([letter]), DeadLetter) == [letter]
