"""Ingest: `docs.raw` (a JSON object or an Arrow RawDocument per message) -> `docs`.

The document id is the sha256 of collection and text, so the same document sent twice (by a
retrying producer, or a replay) is dropped as a duplicate. Long texts go to the blob store.
Whatever a message holds, it becomes a document or a dead letter that says what was wrong in
the producer's terms (the field, what it expects, what came): a tombstone, invalid UTF-8 or
JSON, JSON nested too deeply, a missing or mistyped field, text UTF-8 cannot carry (a lone
surrogate escape), a field over its `ingest.*` size limit, a wrong schema version.

    longtide ingest notes.md data.jsonl --collection my-docs   # feeds docs.raw
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from actors.base import ProcessorActor
from actors.ingest.config import IngestConfig
from actors.ingest.metrics import DOCUMENTS, TOKENS
from schemas import Document, RawDocument, SchemaError, decode, from_mapping, now_ms
from schemas.codec import H_SCHEMA, header, json_kind
from streams.blobs import ClaimCheck
from streams.kafka import Message, StreamsConfig
from streams.processor import Output
from streams.topics import DOCS, DOCS_RAW


def content_id(collection: str, text: str) -> str:
    return hashlib.sha256(f"{collection}\0{text}".encode()).hexdigest()


def parse_raw(message: Message) -> list[RawDocument]:
    """A `docs.raw` message -> RawDocument: Arrow when it carries a schema header, else a JSON
    object. Raises SchemaError saying what is wrong, in the producer's terms."""
    if header(message.headers, H_SCHEMA) is not None:
        return decode(message.value, RawDocument, message.headers)
    if not message.value:
        raise SchemaError("payload: the message has no value (a tombstone, or empty); send a JSON document")
    try:
        text = message.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"payload: invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"payload: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise SchemaError("payload: JSON nested too deeply to read (a document is one flat object)") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SchemaError(f"payload: invalid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"payload: expected a JSON object, got {json_kind(obj)}")
    return [from_mapping(RawDocument, obj)]


def check_sizes(raw: RawDocument, config: IngestConfig) -> None:
    """SchemaError when a field is larger than its `ingest.*` limit (the record stays out of `docs`)."""
    size = len(raw.text.encode("utf-8"))
    if size > config.max_text_bytes:
        raise SchemaError(f"RawDocument.text: {size:,} bytes, over ingest.max_text_bytes ({config.max_text_bytes:,})")
    for name in ("collection", "source", "doc_id"):
        chars = len(getattr(raw, name))
        if chars > config.max_field_chars:
            raise SchemaError(
                f"RawDocument.{name}: {chars:,} characters, over ingest.max_field_chars ({config.max_field_chars:,})"
            )
    attrs = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in raw.attrs)
    if attrs > config.max_attrs_bytes:
        raise SchemaError(
            f"RawDocument.attrs: {attrs:,} bytes, over ingest.max_attrs_bytes ({config.max_attrs_bytes:,})"
        )


def raw_key(raw: RawDocument) -> str:
    return content_id(raw.collection, raw.text)


class IngestActor(ProcessorActor):
    """Turns raw documents into `Document` records on `docs`."""

    KIND = "ingest"

    def __init__(
        self,
        *,
        name: str,
        config: IngestConfig,
        streams: StreamsConfig,
        claim: ClaimCheck,
        count_tokens: Callable[[str], int],
    ) -> None:
        self.config = config
        self.claim = claim
        self.count_tokens = count_tokens
        for metric in (DOCUMENTS, TOKENS):  # every series exists from the start, at 0
            metric.labels(name)
        self._connect(name=name, streams=streams, topic=DOCS_RAW.name, decoder=self.parse, dedup_key=raw_key)
        self._pace(
            streams, source=DOCS_RAW.name, downstream=DOCS.name, reader_kind="synthesis", bound=config.max_docs_ahead
        )

    def parse(self, message: Message) -> list[RawDocument]:
        """`parse_raw`, then the size limits: what fails either is dead-lettered at decode."""
        raws = parse_raw(message)
        for raw in raws:
            check_sizes(raw, self.config)
        return raws

    def handle(self, raws: list[RawDocument]) -> list[Output]:
        return [self._ingest(raw) for raw in raws]

    def _ingest(self, raw: RawDocument) -> Output:
        text, ref = self.claim.put_text(raw.text)
        n_tokens = self.count_tokens(raw.text)
        doc = Document(
            doc_id=raw_key(raw),
            collection=raw.collection,
            text=text,
            text_ref=ref,
            n_tokens=max(1, n_tokens),
            source=raw.source,
            attrs=raw.attrs,
            ingested_at=now_ms(),
        )
        doc.validate()
        DOCUMENTS.labels(self.name).inc()
        TOKENS.labels(self.name).inc(n_tokens)
        return Output(DOCS.name, [doc], key=raw.collection.encode())
