"""Synthesis: `docs` -> the store -> verifiable tasks on `tasks`; `scored` -> difficulty bins
and retrospective re-publication.

Documents are keyed by collection, so one synthesis actor sees every document of its
collections in order. Each new document goes into the store (text, tables, facts; see
`corpus.py`) and yields `tasks_per_document` tasks, task types taken in turn: world tasks
(`actors/tasks.py`) over the collection's world facts, store tasks (tables, key chains,
multi-hop and the paradigms, needles, dialogue) over the whole store. The random stream of a
document is seeded from its id, so a replayed document yields the same task ids (and
downstream deduplication drops them). Scored groups come back on `scored` (`retrospect.py`).
A lost or stale store is re-read from `docs` at start-up (`_rebuild`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import logging
import random
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from actors.base import ProcessorActor
from actors.synthesis.compose import compose_store, held_out, read_document
from actors.synthesis.config import SynthesisConfig
from actors.synthesis.context import JoinCounter
from actors.synthesis.corpus import Corpus
from actors.synthesis.extract import Fact as ExtractedFact
from actors.synthesis.llm_extract import ExtractionFailed, LLMExtractor
from actors.synthesis.metrics import (
    COUNT_MISMATCHES,
    EVIDENCE_CUT,
    FACTS,
    GROUPS,
    HELD_OUT,
    LEAKED,
    LLM_FAILED,
    NO_CONTEXT,
    NO_FACTS,
    PASS_AT_K,
    REBUILT,
    REPUBLISHED,
    SHORT,
    TABLE_PROBLEMS,
    TABLES,
    TASKS_MADE,
    UNVERIFIED,
    zero_series,
)
from actors.synthesis.retrospect import Retrospect, pass_at_k
from actors.synthesis.table_tasks import Skipped, fit_evidence
from actors.synthesis.tables import Table
from actors.tasks import COMPOSERS, MEMORY_TASK_TYPES, TaskType
from actors.world import Fact
from schemas import AnswerKind, DeadLetter, Document, ScoredRollout, Task, encode, headers_for
from streams.blobs import ClaimCheck
from streams.kafka import StreamsConfig
from streams.logs import read_ranges
from streams.processor import Output, arrow_decoder
from streams.topics import DLQ, DOCS, SCORED, TASKS

log = logging.getLogger(__name__)

FACTLESS = frozenset({TaskType.NEEDLE, TaskType.MULTI_NEEDLE, TaskType.DIALOGUE})
"""Task types made from any documents (the haystack), whether or not they held facts."""


def make_task(
    composed: Any,
    *,
    collection: str,
    doc_ids: tuple[str, ...],
    claim: ClaimCheck,
    synth_version: int,
    context_tokens: int,
    answer_kind: AnswerKind = AnswerKind.TEXT,
    difficulty: float | None = None,
    evidence: tuple[str, ...] = (),
) -> Task:
    context, ref = claim.put_text(composed.context)
    digest = hashlib.sha256(f"{collection}\0{composed.context}\0{composed.question}".encode()).hexdigest()[:32]
    return Task(
        task_id=digest,
        task_type=composed.task_type.value,
        collection=collection,
        doc_ids=doc_ids,
        context=context,
        context_ref=ref,
        context_tokens=context_tokens,
        question=composed.question,
        answer=composed.answer,
        answer_kind=answer_kind,
        hops=composed.hops,
        difficulty=float(composed.hops) if difficulty is None else difficulty,
        synth_version=synth_version,
        evidence=evidence,
    )


class SynthesisActor(ProcessorActor):
    """Keeps a fact graph per collection and composes tasks as documents arrive."""

    KIND = "synthesis"

    def __init__(
        self,
        *,
        name: str,
        config: SynthesisConfig,
        streams: StreamsConfig,
        claim: ClaimCheck,
        count_tokens: Callable[[str], int],
        store: str = ":memory:",
    ) -> None:
        """`store`: the SQLite file of documents and tables (rebuilt from `docs` if lost)."""
        self.config = config
        zero_series(name, config.task_types)
        self.claim = claim
        self.count_tokens = JoinCounter(count_tokens)
        self.corpus = Corpus(store)
        self.llm = LLMExtractor(config.llm) if config.llm.base_url else None
        self.tasks_by_type: collections.Counter[str] = collections.Counter()
        self.pass_k: dict[tuple[str, int], deque[float]] = defaultdict(lambda: deque(maxlen=256))
        """Per (task type, k), pass@k of the latest groups (the gauge's window)."""
        self.retrospect = Retrospect(self.corpus.db, config.retrospect) if config.retrospect.enabled else None
        self.policy_version = -1
        """The newest policy version seen on `scored`."""
        docs, scored = arrow_decoder(Document), arrow_decoder(ScoredRollout)
        self._connect(
            name=name,
            streams=streams,
            topic=DOCS.name,
            decoder=lambda m: scored(m) if m.topic == SCORED.name else docs(m),
            extra_topics=(SCORED.name,) if self.retrospect else (),
        )
        self._pace(
            streams, source=DOCS.name, downstream=TASKS.name, reader_kind="rollout", bound=config.max_tasks_ahead
        )
        self._rebuild(streams)

    def _rebuild(self, streams: StreamsConfig) -> None:
        """Bring a lost or stale store up to the group's committed `docs` offsets: the documents
        below them were handled (their tasks published) but are missing from this store. They
        are re-read and stored; no task is made again."""
        applied = self.corpus.applied(DOCS.name)
        committed = self.processor.consumer.committed_offsets(DOCS.name)
        ranges = {p: (applied.get(p, 0), end) for p, end in committed.items() if applied.get(p, 0) < end}
        if not ranges:
            return
        log.info("%s: store behind the log at %s; re-reading docs %s", self.name, applied, ranges)
        decode = arrow_decoder(Document)
        for message in read_ranges(streams, DOCS.name, ranges):
            try:
                for doc in decode(message):
                    if self._held_out(doc):
                        continue
                    self._store(doc)  # an LLM failure was dead-lettered the first time
                    REBUILT.labels(self.name).inc()
            except Exception as exc:  # noqa: BLE001 - dead-lettered when it was first read
                log.warning("%s: re-reading docs@%d: %s", self.name, message.offset, exc)
            self.corpus.mark_applied({(DOCS.name, message.partition): message.offset + 1})  # progress survives
        self.corpus.mark_applied({(DOCS.name, p): end for p, (_, end) in ranges.items()})

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.step(max_records=self.config.poll_records):
                self.corpus.mark_applied(self.processor.committed)

    def handle(self, records: list[Document] | list[ScoredRollout]) -> list[Output]:
        """A message of documents, or one scored group (`scored` keeps a group in one message)."""
        if records and isinstance(records[0], ScoredRollout):
            return self._scored(records)
        outputs = [out for doc in records for out in self._synthesize(doc)]
        if self.retrospect is not None:
            self.retrospect.remember([out.records[0] for out in outputs if out.topic == TASKS.name])
        return outputs

    def _scored(self, group: list[ScoredRollout]) -> list[Output]:
        """Bin the group's task by pass rate; re-publish the unsolved tasks now due."""
        outcome = self.retrospect.outcome(group)
        GROUPS.labels(self.name, outcome.task_type, outcome.bin).inc()
        for k in self.config.retrospect.pass_k:
            self.pass_k[(outcome.task_type, k)].append(pass_at_k(outcome.n, outcome.correct, k))
            window = self.pass_k[(outcome.task_type, k)]
            PASS_AT_K.labels(self.name, outcome.task_type, str(k)).set(sum(window) / len(window))
        self.policy_version = max(self.policy_version, outcome.version)
        # a re-published task is not its document's first: no ingestion time to measure from
        again = [dataclasses.replace(t, ingested_at=0) for t in self.retrospect.due(self.policy_version)]
        for task in again:
            REPUBLISHED.labels(self.name, task.task_type).inc()
        return [Output(TASKS.name, [task], key=task.task_id.encode()) for task in again]

    def _synthesize(self, doc: Document) -> list[Output]:
        if self._held_out(doc):
            HELD_OUT.labels(self.name).inc()
            return []
        outputs, found = self._store(doc, keep_alive=True)
        if not found:
            NO_FACTS.labels(self.name).inc()
        types = self.config.task_types
        world = self.corpus.world_facts(doc.collection) if set(types) & COMPOSERS.keys() else {}  # world tasks only
        rng = random.Random(f"{self.config.seed}:{doc.doc_id}")
        first = rng.randrange(len(types))  # so that types stay balanced when they do not divide
        for i in range(self.config.tasks_per_document):  # tasks_per_document
            task_type = types[(first + i) % len(types)]
            if task_type in COMPOSERS:
                task = self._world_task(doc, world, rng, task_type) if found else None
            elif task_type in FACTLESS or found:
                task = self._store_task(doc.collection, rng, task_type)
            else:
                task = None
            if task is not None:
                task = dataclasses.replace(task, ingested_at=doc.ingested_at)  # ingestion → training latency
                TASKS_MADE.labels(self.name, task.task_type).inc()
                self.tasks_by_type[task.task_type] += 1
                outputs.append(Output(TASKS.name, [task], key=task.task_id.encode()))
        return outputs

    def _held_out(self, doc: Document) -> bool:
        fraction = self.config.heldout_fraction
        return fraction > 0 and held_out(self.claim.get_text(doc.text, doc.text_ref), fraction)

    def _store(self, doc: Document, keep_alive: bool = False) -> tuple[list[Output], bool]:
        """Add the document, its tables and its facts to the store (once): dead letters for a
        failed LLM extraction, and whether it held any facts or tables. With `keep_alive` the
        extraction runs while the consumer keeps its group membership (`keep_alive`)."""
        text = self.claim.get_text(doc.text, doc.text_ref)
        with_llm = self.llm is not None and not self.corpus.has_document(doc.doc_id)
        work = functools.partial(self._extract, doc.doc_id, text, dict(doc.attrs).get("format", ""), with_llm)
        tables, facts_found, llm_error = self.keep_alive(work) if keep_alive else work()
        outputs: list[Output] = []
        if llm_error is not None:  # the document's other facts are still used
            LLM_FAILED.labels(self.name).inc()
            outputs.append(Output(DLQ.name, [self._dead_letter(doc, llm_error)], key=doc.doc_id.encode()))
        self.corpus.add_document(doc.doc_id, doc.collection, text, doc.n_tokens, tables, facts_found)
        FACTS.labels(self.name).inc(len(facts_found))
        return outputs, bool(facts_found or tables)

    def _extract(
        self, doc_id: str, text: str, fmt: str, with_llm: bool
    ) -> tuple[list[Table], list[ExtractedFact], str | None]:
        """(tables, facts, the LLM extractor's failure or None) of one document's text."""
        tables, facts_found, problems = read_document(doc_id, text, fmt)
        for problem in problems:
            log.info("%s: document %s: %s", self.name, doc_id[:12], problem)
        TABLE_PROBLEMS.labels(self.name).inc(len(problems))
        TABLES.labels(self.name).inc(len(tables))
        if with_llm:
            try:
                facts_found += self.llm.extract(doc_id, text)
            except ExtractionFailed as exc:
                return tables, facts_found, str(exc)
        return tables, facts_found, None

    def _world_task(
        self, doc: Document, world: dict[Fact, str], rng: random.Random, task_type: TaskType
    ) -> Task | None:
        """A question in the synthetic world's language, over the collection's world facts."""
        collection = doc.collection
        if task_type in MEMORY_TASK_TYPES:
            target = rng.choice(self.config.memory_context_tokens)
            # distractors from their own stream (one draw of the document's), among collections
            # that arrived before the document: a document handled again draws the same
            distractors = self._other_world_facts(doc, random.Random(rng.random()), target)
            composed = COMPOSERS[task_type](list(world), rng, target, self.count_tokens, distractors)
        else:
            target = self.config.context_tokens
            composed = COMPOSERS[task_type](list(world), rng, target, self.count_tokens)
        if composed is None:
            return None
        tokens = self.count_tokens(composed.context)
        if tokens < self.config.min_context_fill * target:
            SHORT.labels(self.name).inc()  # too few facts yet to reach the target length
            return None
        return make_task(
            composed,
            collection=collection,
            doc_ids=tuple(dict.fromkeys(world[f] for f in composed.evidence)),
            claim=self.claim,
            synth_version=self.config.synth_version,
            context_tokens=tokens,
            evidence=tuple(f.sentence() for f in composed.evidence),
        )

    def _other_world_facts(self, doc: Document, rng: random.Random, tokens: int) -> list[Fact]:
        """Facts of other collections that arrived before `doc`, whole collections in a seeded
        order, until they hold `tokens` tokens (distractors for a context longer than one
        collection)."""
        others = [c for c in self.corpus.world_collections(before_doc=doc.doc_id) if c != doc.collection]
        facts: list[Fact] = []
        held = 0
        for other in rng.sample(others, len(others)):
            if held >= tokens:
                break
            found = list(self.corpus.world_facts(other))
            facts += found
            held += sum(self.count_tokens(f.sentence()) for f in found)
        return facts

    def _store_task(self, collection: str, rng: random.Random, task_type: TaskType) -> Task | None:
        mismatches = self.count_tokens.mismatches
        made = compose_store(
            self.corpus, collection, rng, task_type, self.config, self.count_tokens, self.config.context_tokens
        )
        COUNT_MISMATCHES.labels(self.name).inc(self.count_tokens.mismatches - mismatches)
        if isinstance(made, Skipped):
            if made is Skipped.UNVERIFIED:
                UNVERIFIED.labels(self.name, task_type.value).inc()
            elif made is Skipped.LEAK:
                LEAKED.labels(self.name).inc()
            elif made is Skipped.NO_CONTEXT:
                NO_CONTEXT.labels(self.name, task_type.value).inc()
            return None
        evidence, cut = fit_evidence(made.evidence, self.config.max_evidence_chars)
        if cut:
            EVIDENCE_CUT.labels(self.name).inc()
        return make_task(
            made.composed,
            collection=collection,
            doc_ids=made.doc_ids,
            claim=self.claim,
            synth_version=self.config.synth_version,
            context_tokens=made.tokens,
            answer_kind=made.answer_kind,
            difficulty=made.difficulty,
            evidence=evidence,
        )

    def _dead_letter(self, doc: Document, error: str) -> DeadLetter:
        """The document's extraction failure, with the document's record as the original bytes."""
        return DeadLetter(
            dead_letter_id=f"llm-extract/{doc.doc_id}",
            source_topic=DOCS.name,
            source_partition=-1,
            source_offset=-1,
            actor=self.name,
            consumer_group=self.processor.group,
            error=error[:2000],
            original_key=doc.collection.encode(),
            original_value=encode([doc]),
            original_headers=tuple(headers_for(doc)),
        )

    def close(self) -> None:
        super().close()
        self.corpus.close()
        if self.llm is not None:
            self.llm.close()

    def snapshot(self) -> dict[str, Any]:
        joins = self.count_tokens
        return {
            **super().snapshot(),
            "collections": self.corpus.collections(),
            "tasks_by_type": dict(self.tasks_by_type),
            "token_count": {"joins": joins.joins, "mismatches": joins.mismatches, "whole": joins.whole},
        }
