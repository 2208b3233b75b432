"""The memory actor's configuration (section `memory`). Importable without torch: the CLI and the launcher
read it without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.settings import EngineKind, Resources, VLLMSettings


@dataclass(frozen=True)
class MemoryConfig:
    """Continuous per-collection memory and its query endpoint."""

    enabled: bool = False
    """Run the memory actor (it reads every document once per question, with the policy)."""
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Standing questions per collection; the key "*" applies to every collection."""
    summary_question: str = "summary"
    """The prompt of each collection's summary memory, kept beside the standing questions."""
    engine: EngineKind = EngineKind.TRANSFORMERS
    """Engine for reading and answering (greedy); vLLM pays its start-up for a second copy."""
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    """vLLM settings when `engine` is vllm."""
    http_host: str = "127.0.0.1"
    """Where the query endpoint listens (loopback by default)."""
    http_port: int = 0
    """Its port; 0 takes a free one, recorded in the run's state file for `longtide ask`."""
    max_request_bytes: int = 16_384
    """Larger query bodies are refused with 413."""
    max_question_chars: int = 2_000
    """Longer questions are refused with 422."""
    max_asked_questions: int = 8
    """Questions asked of one collection (beyond its standing ones) that get a memory of their
    own: each reads the collection from its start, then every new document (a read per document
    and question), so the number is bounded; one more is refused with 409."""
    catch_up_questions: int = 16
    """Asked questions advanced by one round of catch-up (one document each, one engine call per
    chunk for all of them), between polls of `docs`."""
    metric_collections: int = 20
    """Collections with per-collection series (`collection` label): the most recently active."""
    store: str = "memory.sqlite"
    """The store's file, in the run's own directory (`<run_dir>/runs/<run id>/`)."""
    resources: Resources = field(default_factory=Resources)
    """Ray resources of the memory actor."""

    def __post_init__(self) -> None:
        if not self.summary_question.strip():
            raise ValueError("memory.summary_question must not be empty: it prompts every collection's summary")
        for collection, questions in self.questions.items():
            if any(not q.strip() for q in questions):
                raise ValueError(f"memory.questions[{collection!r}] has an empty question")
        if not 0 <= self.http_port < 65536:
            raise ValueError(f"memory.http_port ({self.http_port}) must lie in [0, 65535]; 0 takes a free port")
        if self.max_request_bytes < 256 or self.max_question_chars < 1:
            raise ValueError("memory.max_request_bytes must be >= 256 and memory.max_question_chars >= 1")
        if self.max_asked_questions < 0 or self.catch_up_questions < 1 or self.metric_collections < 0:
            raise ValueError(
                f"memory.max_asked_questions ({self.max_asked_questions}) and memory.metric_collections "
                f"({self.metric_collections}) must be >= 0, memory.catch_up_questions ({self.catch_up_questions}) >= 1"
            )

    def questions_of(self, collection: str) -> tuple[str, ...]:
        """The collection's standing questions, then the summary (each once)."""
        found = (*self.questions.get(collection, ()), *self.questions.get("*", ()), self.summary_question)
        return tuple(dict.fromkeys(normal_question(q) for q in found))


def normal_question(question: str) -> str:
    """A question as memories are kept for it: its words, single-spaced."""
    return " ".join(question.split())
