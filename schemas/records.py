"""Record types: one frozen dataclass and one Arrow schema each.

Every record carries an id (`ID_FIELD`, used for deduplication) and `produced_at`
(milliseconds since the epoch). From rollouts on, records carry the policy version that
made them. Lists are tuples so that records stay hashable and immutable.

`validate()` checks the invariants Arrow's types cannot express and raises `SchemaError`
naming the field and the problem.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import ClassVar

import pyarrow as pa

SCHEMA_VERSION = 5
"""Version of every schema in this module; sent in the `longtide.schema_version` Kafka header."""


class AnswerKind(enum.StrEnum):
    """What a task's gold answer is, which decides how it is verified (`Task.answer_kind`)."""

    TEXT = "text"
    """Scored by the configured `Rule` (exact or sub_em)."""
    NUMERIC = "numeric"
    """Scored by numeric match within a relative tolerance."""
    OPTION = "option"
    """A multiple-choice letter, scored by option match."""
    LIST = "list"
    """Comma-separated items (multi-needle), scored by list recall."""


class SchemaError(ValueError):
    """A record that does not match its schema; the message names the field."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _require(ok: bool, record: str, field_name: str, problem: str) -> None:
    if not ok:
        raise SchemaError(f"{record}.{field_name}: {problem}")


@dataclass(frozen=True)
class RawDocument:
    """What producers put on `docs.raw` (as JSON or Arrow): a document before ingestion."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "doc_id"
    NAME: ClassVar[str] = "RawDocument"

    collection: str
    text: str
    doc_id: str = ""
    """Optional producer-side id; ingestion always re-derives the content hash."""
    source: str = ""
    attrs: tuple[tuple[str, str], ...] = ()
    produced_at: int = field(default_factory=now_ms)

    def validate(self) -> None:
        _require(bool(self.collection.strip()), self.NAME, "collection", "must not be empty")
        _require(bool(self.text.strip()), self.NAME, "text", "must not be empty")


@dataclass(frozen=True)
class Document:
    """An ingested document: id is the content hash; long text lives in the blob store."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "doc_id"
    NAME: ClassVar[str] = "Document"

    doc_id: str
    collection: str
    text: str
    """The text, or "" when it lives in the blob store under `text_ref`."""
    text_ref: str
    n_tokens: int
    source: str
    attrs: tuple[tuple[str, str], ...]
    ingested_at: int
    produced_at: int = field(default_factory=now_ms)

    def validate(self) -> None:
        _require(len(self.doc_id) == 64, self.NAME, "doc_id", "must be a sha256 hex digest")
        _require(bool(self.text) != bool(self.text_ref), self.NAME, "text", "exactly one of text/text_ref")
        _require(self.n_tokens > 0, self.NAME, "n_tokens", f"must be > 0, got {self.n_tokens}")


@dataclass(frozen=True)
class Task:
    """A verifiable question over a context built from a collection's documents."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "task_id"
    NAME: ClassVar[str] = "Task"

    task_id: str
    task_type: str
    collection: str
    doc_ids: tuple[str, ...]
    context: str
    """The context, or "" when it lives in the blob store under `context_ref`."""
    context_ref: str
    context_tokens: int
    question: str
    answer: str
    answer_kind: str
    """How the reward verifies answers: an `AnswerKind` value."""
    hops: int
    difficulty: float
    synth_version: int
    evidence: tuple[str, ...] = ()
    """The spans of the context that prove the answer, verbatim (the memory agent's gold
    memory is built from them); () where a composer does not name them."""
    ingested_at: int = 0
    """When the document whose arrival made this task was ingested (ms; 0: unknown)."""
    produced_at: int = field(default_factory=now_ms)

    def validate(self) -> None:
        _require(bool(self.question.strip()), self.NAME, "question", "must not be empty")
        _require(bool(self.answer.strip()), self.NAME, "answer", "must not be empty")
        _require(
            bool(self.context) != bool(self.context_ref), self.NAME, "context", "exactly one of context/context_ref"
        )
        _require(
            self.answer_kind in set(AnswerKind),
            self.NAME,
            "answer_kind",
            f"unknown kind {self.answer_kind!r}; one of {', '.join(AnswerKind)}",
        )
        _require(self.hops >= 1, self.NAME, "hops", f"must be >= 1, got {self.hops}")
        if self.context:  # (a blob-stored context is checked where it is read)
            missing = [e for e in self.evidence if e not in self.context]
            _require(not missing, self.NAME, "evidence", f"spans not in the context: {missing[:2]}")


