"""The memory actor's Prometheus series.

Per-collection series carry a `collection` label for at most `memory.metric_collections`
collections at a time (the most recently active; an evicted collection's series are removed), so
cardinality stays bounded however many collections arrive.
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import Counter, Gauge, Histogram

DOCS_READ = Counter("longtide_memory_documents_read", "Documents read into memory.", ["actor"])
DOCS_SKIPPED = Counter(
    "longtide_memory_documents_skipped", "Documents already in the store when redelivered (not read again).", ["actor"]
)
CHUNKS = Counter("longtide_memory_chunks_read", "Chunks read (one per question and chunk).", ["actor"])
CATCH_UP_READS = Counter(
    "longtide_memory_catch_up_reads", "Documents read for questions asked after them (one per question).", ["actor"]
)
MEMORY_TOKENS = Histogram(
    "longtide_memory_memory_tokens",
    "Tokens of a memory after a document was read.",
    ["actor"],
    buckets=(0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
READ_SECONDS = Histogram(
    "longtide_memory_read_seconds",
    "Time to read one document (every question).",
    ["actor"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LAG = Gauge(
    "longtide_memory_document_lag_seconds",
    "Seconds between a document's ingestion and its reading into memory (the latest document).",
    ["actor"],
)
QUERIES = Counter("longtide_memory_queries", "Questions answered, being read for, or refused.", ["actor", "outcome"])
QUERY_OUTCOMES = ("answered", "reading", "unknown_collection", "empty_memory", "too_many_questions", "rejected")
PENDING = Gauge(
    "longtide_memory_reads_pending", "Reads asked questions still owe (one per question and document).", ["actor"]
)
COLLECTIONS = Gauge("longtide_memory_collections", "Collections with a memory.", ["actor"])
COLLECTION_DOCS = Gauge(
    "longtide_memory_collection_documents_read",
    "Documents of the collection read into its memories.",
    ["actor", "collection"],
)
COLLECTION_PENDING = Gauge(
    "longtide_memory_collection_reads_pending",
    "Reads the collection's asked questions still owe before they answer.",
    ["actor", "collection"],
)
COLLECTION_UPDATED = Gauge(
    "longtide_memory_collection_updated_timestamp_seconds",
    "When the collection's memories last changed (memory age: time() minus this).",
    ["actor", "collection"],
)
PER_COLLECTION = (COLLECTION_DOCS, COLLECTION_PENDING, COLLECTION_UPDATED)


class CollectionSeries:
    """The per-collection series of the `limit` most recently active collections."""

    def __init__(self, actor: str, limit: int) -> None:
        self.actor = actor
        self.limit = limit
        self._shown: OrderedDict[str, float] = OrderedDict()

    def update(self, progress: list[tuple[str, int, int, float]]) -> None:
        """`progress`: (collection, documents read, reads pending, updated at) per collection."""
        pending_total = 0
        for collection, _, pending, updated in sorted(progress, key=lambda row: row[3]):
            pending_total += pending
            self._shown[collection] = updated
            self._shown.move_to_end(collection)
        while len(self._shown) > self.limit:
            gone, _ = self._shown.popitem(last=False)
            for series in PER_COLLECTION:
                series.remove(self.actor, gone)
        for collection, read, pending, updated in progress:
            if collection in self._shown:
                COLLECTION_DOCS.labels(self.actor, collection).set(read)
                COLLECTION_PENDING.labels(self.actor, collection).set(pending)
                COLLECTION_UPDATED.labels(self.actor, collection).set(updated)
        PENDING.labels(self.actor).set(pending_total)
        COLLECTIONS.labels(self.actor).set(len(progress))
