"""Feeding `docs.raw`: files from disk (`longtide ingest`) and the demo's synthetic worlds.

Both send plain JSON objects, as any external producer would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from actors.world import make_world
from streams.kafka import Producer, StreamsConfig
from streams.topics import DOCS_RAW

SAMPLE_CORPUS = Path(__file__).resolve().parent / "corpus"
"""The shipped sample corpus: reports with tables, field notes, a CSV (written for the project)."""
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
FORMAT_OF_SUFFIX = {".csv": "csv", ".html": "html", ".htm": "html"}
"""Files sent with a `format` attribute, which tells synthesis how to read their tables."""


def documents_from_path(path: Path, collection: str) -> Iterator[dict]:
    """A text, markdown, CSV or HTML file is one document; a .jsonl file holds one JSON
    document per line; a folder is every such file under it (others are skipped)."""
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if child.suffix in TEXT_SUFFIXES | FORMAT_OF_SUFFIX.keys() | {".jsonl"}:
                yield from documents_from_path(child, collection)
        return
    if path.suffix in FORMAT_OF_SUFFIX:
        yield {
            "collection": collection,
            "text": path.read_text(encoding="utf-8"),
            "source": str(path),
            "attrs": {"format": FORMAT_OF_SUFFIX[path.suffix]},
        }
    elif path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line")
            obj.setdefault("collection", collection)
            obj.setdefault("source", f"{path}:{number}")
            yield obj
    elif path.suffix in TEXT_SUFFIXES:
        yield {"collection": collection, "text": path.read_text(encoding="utf-8"), "source": str(path)}
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r} (text, markdown, CSV, HTML or .jsonl)")


def world_documents(*, worlds: int, entities_per_world: int, seed: int) -> Iterator[dict]:
    """One collection per world, one document per entity."""
    for w in range(seed, seed + worlds):
        world = make_world(w, entities_per_world)
        for entity in world.entities:
            yield {"collection": f"world-{w}", "text": world.document(entity), "source": "demo-feed"}


MALFORMED: list[tuple[str, bytes, list[tuple[str, bytes]]]] = [
    ("invalid JSON", b'{"collection": "x", "text": ', []),
    ("invalid UTF-8", b'{"collection": "x", "text": "\xff\xfe"}', []),
    ("empty text", b'{"collection": "x", "text": "   "}', []),
    ("wrong schema version", b"not arrow", [("longtide.schema", b"RawDocument"), ("longtide.schema_version", b"99")]),
]
"""One record of each kind the ingest actor must dead-letter (used by the demo)."""


def send_json(streams: StreamsConfig, docs: Iterator[dict], *, client_id: str = "longtide-feed") -> int:
    producer = Producer(streams, client_id=client_id)
    sent = 0
    try:
        for doc in docs:
            producer.send(DOCS_RAW.name, json.dumps(doc).encode(), key=doc["collection"].encode())
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def send_malformed(streams: StreamsConfig) -> int:
    producer = Producer(streams, client_id="longtide-feed-malformed")
    try:
        for _, value, headers in MALFORMED:
            producer.send(DOCS_RAW.name, value, headers=headers)
        producer.flush()
    finally:
        producer.close()
    return len(MALFORMED)
