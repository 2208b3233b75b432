"""One corpus numerical task, end to end: a question over a merged table, its gold answer from
SQL, the independent solver's agreement, the leak check, and the context of its evidence
documents among distractors (`actors.synthesis.numeric`, `.corpus`, `.context`)."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from actors.synthesis.context import assemble
from actors.synthesis.corpus import Corpus
from actors.synthesis.numeric import (
    Spec,
    compose_numeric,
    difficulty,
    evidence_rows,
    format_number,
    leaks,
    question_text,
    rows_of,
    solve,
    to_sql,
)
from actors.tasks import ComposedTask, TaskType


class Skipped(enum.Enum):
    NO_TABLE = "no_table"
    """The collection has no table with a numeric column (yet)."""
    UNVERIFIED = "unverified"
    """SQL and the independent solver disagree: the task is not published."""
    LEAK = "leak"
    """The answer can be read off the question."""
    NO_CONTEXT = "no_context"
    """The evidence is longer than the target, or too few documents fill it."""


@dataclass(frozen=True)
class TableTask:
    composed: ComposedTask
    doc_ids: tuple[str, ...]
    """The evidence documents, in table order."""
    spec: Spec
    sql: str
    difficulty: float


def table_task(
    corpus: Corpus,
    collection: str,
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
) -> TableTask | Skipped:
    tables = [t for t in corpus.tables(collection) if t.numeric_columns()]
    if not tables:
        return Skipped.NO_TABLE
    table = rng.choice(tables)
    spec = compose_numeric(table, rng)
    if spec is None:
        return Skipped.NO_TABLE
    sql, params = to_sql(spec, table.name)
    gold = corpus.scalar(sql, params)
    if gold is None or not math.isclose(gold, solve(spec, table), rel_tol=1e-9, abs_tol=1e-9):
        return Skipped.UNVERIFIED
    answer, question = format_number(gold), question_text(spec, table)
    if leaks(answer, question):
        return Skipped.LEAK
    evidence = rows_of(table, evidence_rows(spec, table))
    fillers = corpus.filler_ids(set(evidence), table.columns)
    rng.shuffle(fillers)
    context = assemble(
        corpus.texts(list(evidence)),
        (text for doc_id in fillers for text in corpus.texts([doc_id])),
        context_tokens,
        count_tokens,
        depth,
    )
    if context is None:
        return Skipped.NO_CONTEXT
    composed = ComposedTask(TaskType.TABLE_NUMERIC, context, question, answer, (), hops=len(evidence))
    return TableTask(composed, evidence, spec, sql, difficulty(spec, table))
