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


def header(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return (value or b"").decode("utf-8", errors="replace")
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
    Raises only SchemaError, whatever the bytes: a tombstone, garbage, or an Arrow stream of
    another shape.
    """
    if headers is not None:
        check_headers(headers, expected)
    if not payload:
        raise SchemaError("payload: the message has no value (a tombstone, or empty)")
    try:
        table = pa.ipc.open_stream(payload).read_all()
    except Exception as exc:  # noqa: BLE001 - Arrow raises several types for bytes that are not IPC
        raise SchemaError(f"payload: not an Arrow IPC stream of {expected.NAME} records ({exc})") from None
    if table.schema != expected.SCHEMA:
        raise SchemaError(f"{expected.NAME} {_schema_difference(table.schema, expected.SCHEMA)}")
    if table.num_rows == 0:
        raise SchemaError(f"payload: an Arrow stream with no {expected.NAME} records")
    for name in table.column_names:  # Arrow types are nullable; no field of a record is
        if table.column(name).null_count:
            raise SchemaError(f"{expected.NAME}.{name}: null, where a value is required")
    try:
        records = [_from_row(expected, row) for row in table.to_pylist()]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a null inside a list or struct
        raise SchemaError(f"{expected.NAME}: a value of the wrong shape ({exc})") from None
    for record in records:
        record.validate()
    return records


def json_kind(value: Any) -> str:
    """A JSON value's kind as a person says it: an object, an array, a string, a number, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_unicode(where: str, text: str) -> None:
    """SchemaError when `text` holds what UTF-8 cannot carry (a lone surrogate, from a JSON
    escape such as "\\ud800"): every text Longtide stores and sends is UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start].encode("unicode_escape").decode()
        raise SchemaError(f"{where}: not valid Unicode: a lone surrogate {bad} at character {exc.start}") from None


def _pairs(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    """A JSON object of scalars -> key/value string pairs (numbers and booleans as JSON writes them)."""
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected an object of strings, got {json_kind(value)}")
    pairs = []
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = repr(item)
        elif not isinstance(item, str):
            raise SchemaError(f"{where}.{key}: expected a string, number or boolean, got {json_kind(item)}")
        check_unicode(f"{where}.{key}", key)
        check_unicode(f"{where}.{key}", item)
        pairs.append((str(key), item))
    return tuple(pairs)


def from_mapping(cls: type, data: dict[str, Any]) -> Any:
    """Build and validate a record from a plain mapping (e.g. parsed JSON).

    Unknown keys, missing required fields, wrong types and text UTF-8 cannot carry raise
    SchemaError naming the field, what it expects and what came.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(f"{cls.NAME}.{unknown[0]}: not a field of {cls.NAME} (its fields: {', '.join(fields)})")
    required = [
        n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise SchemaError(f"{cls.NAME}.{missing[0]}: missing (required: {', '.join(required)})")
    kwargs = {}
    for name, value in data.items():
        hint, where = hints[name], f"{cls.NAME}.{name}"
        if hint is str:
            if not isinstance(value, str):
                raise SchemaError(f"{where}: expected a string, got {json_kind(value)}")
            check_unicode(where, value)
        elif hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SchemaError(f"{where}: expected an integer, got {json_kind(value)}")
        elif typing.get_origin(hint) is tuple and hint == tuple[tuple[str, str], ...]:
            value = _pairs(where, value)
        else:
            raise SchemaError(f"{where}: cannot be given as JSON")
        kwargs[name] = value
    record = cls(**kwargs)
    record.validate()
    return record


def record_type(name: str) -> type:
    try:
        return RECORD_TYPES[name]
    except KeyError:
        raise SchemaError(f"unknown record type {name!r}") from None
