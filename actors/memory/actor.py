"""Memory: `docs` -> each collection's memories, kept current with the latest policy -> `memory`.

For every document that arrives, the actor reads it chunk by chunk with the memory agent
(`actors.memory_agent`, greedy), once per standing question of its collection and once for the
collection summary, starting from the collection's current memory for that question. The new
memories, the read and the `docs` offset are stored in one SQLite transaction
(`actors.memory.store`), then published on `memory` (one `MemoryUpdate` per question).

Policy updates are followed lazily: the actor loads every newer announced version between
documents, and each memory records the version that last wrote it. A memory is not re-read
when the policy changes; the next document of its collection is read with the newest policy.
(Re-reading a whole collection per version would cost its full length at every update.)

Restarts: the consumer group's committed offsets may lag the store; documents below the
store's offsets are skipped, so none is read twice and none is skipped.

Questions are answered from the current memory alone (`ask`): by the HTTP endpoint this actor
serves (`actors.memory.http`) and `longtide ask`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from actors.base import ProcessorActor
from actors.collective import WeightsUnavailable
from actors.engines import make_engine
from actors.memory.config import MemoryConfig
from actors.memory.store import Memory, MemoryStore
from actors.memory_agent import Job, MemoryAgentConfig, read_chunked, split_chunks
from actors.modeling import token_counter
from actors.verifiers import extract_answer
from schemas import Document, MemoryUpdate
from streams.blobs import ClaimCheck
from streams.kafka import Consumer, Message, StreamsConfig
from streams.logs import newest_of_run, read_all
from streams.processor import Output, arrow_decoder
from streams.topics import DOCS, MEMORY, POLICY

log = logging.getLogger(__name__)

DOCS_READ = Counter("longtide_memory_documents_read", "Documents read into memory.", ["actor"])
DOCS_SKIPPED = Counter(
    "longtide_memory_documents_skipped", "Documents already in the store when redelivered (not read again).", ["actor"]
)
CHUNKS = Counter("longtide_memory_chunks_read", "Chunks read (one per question and chunk).", ["actor"])
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
VERSION = Gauge("longtide_memory_policy_version", "Policy version loaded (-1: the base model).", ["actor"])
QUERIES = Counter("longtide_memory_queries", "Questions answered or refused.", ["actor", "outcome"])
QUERY_OUTCOMES = ("answered", "unknown_collection", "empty_memory", "rejected")


def question_key(question: str) -> str:
    """A short stable id of a standing question (memory ids survive config reordering)."""
    return hashlib.sha256(" ".join(question.split()).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Arrived:
    """A document with where it lies on `docs` (the store records offsets)."""

    doc: Document
    partition: int
    offset: int


class QueryError(ValueError):
    """A question that cannot be answered from memory; `status` is the HTTP status to return."""

    def __init__(self, message: str, status: int, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class MemoryActor(ProcessorActor):
    KIND = "memory"

    def __init__(
        self,
        *,
        name: str,
        config: MemoryConfig,
        agent: MemoryAgentConfig,
        streams: StreamsConfig,
        model_path: str,
        claim: ClaimCheck,
        run_dir: Path,
        dtype: str = "float32",
        run_id: str = "",
    ) -> None:
        self.config = config
        self.streams = streams
        self.agent = agent
        self.claim = claim
        self.run_id = run_id
        for outcome in QUERY_OUTCOMES:
            QUERIES.labels(name, outcome)  # every series exists from the start, at 0
        for metric in (DOCS_READ, DOCS_SKIPPED, CHUNKS):
            metric.labels(name)
        self.store = MemoryStore(run_dir / config.store)
        self.engine = make_engine(config.engine, model_path, dtype, config.vllm)
        self.count_tokens = token_counter(self.engine.tokenizer)
        self.engine_lock = threading.Lock()
        """The actor's loop and the query endpoint share the engine."""
        self.version = -1
        self.policy_reader = Consumer(
            streams, group_id=None, topics=[POLICY.name], client_id=f"{name}-policy", assign_all=True
        )
        decode = arrow_decoder(Document)
        self._applied = self.store.applied()

        def arrived(message: Message) -> list[Arrived]:
            if message.offset < self._applied.get(message.partition, 0):
                DOCS_SKIPPED.labels(self.name).inc()
                return []  # in the store already (a safety net: the consumer starts past them)
            return [Arrived(d, message.partition, message.offset) for d in decode(message)]

        self._connect(
            name=name,
            streams=streams,
            topic=DOCS.name,
            decoder=arrived,
            dedup_key=lambda a: a.doc.doc_id,
            assign_all=True,
        )
        # The store, not the group's commits, says where reading resumes: every partition from
        # the offset after its last document read, or from the start for a fresh store (a new
        # run reads every document the log holds with its own policy).
        self.processor.consumer.seek(
            {(DOCS.name, p): self._applied.get(p, 0) for _, p in self.processor.consumer.assigned()}
        )
        DOCS_READ.labels(name)
        VERSION.labels(name).set(-1)
        self.server: Any = None

    # -- following the policy ------------------------------------------------------------------
    def sync_policy(self, records: list[Message] | None = None) -> None:
        """Load the newest announced weights of this run, if newer (between documents);
        `records`: what to look through instead of the next poll (at start: the whole topic)."""
        latest, _ = newest_of_run(self.policy_reader.poll(0) if records is None else records, self.run_id)
        if latest is None or latest.version <= self.version:
            return
        try:
            with self.engine_lock:
                self.engine.load_published(latest.weights_ref)
                self.version = latest.version  # (under the lock: `ask` reports the weights it used)
        except (WeightsUnavailable, ValueError) as exc:  # a newer one is announced later
            log.warning("%s: policy version %d not loaded: %s", self.name, latest.version, exc)
            return
        VERSION.labels(self.name).set(self.version)

    # -- reading ---------------------------------------------------------------------------------
    def handle(self, records: list[Arrived]) -> list[Output]:
        for arrived in records:
            self._read(arrived)  # publishes its own updates (before the store commits)
        return []

    def _read(self, arrived: Arrived) -> None:
        """Read one document into every memory of its collection (raises for a document that
        cannot be chunked: the processor dead-letters it)."""
        doc = arrived.doc
        start = time.perf_counter()
        chunks = tuple(
            split_chunks(self.claim.get_text(doc.text, doc.text_ref), self.agent.chunk_tokens, self.count_tokens)
        )
        current = self.store.memories(doc.collection)
        questions = self.config.questions_of(doc.collection)
        jobs = [Job(q, chunks, current[q].text if q in current else "") for q in questions]
        with self.engine_lock:
            read = read_chunked(self.engine, jobs, self.agent, n=1, temperature=0.0, top_p=1.0, answer=False)
        memories = []
        for question, [trajectory] in zip(questions, read, strict=True):
            before = current.get(question)
            text = trajectory[-1].sample.text.strip()
            memories.append(
                Memory(
                    collection=doc.collection,
                    question=question,
                    text=text,
                    revision=(before.revision if before else 0) + 1,
                    policy_version=self.version,
                    docs_covered=(before.docs_covered if before else 0) + 1,
                    last_doc_id=doc.doc_id,
                )
            )
            MEMORY_TOKENS.labels(self.name).observe(self.count_tokens(text) if text else 0)
        updates = [
            MemoryUpdate(
                memory_id=f"{m.collection}/{question_key(m.question)}/{m.revision}",
                collection=m.collection,
                question=m.question,
                revision=m.revision,
                doc_id=doc.doc_id,
                source_partition=arrived.partition,
                source_offset=arrived.offset,
                chunks=len(chunks),
                docs_covered=m.docs_covered,
                memory_text=m.text,
                policy_version=m.policy_version,
            )
            for m in memories
        ]
        # Published and acknowledged before the store commits the read: a crash in between
        # re-reads the document and publishes the same ids again (consumers drop duplicates),
        # instead of losing the updates.
        self.processor.producer.send_records(MEMORY.name, updates, key=doc.collection.encode()).get(timeout=30)
        self.store.record(
            memories, doc_id=doc.doc_id, partition=arrived.partition, offset=arrived.offset, policy_version=self.version
        )
        self._applied[arrived.partition] = arrived.offset + 1
        DOCS_READ.labels(self.name).inc()
        CHUNKS.labels(self.name).inc(len(chunks) * len(questions))
        READ_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        LAG.labels(self.name).set(max(0.0, time.time() - doc.ingested_at / 1000))

    # -- answering ---------------------------------------------------------------------------
    def ask(self, collection: str, question: str) -> dict[str, Any]:
        """Answer from the collection's current memory: the standing question's memory when the
        question is one, else the summary's. Raises `QueryError` (unknown collection, empty
        memory) instead of guessing."""
        question = " ".join(question.split())
        memories = self.store.memories(collection)
        if not memories:
            known = self.store.collections()
            raise QueryError(
                f"unknown collection {collection!r}: no document of it has been read; "
                f"known: {known[:20]}{' …' if len(known) > 20 else ''}",
                404,
                "unknown_collection",
            )
        memory = memories.get(question) or memories.get(" ".join(self.config.summary_question.split()))
        if memory is None or not memory.text:
            which = question if question in memories else f"the summary ({self.config.summary_question!r})"
            raise QueryError(
                f"collection {collection!r} has an empty memory for {which} after "
                f"{max(m.docs_covered for m in memories.values())} documents: nothing to answer from",
                409,
                "empty_memory",
            )
        with self.engine_lock:
            [[trajectory]] = read_chunked(
                self.engine, [Job(question, (), memory.text)], self.agent, n=1, temperature=0.0, top_p=1.0
            )
            policy_version = self.version
        total, documents = self.store.documents(collection)
        QUERIES.labels(self.name, "answered").inc()
        return {
            "collection": collection,
            "question": question,
            "answer": extract_answer(trajectory[-1].sample.text),
            "memory": {
                "question": memory.question,
                "text": memory.text,
                "revision": memory.revision,
                "policy_version": memory.policy_version,
            },
            "policy_version": policy_version,
            "documents": {"count": total, "latest": documents[-50:]},
        }

    # -- loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        from actors.memory.http import serve  # FastAPI/uvicorn: loaded where the endpoint runs

        self.server = serve(self, self.config.http_host, self.config.http_port, self.config.max_request_bytes)
        # the newest version announced so far before the first document: a restarted actor must
        # not overwrite memories a trained policy wrote with the base model's reading
        self.sync_policy(read_all(self.streams, POLICY.name, idle_ms=300))
        try:
            while not stop.is_set():
                self.sync_policy()
                self.processor.step(max_records=4)
        finally:
            self.server.stop()

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            "policy_version": self.version,
            "collections": len(self.store.collections()),
            "documents_read": self.store.read_count(),
            "http": self.server.address if self.server else "",
        }

    def close(self) -> None:
        super().close()
        self.policy_reader.close()
        self.store.close()
        self.engine.close()
