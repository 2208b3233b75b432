"""Store tasks from a store, and the held-out split: shared by the synthesis actor (training
tasks) and `ops.heldout` (the evaluation's tasks, from documents training never sees).

`read_document` turns a document's text into its tables and facts; `compose_store` draws one
store task of a type over a collection of the store; `held_out` says whether a document
belongs to the held-out part of any corpus. The split goes by the text's content hash (not
by collection, not by the order documents arrive), so the synthesis actor and an evaluation
reading the same files from disk agree on every document without talking to each other.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from actors.synthesis.config import SynthesisConfig
from actors.synthesis.corpus import Corpus
from actors.synthesis.dialogue import dialogue_task
from actors.synthesis.extract import Fact, extract
from actors.synthesis.graph import multihop_task
from actors.synthesis.needles import needle_task
from actors.synthesis.paradigms import paradigm_task
from actors.synthesis.table_tasks import MadeTask, Skipped, table_task
from actors.synthesis.tables import Table, extract_tables
from actors.tasks import TaskType


def held_out(text: str, fraction: float) -> bool:
    """Whether a document with this text is held out of training (`synthesis.heldout_fraction`):
    its SHA-256 read as a number in [0, 1) falls below `fraction`."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def read_document(doc_id: str, text: str, fmt: str) -> tuple[list[Table], list[Fact], list[str]]:
    """A document's tables, its facts (from every extractor) and the problems its tables had."""
    tables, problems = extract_tables(doc_id, text, fmt)
    return tables, extract(doc_id, text, tables), problems


def compose_store(
    corpus: Corpus,
    collection: str,
    rng: random.Random,
    task_type: TaskType,
    config: SynthesisConfig,
    count: Callable[[str], int],
    context_tokens: int,
) -> MadeTask | Skipped:
    """One store task of `task_type` with a context of `context_tokens`; the depth, the hops
    and every other choice are drawn from `rng`, so the same stream draws the same task."""
    depth = rng.choice(config.evidence_depths)
    hops = rng.choice(config.multihop_hops)
    window = config.graph_window
    match task_type:
        case TaskType.MULTI_HOP:
            obfuscate = rng.random() < config.obfuscation
            return multihop_task(corpus, collection, rng, hops, context_tokens, count, depth, obfuscate, window)
        case TaskType.TABLE_NUMERIC | TaskType.KEYCHAIN:
            chained = task_type is TaskType.KEYCHAIN
            return table_task(corpus, collection, rng, context_tokens, count, depth, keychain=chained)
        case TaskType.NEEDLE | TaskType.MULTI_NEEDLE:
            asked = 1 if task_type is TaskType.NEEDLE else rng.randint(2, 4)
            return needle_task(corpus, rng, context_tokens, count, depth, asked)
        case TaskType.DIALOGUE:
            return dialogue_task(corpus, rng, context_tokens, count, depth, updates=rng.randint(0, 2))
        case _:
            return paradigm_task(corpus, collection, task_type, rng, context_tokens, count, depth, window)
