"""Records an operator's outside test throws at the service: the poison shapes that once stopped
it, and seeded random ones (random JSON values in every field of a document, random bytes,
random text, Arrow records of the right type with random values in every field)."""

from __future__ import annotations

import json
import random
from typing import Any

import pyarrow as pa

from schemas.codec import H_SCHEMA, H_VERSION
from schemas.records import SCHEMA_VERSION

Headers = list[tuple[str, bytes]]

POISON_DOCS: dict[str, bytes | None] = {
    "lone surrogate": b'{"collection": "c", "text": "ok \\ud800"}',
    "attrs a list": b'{"collection": "c", "text": "t", "attrs": [1, 2]}',
    "tombstone": None,
    "missing text": b'{"collection": "c"}',
    "deep nesting": b'{"collection": "c", "text": "t", "attrs": {"k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    "2 MB attrs": b'{"collection": "c", "text": "t", "attrs": {"k": "' + b"x" * 2_000_000 + b'"}}',
    "text a number": b'{"collection": "c", "text": 5}',
    "an array": b"[1, 2]",
    "not JSON": b'{"collection": "c", "text": ',
    "invalid UTF-8": b'{"collection": "c", "text": "\xff"}',
}
"""Each must be dead-lettered by ingest with a reason in the producer's terms."""


def _text(rng: random.Random, most: int = 40) -> str:
    """Random text: ASCII, accents, CJK, emoji, controls, and now and then a lone surrogate."""
    pools = ("abc xyz", "éüßñ", "字漢語", "🙂🚀", "\t\n\x00\x1b", "\ud800\udfff")
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, most)))


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "text"] + (["list", "object"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 2**63, rng.randint(-(10**9), 10**9)])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-300, float("nan"), float("inf")])
    if kind == "text":
        return _text(rng)
    if kind == "list":
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_text(rng, 6): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def random_documents(rng: random.Random, n: int) -> list[bytes]:
    """`n` docs.raw messages: JSON objects whose fields hold random JSON values (sometimes the
    right kind), random bytes, and random text."""
    out = []
    fields = ("collection", "text", "source", "attrs", "doc_id", "produced_at", _text(rng, 8))
    for i in range(n):
        if i % 10 == 8:
            out.append(rng.randbytes(rng.randint(1, 200)))
        elif i % 10 == 9:
            out.append(_text(rng).encode("utf-8", "surrogatepass"))
        else:
            doc = {f: _json_value(rng) for f in rng.sample(fields, rng.randint(1, len(fields)))}
            if rng.random() < 0.4:  # often enough a document that should be ingested
                doc["collection"], doc["text"] = f"fuzz-{i}", f"fuzz text {_text(rng, 10)} {i}"
            out.append(json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"))
    return out


def _arrow_value(arrow_type: pa.DataType, rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return None  # Arrow types are nullable; a foreign writer may leave any value out
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return rng.choice(["", "x", "a" * 3000, _text(rng).encode("utf-8", "replace").decode("utf-8")])
    if pa.types.is_integer(arrow_type):
        bits = arrow_type.bit_width - 1
        return rng.choice([0, -1, 1, 2**bits - 1, -(2**bits), rng.randint(-1000, 1000)])
    if pa.types.is_floating(arrow_type):
        return rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf"), rng.random()])
    if pa.types.is_boolean(arrow_type):
        return rng.random() < 0.5
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return rng.randbytes(rng.randint(0, 64))
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return [_arrow_value(arrow_type.value_type, rng) for _ in range(rng.randint(0, 4))]
    if pa.types.is_struct(arrow_type):
        return {
            arrow_type.field(i).name: _arrow_value(arrow_type.field(i).type, rng) for i in range(arrow_type.num_fields)
        }
    raise TypeError(f"no random value for {arrow_type}")


def random_records(record_type: type, rng: random.Random, n: int) -> list[tuple[bytes, Headers]]:
    """`n` Arrow messages of `record_type` with random values in every field, under the headers
    Longtide writes (they decode; most fail validation or processing)."""
    out = []
    for _ in range(n):
        row = {f.name: _arrow_value(f.type, rng) for f in record_type.SCHEMA}
        batch = pa.RecordBatch.from_pylist([row], schema=record_type.SCHEMA)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, record_type.SCHEMA) as writer:
            writer.write_batch(batch)
        headers = [(H_SCHEMA, record_type.NAME.encode()), (H_VERSION, str(SCHEMA_VERSION).encode())]
        out.append((sink.getvalue().to_pybytes(), headers))
    return out


def garbage(record_type: type, rng: random.Random) -> list[tuple[bytes | None, Headers]]:
    """Messages no consumer of a `record_type` topic can decode: each must be dead-lettered (or,
    on `policy`, passed over and counted) by every consumer group of the topic."""
    own = [(H_SCHEMA, record_type.NAME.encode()), (H_VERSION, str(SCHEMA_VERSION).encode())]
    return [
        (None, own),  # a tombstone
        (b"garbage", own),
        (rng.randbytes(300), own),
        (b"\x00" * 8, [(H_SCHEMA, record_type.NAME.encode()), (H_VERSION, b"4")]),  # an older build's
        (b"{}", []),  # no headers at all
        (b"x", [(H_SCHEMA, b"Unheard"), (H_VERSION, str(SCHEMA_VERSION).encode()), ("own", None)]),
    ]
