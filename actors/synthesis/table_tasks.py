"""One corpus numerical task, end to end: a question over a merged table, its gold answer from
SQL, the independent solver's agreement, the leak check, and the context of its evidence
documents among distractors (`actors.synthesis.numeric`, `.corpus`, `.context`)."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from actors.synthesis.context import SEPARATOR, JoinCounter, assemble_parts, counter, on_target
from actors.synthesis.corpus import Corpus
from actors.synthesis.keychain import (
    default_chains,
    follow,
    keychain_question,
    line_pieces,
    make_chains,
    scatter,
)
from actors.synthesis.numeric import (
    CorpusTable,
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
from schemas import AnswerKind

CHAIN_LENGTH = 4
"""Keys per chain (LoongRL)."""


class Skipped(enum.Enum):
    NO_MATERIAL = "no_material"
    """The collection has nothing to ask about yet (no numeric table, no path in its graph)."""
    UNVERIFIED = "unverified"
    """SQL and the independent solver disagree: the task is not published."""
    LEAK = "leak"
    """The answer can be read off the question."""
    NO_CONTEXT = "no_context"
    """The evidence is longer than the target, or too few documents fill it."""


@dataclass(frozen=True)
class MadeTask:
    composed: ComposedTask
    doc_ids: tuple[str, ...]
    """The evidence documents, in table order."""
    spec: Spec | None
    """The table question (None for graph tasks)."""
    sql: str
    difficulty: float
    answer_kind: AnswerKind = AnswerKind.NUMERIC
    """How the reward verifies the answer: 'text' (sub_em or exact), 'numeric' or 'option'."""
    tokens: int = 0
    """The context's token count (as assembled, without counting it again)."""
    evidence: tuple[str, ...] = ()
    """The spans of the context that prove the answer, verbatim (`Task.evidence`)."""


def fit_evidence(spans: Sequence[str], limit: int) -> tuple[tuple[str, ...], bool]:
    """The spans, whole and in order, while their characters add up to at most `limit`; and
    whether any was left out."""
    kept: list[str] = []
    used = 0
    for span in spans:
        if used + len(span) > limit:
            return tuple(kept), True
        kept.append(span)
        used += len(span)
    return tuple(kept), False


def table_task(
    corpus: Corpus,
    collection: str,
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] | JoinCounter,
    depth: float,
    keychain: bool = False,
) -> MadeTask | Skipped:
    """With `keychain`, the question is hidden at the end of a UUID key chain among decoy
    chains ending in other questions over the same table (`actors.synthesis.keychain`)."""
    tables = [t for t in corpus.tables(collection) if t.numeric_columns()]
    if not tables:
        return Skipped.NO_MATERIAL
    table = rng.choice(tables)
    spec = compose_numeric(table, rng)
    if spec is None:
        return Skipped.NO_MATERIAL
    sql, params = to_sql(spec, table.name)
    gold = corpus.scalar(sql, params)
    if gold is None or not math.isclose(gold, solve(spec, table), rel_tol=1e-9, abs_tol=1e-9):
        return Skipped.UNVERIFIED
    answer, question = format_number(gold), question_text(spec, table)
    if not float(answer).is_integer():
        question += ", to 2 decimal places"  # the gold answer is rounded so
    if leaks(answer, question):
        return Skipped.LEAK
    evidence = rows_of(table, evidence_rows(spec, table))
    fillers = corpus.fillers(rng, set(evidence), table.columns, table.title)
    count = counter(count_tokens)
    chain, chain_tokens, chains, line_tokens = None, 0, default_chains(context_tokens), []
    sep = count(SEPARATOR)
    decoys = _decoys(spec, table, question, answer, rng) if keychain else []
    while keychain:  # LoongRL's density, halved while the chains would take over half the context
        chain = make_chains(question, decoys, rng, chains, CHAIN_LENGTH)
        pieces = count.cached([piece for line in chain.lines for piece in line_pieces(line)])
        line_tokens = [a + b for a, b in zip(pieces[::2], pieces[1::2], strict=True)]
        chain_tokens = sum(line_tokens) + sep * len(line_tokens)  # near enough to budget with
        if chain_tokens <= context_tokens // 2 or chains == 2:
            break
        chains = max(2, chains // 2)
    if chain_tokens > context_tokens // 2:
        return Skipped.NO_CONTEXT
    evidence_sized = list(corpus.sized_texts(evidence))
    texts = {doc_id: text for doc_id, (text, _) in zip(evidence, evidence_sized, strict=True)}
    made = assemble_parts(
        evidence_sized,
        corpus.sized_texts(fillers),
        context_tokens - chain_tokens,
        count,
        depth,
    )
    if made is None:
        return Skipped.NO_CONTEXT
    if chain is None:
        composed = ComposedTask(TaskType.TABLE_NUMERIC, made.text(), question, answer, (), hops=len(evidence))
        spans = corpus.table_spans(texts, table.columns)
        return MadeTask(composed, evidence, spec, sql, difficulty(spec, table), tokens=made.tokens, evidence=spans)
    lines = list(zip(chain.lines, line_tokens, strict=True))
    finished = on_target(count, scatter(made.sized(), lines, rng), context_tokens)
    if finished is None or follow(chain.lines, chain.head) != question:
        return Skipped.NO_CONTEXT
    context, tokens = finished
    hops = len(evidence) + CHAIN_LENGTH
    composed = ComposedTask(TaskType.KEYCHAIN, context, keychain_question(chain.head), answer, (), hops=hops)
    spans = corpus.table_spans(texts, table.columns) + chain.real
    hard = difficulty(spec, table) + CHAIN_LENGTH
    return MadeTask(composed, evidence, spec, sql, hard, tokens=tokens, evidence=spans)


def _decoys(spec: Spec, table: CorpusTable, question: str, answer: str, rng: random.Random) -> list[str]:
    """Questions for the decoy chains to end in: others over the same table, whose answers
    differ from the real one."""
    decoys: list[str] = []
    for _ in range(20):
        other = compose_numeric(table, rng)
        if other is not None and other != spec and format_number(solve(other, table)) != answer:
            decoys.append(question_text(other, table))
    return list(dict.fromkeys(decoys)) or [f"{question} (ignore this chain)"]
