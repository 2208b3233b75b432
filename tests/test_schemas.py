"""Schemas: round trips, headers, and errors that name the field."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from schemas import (
    SCHEMA_VERSION,
    Document,
    RawDocument,
    Rollout,
    SchemaError,
    Task,
    decode,
    encode,
    from_mapping,
    headers_for,
)
from tests.samples import ROLLOUT, SAMPLES


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip_through_arrow_ipc(record: object) -> None:
    payload = encode([record])
    assert decode(payload, type(record), headers_for(record)) == [record]


def test_headers_carry_type_version_and_id() -> None:
    assert dict(headers_for(ROLLOUT)) == {
        "longtide.schema": b"Rollout",
        "longtide.schema_version": str(SCHEMA_VERSION).encode(),
        "longtide.record_id": b"t/0",
    }


def test_wrong_schema_version_is_named() -> None:
    headers = [("longtide.schema", b"Rollout"), ("longtide.schema_version", str(SCHEMA_VERSION + 1).encode())]
    with pytest.raises(
        SchemaError, match=f"schema_version: got '{SCHEMA_VERSION + 1}', this build reads {SCHEMA_VERSION}"
    ):
        decode(encode([ROLLOUT]), Rollout, headers)


def test_wrong_record_type_names_the_missing_field() -> None:
    with pytest.raises(SchemaError, match="Task field task_id: missing"):
        decode(encode([SAMPLES[0]]), Task)


def test_wrong_field_type_is_named() -> None:
    schema = pa.schema([(f.name, pa.string() if f.name == "n_tokens" else f.type) for f in Document.SCHEMA])
    row = {f.name: getattr(SAMPLES[1], f.name) for f in Document.SCHEMA}
    row |= {"n_tokens": "one", "attrs": []}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_batch(pa.RecordBatch.from_pylist([row], schema=schema))
    with pytest.raises(SchemaError, match="field n_tokens: type string where int64 is expected"):
        decode(sink.getvalue().to_pybytes(), Document)


def test_garbage_payload_is_rejected() -> None:
    with pytest.raises(SchemaError, match="not an Arrow IPC stream"):
        decode(b"not arrow at all", Task)


def test_validation_names_field_and_problem() -> None:
    bad = dataclasses.replace(ROLLOUT, behaviour_logprobs=(-0.5,))
    with pytest.raises(SchemaError, match=r"Rollout.behaviour_logprobs: length 1 != response length 2"):
        decode(encode([bad]), Rollout)


def test_evidence_must_lie_in_the_context_and_a_turn_within_its_trajectory() -> None:
    with pytest.raises(SchemaError, match=r"Task.evidence: spans not in the context: \['x y w .'\]"):
        decode(encode([dataclasses.replace(SAMPLES[2], evidence=("x y w .",))]), Task)
    with pytest.raises(SchemaError, match=r"Rollout.turn_index: 3 not in \[0, turns=3\)"):
        decode(encode([dataclasses.replace(ROLLOUT, turns=3, turn_index=3)]), Rollout)


def test_from_mapping_rejects_unknown_and_empty() -> None:
    assert from_mapping(RawDocument, {"collection": "c", "text": "t", "attrs": {"k": "v"}}).attrs == (("k", "v"),)
    with pytest.raises(SchemaError, match="RawDocument.colour: not a field"):
        from_mapping(RawDocument, {"collection": "c", "text": "t", "colour": 1})
    with pytest.raises(SchemaError, match="RawDocument.text: must not be empty"):
        from_mapping(RawDocument, {"collection": "c", "text": "  "})
    with pytest.raises(SchemaError, match="RawDocument.text: expected a string, got a number"):
        from_mapping(RawDocument, {"collection": "c", "text": 5})
