"""Held-out store tasks: every store task type composed from documents training never sees.

The synthesis actor skips a document whose content hash falls in `synthesis.heldout_fraction`
(`actors.synthesis.compose.held_out`); this module reads the same files, keeps those documents
(or, for a model that never trained on them, every document), puts them in an in-memory store
of their own and composes a fixed set of tasks per (type, context length), seeded, so every
evaluation of a run (and `longtide eval` on any model) asks the same questions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from actors.ingest.actor import content_id
from actors.learner.evaluation import Heldout
from actors.synthesis.compose import compose_store, held_out, read_document
from actors.synthesis.config import SynthesisConfig
from actors.synthesis.context import JoinCounter
from actors.synthesis.corpus import Corpus
from actors.synthesis.table_tasks import Skipped
from actors.tasks import COMPOSERS, TaskType
from ops.feed import SAMPLE_CORPUS, documents_from_path

COLLECTION = "heldout"
ATTEMPTS = 8
"""Compositions tried per task wanted (a draw may find no path, no table, no room)."""


def store_types(task_types: Iterable[TaskType]) -> tuple[TaskType, ...]:
    """The store task types of a task mix (world and memory-agent types are composed elsewhere)."""
    return tuple(t for t in task_types if t not in COMPOSERS)


def read_documents(source: str) -> list[dict]:
    """The documents of a folder or file ('sample': the shipped corpus), as `longtide run`'s feed
    sends them."""
    path = SAMPLE_CORPUS if source == "sample" else Path(source)
    if not path.exists():
        raise ValueError(f"held-out documents {source!r}: no such file or folder")
    return list(documents_from_path(path, COLLECTION))


def store_heldout(
    documents: Sequence[dict],
    *,
    synthesis: SynthesisConfig,
    task_types: Sequence[TaskType],
    lengths: Sequence[int],
    per_cell: int,
    count_tokens: Callable[[str], int],
    seed: int = 0,
    everything: bool = False,
) -> list[Heldout]:
    """Up to `per_cell` tasks of each store type at each context length (tokens), labelled
    "needle@1024", from the held-out documents (all of them when `everything`)."""
    count = JoinCounter(count_tokens)
    corpus = Corpus(":memory:")
    try:
        for doc in documents:
            text = doc["text"]
            if not everything and not held_out(text, synthesis.heldout_fraction):
                continue
            doc_id = content_id(COLLECTION, text)
            tables, facts, _ = read_document(doc_id, text, dict(doc.get("attrs") or {}).get("format", ""))
            corpus.add_document(doc_id, COLLECTION, text, max(1, count_tokens(text)), tables, facts)
        tasks: list[Heldout] = []
        for task_type in store_types(task_types):
            for length in lengths:
                tasks += _cell(corpus, synthesis, task_type, length, per_cell, count, seed)
        return tasks
    finally:
        corpus.close()


def _cell(
    corpus: Corpus,
    synthesis: SynthesisConfig,
    task_type: TaskType,
    length: int,
    per_cell: int,
    count: Callable[[str], int],
    seed: int,
) -> list[Heldout]:
    label = f"{task_type.value}@{length}"
    made: dict[tuple[str, str], Heldout] = {}
    for attempt in range(ATTEMPTS * per_cell):
        if len(made) == per_cell:
            break
        rng = random.Random(f"heldout:{seed}:{label}:{attempt}")
        task = compose_store(corpus, COLLECTION, rng, task_type, synthesis, count, length)
        if isinstance(task, Skipped):
            continue
        key = (task.composed.question, task.composed.answer)
        made.setdefault(key, Heldout(label, task.composed, task.answer_kind))
    return list(made.values())
