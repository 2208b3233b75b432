"""Arrow IPC encoding of records, Kafka headers, and validation on decode.

A Kafka message on an internal topic is one Arrow IPC stream holding one record batch of one
record type. Its headers say which type (`longtide.schema`), which schema version (`longtide.schema_version`)
and the record id (`longtide.record_id`), so a consumer can reject a message before parsing it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from schemas.records import RECORD_TYPES, SCHEMA_VERSION, SchemaError

Headers = list[tuple[str, bytes]]

H_PREFIX = "longtide."
"""Longtide's own headers are in this namespace; any other header is a producer's own and is
ignored (a foreign JSON producer may send `schema`, `id` or `content-type` headers)."""
H_SCHEMA = f"{H_PREFIX}schema"
H_VERSION = f"{H_PREFIX}schema_version"
H_RECORD_ID = f"{H_PREFIX}record_id"


def _is_pairs(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) and pa.types.is_struct(arrow_type.value_type)


def _to_row(record: Any) -> dict[str, Any]:
    row = {}
    for f in record.SCHEMA:
        value = getattr(record, f.name)
        if _is_pairs(f.type):
            value = [{"key": k, "value": v} for k, v in value]
        elif isinstance(value, tuple):
            value = list(value)
        row[f.name] = value
    return row


def _from_row(cls: type, row: dict[str, Any]) -> Any:
    kwargs = {}
    for f in cls.SCHEMA:
        value = row[f.name]
        if _is_pairs(f.type):
            value = tuple((item["key"], item["value"]) for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def record_id(record: Any) -> str:
    return str(getattr(record, record.ID_FIELD))


def encode(records: Sequence[Any]) -> bytes:
    """Records of one type -> one Arrow IPC stream (one record batch)."""
    if not records:
        raise ValueError("encode() needs at least one record")
    cls = type(records[0])
    if any(type(r) is not cls for r in records):
        raise ValueError(f"encode() needs records of one type, got a mix with {cls.__name__}")
    batch = pa.RecordBatch.from_pylist([_to_row(r) for r in records], schema=cls.SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, cls.SCHEMA) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def headers_for(record: Any) -> Headers:
    return [
        (H_SCHEMA, record.NAME.encode()),
        (H_VERSION, str(SCHEMA_VERSION).encode()),
        (H_RECORD_ID, record_id(record).encode()),
    ]


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None


def check_headers(headers: Sequence[tuple[str, bytes]] | None, expected: type) -> None:
    """Raise SchemaError unless the headers announce `expected` at this build's version."""
    version = header(headers, H_VERSION)
    if version is None:
        raise SchemaError(f"header {H_VERSION}: missing (expected {SCHEMA_VERSION})")
    if version != str(SCHEMA_VERSION):
        raise SchemaError(f"header {H_VERSION}: got {version!r}, this build reads {SCHEMA_VERSION}")
    name = header(headers, H_SCHEMA)
    if name != expected.NAME:
        raise SchemaError(f"header {H_SCHEMA}: got {name!r}, expected {expected.NAME!r}")


def _schema_difference(got: pa.Schema, want: pa.Schema) -> str:
    for f in want:
        if f.name not in got.names:
            return f"field {f.name}: missing"
        other = got.field(f.name).type
        if other != f.type:
            return f"field {f.name}: type {other} where {f.type} is expected"
    extra = [n for n in got.names if n not in want.names]
    if extra:
        return f"field {extra[0]}: not in the schema"
    return "fields out of order"


def decode(payload: bytes, expected: type, headers: Sequence[tuple[str, bytes]] | None = None) -> list[Any]:
    """Arrow IPC bytes -> validated records of type `expected`; SchemaError says what is wrong.

    With `headers` given (a Kafka message), they are checked before the payload is parsed.
    """
    if headers is not None:
        check_headers(headers, expected)
    try:
        table = pa.ipc.open_stream(payload).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"payload: not an Arrow IPC stream ({exc})") from exc
    if table.schema != expected.SCHEMA:
        raise SchemaError(f"{expected.NAME} {_schema_difference(table.schema, expected.SCHEMA)}")
    records = [_from_row(expected, row) for row in table.to_pylist()]
    for record in records:
        record.validate()
    return records


def from_mapping(cls: type, data: dict[str, Any]) -> Any:
    """Build and validate a record from a plain mapping (e.g. parsed JSON).

    Unknown keys and wrong types raise SchemaError naming the field.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(f"{cls.NAME}.{unknown[0]}: not a field of {cls.NAME}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if hint is str and not isinstance(value, str):
            raise SchemaError(f"{cls.NAME}.{name}: expected a string, got {type(value).__name__}")
        if typing.get_origin(hint) is tuple and isinstance(value, dict):
            value = tuple((str(k), str(v)) for k, v in value.items())
        kwargs[name] = value
    try:
        record = cls(**kwargs)
    except TypeError as exc:
        raise SchemaError(f"{cls.NAME}: {exc}") from exc
    record.validate()
    return record


def record_type(name: str) -> type:
    try:
        return RECORD_TYPES[name]
    except KeyError:
        raise SchemaError(f"unknown record type {name!r}") from None