@dataclass(frozen=True)
class Rollout:
    """One sampled response to a task, with the behaviour policy's log-probs and version."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "rollout_id"
    NAME: ClassVar[str] = "Rollout"

    rollout_id: str
    task_id: str
    task_type: str
    group_id: str
    sample_index: int
    group_size: int
    policy_version: int
    prompt_ids: tuple[int, ...]
    """Prompt token ids, or () when they live in the blob store under `prompt_ref`."""
    prompt_ref: str
    response_ids: tuple[int, ...]
    behaviour_logprobs: tuple[float, ...]
    response_text: str
    reference: str
    """The task's verified answer, carried so reward scoring needs no lookup."""
    answer_kind: str
    turns: int
    """Turns of this rollout's trajectory: 1 for a full-context rollout; chunks + 1 for the
    memory agent, one row per turn, all carrying the trajectory's `sample_index`."""
    finish_reason: str
    """'stop' (EOS) or 'length' (hit max_new_tokens)."""
    run_id: str = ""
    """The run whose policy generated it: a learner trains only its own run's groups."""
    turn_index: int = 0
    """Which turn of the trajectory this row is (0-based); the last turn holds the answer."""
    ingested_at: int = 0
    """Its task's `ingested_at`: the learner measures ingestion to training from it."""
    question: str = ""
    """Its task's question: a verifier may accept an answer that restates it (`Rule.RESTATE`)."""
    produced_at: int = field(default_factory=now_ms)

    @property
    def final(self) -> bool:
        """The trajectory's last turn: the one whose response is the answer."""
        return self.turn_index == self.turns - 1

    def validate(self) -> None:
        _require(
            0 <= self.turn_index < self.turns,
            self.NAME,
            "turn_index",
            f"{self.turn_index} not in [0, turns={self.turns})",
        )
        _require(
            0 <= self.sample_index < self.group_size,
            self.NAME,
            "sample_index",
            f"{self.sample_index} not in [0, {self.group_size})",
        )
        _require(
            len(self.response_ids) == len(self.behaviour_logprobs),
            self.NAME,
            "behaviour_logprobs",
            f"length {len(self.behaviour_logprobs)} != response length {len(self.response_ids)}",
        )
        _require(
            bool(self.prompt_ids) != bool(self.prompt_ref),
            self.NAME,
            "prompt_ids",
            "exactly one of prompt_ids/prompt_ref",
        )
        _require(self.policy_version >= 0, self.NAME, "policy_version", "must be >= 0")
        bad = [x for x in self.behaviour_logprobs if not x <= 1e-3]  # NaN and positive values fail
        _require(not bad, self.NAME, "behaviour_logprobs", f"must be log-probabilities (<= 0), got {bad[:3]}")


@dataclass(frozen=True)
class ScoredRollout(Rollout):
    """A rollout with its reward and the components the reward was built from."""

    NAME: ClassVar[str] = "ScoredRollout"

    reward: float = 0.0
    exact_match: float = 0.0
    substring_match: float = 0.0
    numeric_match: float = 0.0
    extracted_answer: str = ""
    verifier: str = ""

    def validate(self) -> None:
        super().validate()
        _require(0.0 <= self.reward <= 1.0, self.NAME, "reward", f"{self.reward} not in [0, 1]")


@dataclass(frozen=True)
class PolicyVersion:
    """Announces new weights; the weights themselves travel out of band (`weights_ref`)."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "version"
    NAME: ClassVar[str] = "PolicyVersion"

    version: int
    step: int
    weights_ref: str
    """Where to fetch the weights: 'ray://<actor>/<version>', 'file://<path>' or
    '<gloo|nccl>://<host>:<port>/<version>' (actors/weights.py)."""
    groups_consumed: int
    """Groups the learner has consumed (trained on or dropped): the rollout gate's clock."""
    metrics: tuple[tuple[str, float], ...]
    run_id: str = ""
    """The run this version belongs to: rollout actors follow only their own run's versions."""
    produced_at: int = field(default_factory=now_ms)

    def validate(self) -> None:
        _require(self.version >= 0, self.NAME, "version", "must be >= 0")
        _require(bool(self.weights_ref), self.NAME, "weights_ref", "must not be empty")


@dataclass(frozen=True)
class MemoryUpdate:
    """A collection's memory for one standing question after the memory actor read a document."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "memory_id"
    NAME: ClassVar[str] = "MemoryUpdate"

    memory_id: str
    """'<collection>/<question id>/<revision>': unique per state."""
    collection: str
    question: str
    """The standing question this memory is kept for (or the collection summary's prompt)."""
    revision: int
    """How many times this memory has been written (documents read and refreshes)."""
    doc_id: str
    """The document just read."""
    source_partition: int
    source_offset: int
    """Where that document lies on `docs`."""
    chunks: int
    """Chunks the document was read in."""
    docs_covered: int
    """Documents of the collection this memory has read."""
    memory_text: str
    policy_version: int
    """The policy that wrote it (-1: the base model, before the first announced version)."""
    produced_at: int = field(default_factory=now_ms)

    def validate(self) -> None:
        _require(bool(self.collection.strip()), self.NAME, "collection", "must not be empty")
        _require(bool(self.question.strip()), self.NAME, "question", "must not be empty")
        _require(self.chunks >= 1, self.NAME, "chunks", f"must be >= 1, got {self.chunks}")
        _require(self.docs_covered >= 1, self.NAME, "docs_covered", f"must be >= 1, got {self.docs_covered}")


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be decoded, validated or processed, with its original bytes.

    Its id is `consumer_group/topic/partition/offset`: a record two consumers reject (the learner
    and synthesis both read `scored`) is dead-lettered once by each, and the copies differ."""

    SCHEMA: ClassVar[pa.Schema]
    ID_FIELD: ClassVar[str] = "dead_letter_id"
    NAME: ClassVar[str] = "DeadLetter"

    dead_letter_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    actor: str
    """The actor instance that rejected it (e.g. `ingest-0`)."""
    consumer_group: str
    """The consumer group it was rejected in (e.g. `longtide-ingest`): who would have read it."""
    error: str
    """What was wrong, in the record's terms: the field, what was expected and what came."""
    original_key: bytes
    original_value: bytes
    original_headers: tuple[tuple[str, bytes], ...]
    produced_at: int = field(default_factory=now_ms)

    def validate(self) -> None:
        _require(bool(self.error), self.NAME, "error", "must say why")


_PAIRS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
_METRICS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.float64())]))
_HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
_TS = pa.int64()

