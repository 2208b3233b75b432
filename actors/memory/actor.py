"""Memory: `docs` -> each collection's memories, kept current with the latest policy -> `memory`.

For every document that arrives, the actor reads it chunk by chunk with the memory agent
(`actors.memory_agent`, greedy), once per question of its collection, starting from the
collection's current memory for that question. The new memories, the read (with the text) and
the `docs` offset are stored in one SQLite transaction (`actors.memory.store`), then published
on `memory` (one `MemoryUpdate` per question).

A collection's questions are the standing ones (`memory.questions`), its summary, and every
question a user asked of it (`ask`): an asked question that is not a standing one gets a memory
of its own, which first reads the collection's documents from the start ("catch-up", between
polls, every waiting question one document further per engine call) and then reads along with
every new document. Until it has caught up, `ask` answers from the summary memory if that holds
anything, else says it is reading (HTTP 202, with how far it has come).

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

from actors.base import ProcessorActor
from actors.engines import make_engine
from actors.memory.config import MemoryConfig, normal_question
from actors.memory.metrics import (
    CATCH_UP_READS,
    CHUNKS,
    DOCS_READ,
    DOCS_SKIPPED,
    LAG,
    MEMORY_TOKENS,
    QUERIES,
    QUERY_OUTCOMES,
    READ_SECONDS,
    CollectionSeries,
)
from actors.memory.queries import QueryError
from actors.memory.store import Memory, MemoryStore, Pending
from actors.memory_agent import Job, MemoryAgentConfig, read_chunked, split_chunks
from actors.modeling import token_counter
from actors.prompts import Prompter, PromptFormat
from actors.verifiers import extract_answer
from actors.weights import PolicyFollower
from schemas import Document, MemoryUpdate
from streams.blobs import ClaimCheck
from streams.kafka import Message, StreamsConfig
from streams.logs import read_all
from streams.processor import Output, arrow_decoder
from streams.topics import DOCS, MEMORY, POLICY

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
"""How often the per-collection progress series are refreshed (a query over the store)."""


def question_key(question: str) -> str:
    """A short stable id of a question (memory ids survive config reordering)."""
    return hashlib.sha256(normal_question(question).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Arrived:
    """A document with where it lies on `docs` (the store records offsets)."""

    doc: Document
    partition: int
    offset: int


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
        prompt_format: PromptFormat = PromptFormat.AUTO,
    ) -> None:
        self.config = config
        self.streams = streams
        self.agent = agent
        self.claim = claim
        self.run_id = run_id
        for outcome in QUERY_OUTCOMES:
            QUERIES.labels(name, outcome)  # every series exists from the start, at 0
        for metric in (DOCS_READ, DOCS_SKIPPED, CHUNKS, CATCH_UP_READS):
            metric.labels(name)
        self.collection_series = CollectionSeries(name, config.metric_collections)
        self.collection_series.update([])  # the totals exist from the start, at 0
        self._progress_at = 0.0
        self.store = MemoryStore(run_dir / config.store)
        self.engine = make_engine(config.engine, model_path, dtype, config.vllm)
        self.count_tokens = token_counter(self.engine.tokenizer)
        self.prompter = Prompter(self.engine.tokenizer, prompt_format)
        self.engine_lock = threading.Lock()
        """The actor's loop and the query endpoint share the engine."""
        self.policy = PolicyFollower(
            kind="memory",
            name=name,
            streams=streams,
            run_id=run_id,
            engine=self.engine,
            initial=-1,
            lock=self.engine_lock,
            wait=False,
        )
        """Reads with the base model (version -1) until the run's first version loads, and
        with the loaded weights when a newer version's cannot be fetched."""
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
            position=self._applied,  # the store says where reading resumes: after its last document
            on_dead_letter=self._passed,
            transient_retries=0,  # handle reads each document into memory: a failure restarts from the store's position
        )
        DOCS_READ.labels(name)
        self.server: Any = None

    def _passed(self, message: Message) -> None:
        """A dead-lettered document: reading resumes after it (the store, not the group's
        commits, says where), so a restart does not meet it again."""
        self.store.passed(message.partition, message.offset)
        self._applied[message.partition] = max(self._applied.get(message.partition, 0), message.offset + 1)

    # -- reading ---------------------------------------------------------------------------------
    def handle(self, records: list[Arrived]) -> list[Output]:
        for arrived in records:
            self._read(arrived)  # publishes its own updates (before the store commits)
        return []

    def questions_of(self, collection: str) -> tuple[str, ...]:
        """What a new document of `collection` is read for: the standing questions, the summary,
        and the asked questions that have read every earlier document (the others catch up)."""
        total, _ = self.store.documents(collection, limit=0)
        caught_up = [q for q, read in self.store.asked(collection).items() if read >= total]
        return tuple(dict.fromkeys((*self.config.questions_of(collection), *caught_up)))

    def _read(self, arrived: Arrived) -> None:
        """Read one document into every memory of its collection (raises for a document that
        cannot be chunked: the processor dead-letters it)."""
        doc = arrived.doc
        start = time.perf_counter()
        chunks = tuple(
            split_chunks(self.claim.get_text(doc.text, doc.text_ref), self.agent.chunk_tokens, self.count_tokens)
        )
        current = self.store.memories(doc.collection)
        questions = self.questions_of(doc.collection)
        jobs = [Job(q, chunks, current[q].text if q in current else "") for q in questions]
        sources = [(doc.collection, doc.doc_id)] * len(jobs)
        memories = self._memories(jobs, [current.get(q) for q in questions], sources)
        updates = [self._update(m, doc.doc_id, arrived.partition, arrived.offset, len(chunks)) for m in memories]
        # Published and acknowledged before the store commits the read: a crash in between
        # re-reads the document and publishes the same ids again (consumers drop duplicates),
        # instead of losing the updates.
        self.processor.producer.send_records(MEMORY.name, updates, key=doc.collection.encode()).get(timeout=30)
        self.store.record(
            memories,
            doc_id=doc.doc_id,
            partition=arrived.partition,
            offset=arrived.offset,
            policy_version=self.policy.version,
            text=doc.text,
            text_ref=doc.text_ref,
        )
        self._applied[arrived.partition] = arrived.offset + 1
        DOCS_READ.labels(self.name).inc()
        CHUNKS.labels(self.name).inc(len(chunks) * len(questions))
        READ_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        LAG.labels(self.name).set(max(0.0, time.time() - doc.ingested_at / 1000))

    def _memories(self, jobs: list[Job], before: list[Memory | None], sources: list[tuple[str, str]]) -> list[Memory]:
        """Read `jobs` (one engine call per chunk for all of them) into the memories that follow
        `before` (None: a question's first document); `sources`: each job's (collection, doc_id)."""
        with self.engine_lock:
            read = read_chunked(
                self.engine, jobs, self.agent, n=1, temperature=0.0, top_p=1.0, answer=False, prompter=self.prompter
            )
        memories = []
        for job, prior, (collection, doc_id), [trajectory] in zip(jobs, before, sources, read, strict=True):
            text = trajectory[-1].sample.text.strip()
            memories.append(
                Memory(
                    collection=collection,
                    question=job.question,
                    text=text,
                    revision=(prior.revision if prior else 0) + 1,
                    policy_version=self.policy.version,
                    docs_covered=(prior.docs_covered if prior else 0) + 1,
                    last_doc_id=doc_id,
                )
            )
            MEMORY_TOKENS.labels(self.name).observe(self.count_tokens(text) if text else 0)
        return memories

    @staticmethod
    def _update(memory: Memory, doc_id: str, partition: int, offset: int, chunks: int) -> MemoryUpdate:
        return MemoryUpdate(
            memory_id=f"{memory.collection}/{question_key(memory.question)}/{memory.revision}",
            collection=memory.collection,
            question=memory.question,
            revision=memory.revision,
            doc_id=doc_id,
            source_partition=partition,
            source_offset=offset,
            chunks=chunks,
            docs_covered=memory.docs_covered,
            memory_text=memory.text,
            policy_version=memory.policy_version,
        )

    # -- questions asked after their collection's documents ------------------------------------
    def catch_up(self) -> int:
        """One round of catch-up: every waiting asked question (at most `memory.catch_up_questions`)
        reads the next document of its collection, all in one engine call per chunk; returns how
        many questions moved on. A stored document a question cannot read (its blob gone, or
        reading it raises even alone) is passed over for that question, and logged: a question
        never stops the actor."""
        waiting = []
        for pending in self.store.pending(self.config.catch_up_questions):
            doc = self.store.document(pending.collection, pending.read)
            try:
                text = self.claim.get_text(doc.text, doc.text_ref)
                chunks = tuple(split_chunks(text, self.agent.chunk_tokens, self.count_tokens))
            except Exception as exc:  # noqa: BLE001 - one unreadable document must not stop every question
                self._pass_over(pending, doc.doc_id, exc)
                continue
            prior = self.store.memories(pending.collection).get(pending.question)
            waiting.append((pending, doc, Job(pending.question, chunks, prior.text if prior else ""), prior))
        try:
            self._advance(waiting)
        except Exception:  # noqa: BLE001 - find the question that cannot be read, one at a time
            for one in waiting:
                try:
                    self._advance([one])
                except Exception as exc:  # noqa: BLE001
                    self._pass_over(one[0], one[1].doc_id, exc)
        return len(waiting)

    def _advance(self, waiting: list[tuple[Pending, Any, Job, Memory | None]]) -> None:
        """Read each waiting question's next document (one engine call per chunk for all) and
        store and publish the memories."""
        if not waiting:
            return
        jobs = [job for _, _, job, _ in waiting]
        sources = [(pending.collection, doc.doc_id) for pending, doc, _, _ in waiting]
        memories = self._memories(jobs, [prior for *_, prior in waiting], sources)
        for (pending, doc, job, _), memory in zip(waiting, memories, strict=True):
            update = self._update(memory, doc.doc_id, doc.partition, doc.offset, len(job.chunks))
            self.processor.producer.send_records(MEMORY.name, [update], key=pending.collection.encode()).get(timeout=30)
            self.store.advance(memory, pending.read + 1)
            CATCH_UP_READS.labels(self.name).inc()
            CHUNKS.labels(self.name).inc(len(job.chunks))

    def _pass_over(self, pending: Pending, doc_id: str, exc: Exception) -> None:
        log.warning("%s: the memory of %r passes over %s: %s", self.name, pending.question, doc_id, exc)
        self.store.advance_past(pending)

    # -- answering ---------------------------------------------------------------------------
    def ask(self, collection: str, question: str) -> dict[str, Any]:
        """Answer from the collection's memory for the question. A question with no memory of its
        own yet is registered (its memory reads the collection, then every new document) and
        answered from the summary memory meanwhile, or, while that is empty, answered with
        `{"status": "reading", ...}` (HTTP 202). Raises `QueryError` (unknown collection, an empty
        memory, too many questions) instead of guessing."""
        question = normal_question(question)
        memories = self.store.memories(collection)
        if not memories:
            known = self.store.collections()
            raise QueryError(
                f"unknown collection {collection!r}: no document of it has been read; "
                f"known: {known[:20]}{' …' if len(known) > 20 else ''}",
                404,
                "unknown_collection",
            )
        total, documents = self.store.documents(collection, limit=50)
        reading = self._reading(collection, question, total)
        memory = memories.get(normal_question(self.config.summary_question) if reading else question)
        if memory is None or not memory.text:
            if reading is not None:
                QUERIES.labels(self.name, "reading").inc()
                return {"status": "reading", "collection": collection, **reading}
            raise QueryError(
                f"collection {collection!r} has an empty memory for {question} after "
                f"{memory.docs_covered if memory else 0} documents: nothing to answer from",
                409,
                "empty_memory",
            )
        with self.engine_lock:
            [[trajectory]] = read_chunked(
                self.engine,
                [Job(question, (), memory.text)],
                self.agent,
                n=1,
                temperature=0.0,
                top_p=1.0,
                prompter=self.prompter,
            )
            policy_version = self.policy.version
        QUERIES.labels(self.name, "answered").inc()
        answer = {
            "status": "answered",
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
            "documents": {"count": total, "latest": documents},
        }
        return {**answer, "reading": reading} if reading else answer

    def _reading(self, collection: str, question: str, total: int) -> dict[str, Any] | None:
        """None when `question` has a memory of its own that has read the collection's `total`
        documents; else it is registered (QueryError 409 when the collection has its fill of
        asked questions) and how far its memory has read is returned."""
        if question in self.config.questions_of(collection):
            return None
        asked = self.store.asked(collection)
        if asked.get(question, -1) >= total:
            return None
        if not self.store.ask(collection, question, self.config.max_asked_questions):
            raise QueryError(
                f"collection {collection!r} already keeps memories for {self.config.max_asked_questions} asked "
                f"questions (memory.max_asked_questions): ask one of {sorted(asked)}",
                409,
                "too_many_questions",
            )
        return {"question": question, "documents": total, "read": asked.get(question, 0)}

    def progress(self, collection: str) -> dict[str, Any]:
        """How far the collection's memories are: documents read, each question's reads, when
        they last changed (QueryError 404 for a collection never read)."""
        rows = {row[0]: row for row in self.store.progress() if row[0] == collection}
        if collection not in rows:
            raise QueryError(
                f"unknown collection {collection!r}: no document of it has been read", 404, "unknown_collection"
            )
        _, total, pending, updated = rows[collection]
        asked = self.store.asked(collection)
        return {
            "collection": collection,
            "documents_read": total,
            "reads_pending": pending,
            "updated_at": updated,
            "questions": {
                **{q: total for q in self.config.questions_of(collection)},
                **dict(sorted(asked.items())),
            },
        }

    # -- loop ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        from actors.memory.http import serve  # FastAPI/uvicorn: loaded where the endpoint runs

        self.server = serve(self, self.config.http_host, self.config.http_port, self.config.max_request_bytes)
        # the newest version announced so far before the first document: a restarted actor must
        # not overwrite memories a trained policy wrote with the base model's reading
        self.policy.sync(records=read_all(self.streams, POLICY.name, idle_ms=300))
        try:
            while not stop.is_set():
                self.policy.sync()
                self.processor.step(timeout_ms=50 if self.catch_up() else 200, max_records=4)
                if time.monotonic() - self._progress_at > PROGRESS_EVERY_S:
                    self._progress_at = time.monotonic()
                    self.collection_series.update(self.store.progress())
        finally:
            self.server.stop()

    def collections(self) -> list[str]:
        return self.store.collections()

    def policy_version(self) -> int | None:
        return self.policy.version

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            "policy_version": self.policy.version,
            "collections": len(self.store.collections()),
            "documents_read": self.store.read_count(),
            "http": self.server.address if self.server else "",
        }

    def close(self) -> None:
        super().close()
        self.policy.close()
        self.store.close()
        self.engine.close()
