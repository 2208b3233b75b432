"""The synthesis actor's configuration (section `synthesis`). Importable without torch: the CLI and the launcher
read it without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.settings import Resources
from actors.synthesis.llm_extract import LLMExtractorConfig
from actors.synthesis.retrospect import RetrospectConfig
from actors.tasks import TaskType


@dataclass(frozen=True)
class SynthesisConfig:
    """Task synthesis settings."""

    task_types: tuple[TaskType, ...] = (TaskType.KV_RETRIEVAL, TaskType.TWO_HOP)
    """Task types to make, taken in turn from a point drawn per document (balanced). The
    default is the `world` demo's: world tasks the tiny model can read; the store's (table_numeric,
    multi_hop, needle, ...) need real text. Adding multi_kv to the demo did not show RL
    learning it (README, "Measured")."""
    tasks_per_document: int = 8
    """Tasks made each time a document arrives."""
    poll_records: int = 16
    """Most messages handled per poll. A poll's work must end within
    `streams.max_poll_interval_ms` or the broker drops the actor from its group; on 2 busy cores
    a memory-agent task costs about 10 ms to compose, and 100 documents a poll overran 10 s."""
    max_tasks_ahead: int = 4096
    """Backpressure (streams/backpressure.py): while the rollout actors are more than this many
    tasks behind on `tasks`, synthesis stops reading `docs` (documents wait in the log), and
    reads again at half of it. 0 never pauses. The default demo made 23K tasks for 3.2K
    trained groups without it."""
    context_tokens: int = 32
    """Target context length in tokens of the policy's tokenizer."""
    min_context_fill: float = 0.875
    """A task is made only when its context reaches this fraction of `context_tokens`; until a
    collection holds enough facts, its documents yield no tasks (counted)."""
    seed: int = 0
    """Mixed into every document's random stream."""
    synth_version: int = 3
    """Stamped on every task; bump when the composers change."""
    memory_context_tokens: tuple[int, ...] = (64, 128, 256)
    """Context lengths of memory-agent tasks (memory_kv), drawn per task: several times the
    memory agent's `chunk_tokens`, padded with other collections' facts."""
    multihop_hops: tuple[int, ...] = (2, 3, 4)
    """Path lengths of multi_hop tasks (2–6), drawn from each document's seeded stream."""
    max_evidence_chars: int = 32_000
    """Most characters of evidence spans a task carries (inline in its record, even when its
    context goes to the blob store): spans are kept whole and in order while they fit, and a
    task whose evidence was cut is counted. A whole table can be long; this keeps a task record
    far below Kafka's 1 MB message limit."""
    graph_window: int = 50_000
    """Most facts of a collection's graph a multi_hop or paradigm task is composed over (a
    stretch of the collection's arrival order drawn per task): the memory a task takes stays
    bounded however large the collection's graph on disk grows."""
    heldout_fraction: float = 0.0
    """Fraction of documents held out of training (by their text's hash: `compose.held_out`):
    they are not stored and yield no task, and held-out evaluation (`learner.heldout_documents`,
    `longtide eval`) composes its store tasks from them. 0 holds nothing out."""
    llm: LLMExtractorConfig = field(default_factory=LLMExtractorConfig)
    """An LLM extractor beside the rule-based ones (off by default)."""
    evidence_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Where the evidence documents of a store task sit in its context (the fraction of the
    context before them), drawn from each document's seeded stream."""
    obfuscation: float = 0.5
    """Fraction of multi_hop tasks whose start entity is named by another of its facts that
    no other entity shares ('Let E be the one that was founded in 1979. E …'), when one exists."""
    retrospect: RetrospectConfig = field(default_factory=RetrospectConfig)
    """Pass@k bins and retrospective sampling, from the scored groups."""
    resources: Resources = field(default_factory=Resources)
    """Ray resources of the synthesis actor."""

    def __post_init__(self) -> None:
        if not self.task_types:
            raise ValueError("synthesis.task_types must name at least one task type")
        if self.max_tasks_ahead < 0:
            raise ValueError(f"synthesis.max_tasks_ahead ({self.max_tasks_ahead}) must be >= 0 (0: never pause)")
        if self.poll_records < 1:
            raise ValueError(f"synthesis.poll_records ({self.poll_records}) must be >= 1")
        if self.max_evidence_chars < 1_000:
            raise ValueError(
                f"synthesis.max_evidence_chars ({self.max_evidence_chars}) must be >= 1000: a fact's sentence"
                " or a needle must fit"
            )
        if self.graph_window < 100:
            raise ValueError(
                f"synthesis.graph_window ({self.graph_window}) must be >= 100 facts: paths and comparisons"
                " need a stretch of the graph to choose from"
            )
        if not self.memory_context_tokens or min(self.memory_context_tokens) < 8:
            raise ValueError(
                f"synthesis.memory_context_tokens ({self.memory_context_tokens}) must name lengths >= 8 tokens"
            )
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError(
                f"synthesis.heldout_fraction ({self.heldout_fraction}) must lie in [0, 1), e.g. 0.2 (0 holds nothing out)"
            )
        if self.context_tokens < 8:
            raise ValueError(f"synthesis.context_tokens ({self.context_tokens}) must be >= 8")
        if not 0 < self.min_context_fill <= 1:
            raise ValueError(f"synthesis.min_context_fill ({self.min_context_fill}) must lie in (0, 1]")
        if self.tasks_per_document < 1:
            raise ValueError(f"synthesis.tasks_per_document ({self.tasks_per_document}) must be >= 1")
        if not self.multihop_hops or not all(2 <= h <= 6 for h in self.multihop_hops):
            raise ValueError(f"synthesis.multihop_hops ({self.multihop_hops}) must be path lengths in 2..6")
        if not 0 <= self.obfuscation <= 1:
            raise ValueError(f"synthesis.obfuscation ({self.obfuscation}) must be a fraction in [0, 1]")
        if not self.evidence_depths or not all(0 <= d <= 1 for d in self.evidence_depths):
            raise ValueError(f"synthesis.evidence_depths ({self.evidence_depths}) must be fractions in [0, 1]")