RawDocument.SCHEMA = pa.schema(
    [
        ("collection", pa.string()),
        ("text", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("attrs", _PAIRS),
        ("produced_at", _TS),
    ]
)
Document.SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("collection", pa.string()),
        ("text", pa.large_string()),
        ("text_ref", pa.string()),
        ("n_tokens", pa.int64()),
        ("source", pa.string()),
        ("attrs", _PAIRS),
        ("ingested_at", _TS),
        ("produced_at", _TS),
    ]
)
Task.SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("task_type", pa.string()),
        ("collection", pa.string()),
        ("doc_ids", pa.list_(pa.string())),
        ("context", pa.large_string()),
        ("context_ref", pa.string()),
        ("context_tokens", pa.int64()),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("answer_kind", pa.string()),
        ("hops", pa.int32()),
        ("difficulty", pa.float64()),
        ("synth_version", pa.int32()),
        ("evidence", pa.list_(pa.string())),
        ("ingested_at", _TS),
        ("produced_at", _TS),
    ]
)
_ROLLOUT_FIELDS = [
    ("rollout_id", pa.string()),
    ("task_id", pa.string()),
    ("task_type", pa.string()),
    ("group_id", pa.string()),
    ("sample_index", pa.int32()),
    ("group_size", pa.int32()),
    ("policy_version", pa.int64()),
    ("prompt_ids", pa.list_(pa.int32())),
    ("prompt_ref", pa.string()),
    ("response_ids", pa.list_(pa.int32())),
    ("behaviour_logprobs", pa.list_(pa.float32())),
    ("response_text", pa.string()),
    ("reference", pa.string()),
    ("answer_kind", pa.string()),
    ("turns", pa.int32()),
    ("finish_reason", pa.string()),
    ("run_id", pa.string()),
    ("turn_index", pa.int32()),
    ("ingested_at", _TS),
    ("question", pa.string()),
    ("produced_at", _TS),
]
Rollout.SCHEMA = pa.schema(_ROLLOUT_FIELDS)
ScoredRollout.SCHEMA = pa.schema(
    _ROLLOUT_FIELDS
    + [
        ("reward", pa.float64()),
        ("exact_match", pa.float64()),
        ("substring_match", pa.float64()),
        ("numeric_match", pa.float64()),
        ("extracted_answer", pa.string()),
        ("verifier", pa.string()),
    ]
)
PolicyVersion.SCHEMA = pa.schema(
    [
        ("version", pa.int64()),
        ("step", pa.int64()),
        ("weights_ref", pa.string()),
        ("groups_consumed", pa.int64()),
        ("metrics", _METRICS),
        ("run_id", pa.string()),
        ("produced_at", _TS),
    ]
)
MemoryUpdate.SCHEMA = pa.schema(
    [
        ("memory_id", pa.string()),
        ("collection", pa.string()),
        ("question", pa.string()),
        ("revision", pa.int64()),
        ("doc_id", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("chunks", pa.int32()),
        ("docs_covered", pa.int64()),
        ("memory_text", pa.large_string()),
        ("policy_version", pa.int64()),
        ("produced_at", _TS),
    ]
)
DeadLetter.SCHEMA = pa.schema(
    [
        ("dead_letter_id", pa.string()),
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("actor", pa.string()),
        ("consumer_group", pa.string()),
        ("error", pa.string()),
        ("original_key", pa.binary()),
        ("original_value", pa.large_binary()),
        ("original_headers", _HEADERS),
        ("produced_at", _TS),
    ]
)

Record = RawDocument | Document | Task | Rollout | ScoredRollout | PolicyVersion | MemoryUpdate | DeadLetter
RECORD_TYPES: dict[str, type] = {
    cls.NAME: cls
    for cls in (RawDocument, Document, Task, Rollout, ScoredRollout, PolicyVersion, MemoryUpdate, DeadLetter)
}
