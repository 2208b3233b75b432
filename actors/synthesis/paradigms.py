"""Reasoning paradigms over a collection's knowledge graph: comparative, temporal, multi-fact.

QwenLong-L1.5 §1 composes its graph questions in several paradigms; ours, each over facts of
one relation (or of years) from different entities, preferably in different documents:

- comparative: "For 'has Capacity (ML/day)', which of these has the largest value:
  (A) Saltmarsh, (B) Morrow East. Answer with the option's letter" → 'A' (an option answer);
- temporal: "Greyfell Ridge reservoir was completed in Y1. Aldane & Voss was founded in Y2.
  How many years after Y2 is Y1" → '8' (years from dates, or from year-valued table cells);
- multi-fact: "Saltmarsh has Staff X1. Morrow East has Staff X2. What is X1 + X2" → '17'.

`compose_*` are pure over the facts and a seeded stream and return a `Paradigm`: the question,
the answer and the facts it needs. `paradigm_task` is the independent check before
publishing: it reads each fact's object back from the SQL store across every collection (one
object per (subject, relation), since distractor documents come from any collection),
recomputes the answer from those, and must agree.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from actors.synthesis.corpus import Corpus, entity_key
from actors.synthesis.extract import Fact
from actors.synthesis.graph import in_context, unique_edges
from actors.synthesis.numeric import format_number, leaks
from actors.synthesis.table_tasks import MadeTask, Skipped
from actors.synthesis.tables import parse_number
from actors.tasks import ComposedTask, TaskType
from schemas import AnswerKind

_YEAR = re.compile(r"(?:\d{1,2}\s+)?(?:[A-Za-z]+\s+)?(?:\d{1,2},\s+)?(1[89]\d\d|20\d\d)")
LETTERS = "ABCD"
_VARIABLE = re.compile(r"\b[XY]\d\b")
"""The question's placeholders (X1, Y2): their digits are not numbers a reader could copy."""
_YEAR_RELATION = re.compile(r"year|opened|founded|built|since|date|completed|established|in$", re.IGNORECASE)
"""A relation whose quantity objects are years (a table's 'Opened' column, 'was completed in')."""


def year_of(obj: str) -> int | None:
    """'1998' → 1998, 'March 2023' → 2023, '15 August 1947' → 1947; None for anything else."""
    match = _YEAR.fullmatch(obj.strip())
    return int(match.group(1)) if match else None


def amount_of(obj: str) -> tuple[float, str] | None:
    """'41 square kilometres' → (41.0, 'square kilometres'), '1,840' → (1840.0, ''); None for
    years (temporal, not amounts) and for anything that does not start with a number."""
    words = obj.split()
    if not words or year_of(obj) is not None:
        return None
    value = parse_number(words[0])
    return None if value is None else (value, " ".join(words[1:]))


@dataclass(frozen=True)
class Paradigm:
    task_type: TaskType
    question: str
    answer: str
    answer_kind: AnswerKind
    facts: tuple[Fact, ...]
    """The facts the answer needs, in the question's order."""
    direction: str = ""
    """comparative: 'largest' or 'smallest'."""


def _single(facts: Sequence[Fact]) -> list[Fact]:
    """Facts whose (subject, relation) has one object in the collection."""
    return [f for fs in unique_edges(facts).values() for f in fs]


def _spread(candidates: list[Fact], rng: random.Random, k: int) -> list[Fact] | None:
    """`k` facts about different subjects, from ≥ 2 documents when the candidates allow."""
    by_subject: dict[str, Fact] = {}
    for f in candidates:
        by_subject.setdefault(entity_key(f.subject), f)
    pool = list(by_subject.values())
    if len(pool) < k:
        return None
    many_docs = len({f.doc_id for f in pool}) >= 2
    for _ in range(20):
        chosen = rng.sample(pool, k)
        if not many_docs or len({f.doc_id for f in chosen}) >= 2:
            return chosen
    return None


def _amount_groups(facts: Sequence[Fact]) -> list[list[Fact]]:
    """Facts with an amount, grouped by (relation, unit), groups of ≥ 2 subjects."""
    groups: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    for f in _single(facts):
        found = amount_of(f.object)
        if found is not None and f.kind != "date":  # "6 June 1523" is no amount of June
            groups[(f.relation, found[1])].append(f)
    return [g for _, g in sorted(groups.items()) if len({entity_key(f.subject) for f in g}) >= 2]


def _amounts(facts: Sequence[Fact], rng: random.Random, most: int) -> list[Fact] | None:
    """2..`most` facts of one (relation, unit) group of amounts, about different subjects."""
    groups = _amount_groups(facts)
    if not groups:
        return None
    group = rng.choice(groups)
    return _spread(group, rng, rng.randint(2, min(most, len({entity_key(f.subject) for f in group}))))


def compose_comparative(facts: Sequence[Fact], rng: random.Random) -> Paradigm | None:
    chosen = _amounts(facts, rng, 4)
    if chosen is None:
        return None
    values = [amount_of(f.object)[0] for f in chosen]
    direction = rng.choice(("largest", "smallest"))
    best = max(values) if direction == "largest" else min(values)
    if values.count(best) != 1:
        return None  # a tie has no single answer
    options = ", ".join(f"({LETTERS[i]}) {f.subject}" for i, f in enumerate(chosen))
    question = (
        f"For '{chosen[0].relation}', which of these has the {direction} value: {options}. "
        "Answer with the option's letter"
    )
    answer = LETTERS[values.index(best)]
    return Paradigm(TaskType.COMPARATIVE, question, answer, AnswerKind.OPTION, tuple(chosen), direction)


def compose_temporal(facts: Sequence[Fact], rng: random.Random) -> Paradigm | None:
    dated = [
        f
        for f in _single(facts)
        if year_of(f.object) is not None
        and (f.kind == "date" or (f.kind == "quantity" and _YEAR_RELATION.search(f.relation)))
    ]
    pair = _spread(dated, rng, 2)
    if pair is None:
        return None
    later, earlier = sorted(pair, key=lambda f: year_of(f.object), reverse=True)
    gap = year_of(later.object) - year_of(earlier.object)
    if gap == 0:
        return None
    question = (
        f"{later.subject} {later.relation} Y1. {earlier.subject} {earlier.relation} Y2. How many years after Y2 is Y1"
    )
    return Paradigm(TaskType.TEMPORAL, question, str(gap), AnswerKind.NUMERIC, (later, earlier))


def compose_multi_fact(facts: Sequence[Fact], rng: random.Random) -> Paradigm | None:
    chosen = _amounts(facts, rng, 3)
    if chosen is None:
        return None
    unit = amount_of(chosen[0].object)[1]
    named = " ".join(f"{f.subject} {f.relation} X{i}." for i, f in enumerate(chosen, 1))
    addends = " + ".join(f"X{i}" for i in range(1, len(chosen) + 1))
    question = f"{named} What is {addends}" + (f", in {unit}" if unit else "")
    total = math.fsum(amount_of(f.object)[0] for f in chosen)
    answer = format_number(total)
    if float(answer) != total:
        question += ", to 2 decimal places"  # the gold answer is rounded so
    return Paradigm(TaskType.MULTI_FACT, question, answer, AnswerKind.NUMERIC, tuple(chosen))


PARADIGMS: dict[TaskType, Callable[[Sequence[Fact], random.Random], Paradigm | None]] = {
    TaskType.COMPARATIVE: compose_comparative,
    TaskType.TEMPORAL: compose_temporal,
    TaskType.MULTI_FACT: compose_multi_fact,
}


def solve(paradigm: Paradigm, objects: Sequence[str]) -> str | None:
    """The independent solver: the answer from the objects the store holds for the paradigm's
    (subject, relation) pairs, in order; None when one cannot be read."""
    if paradigm.task_type is TaskType.TEMPORAL:
        years = [year_of(o) for o in objects]
        return None if None in years else str(years[0] - years[1])
    amounts = [amount_of(o) for o in objects]
    if None in amounts:
        return None
    values = [a[0] for a in amounts]
    if paradigm.task_type is TaskType.MULTI_FACT:
        return format_number(math.fsum(values))
    best = max(values) if paradigm.direction == "largest" else min(values)
    return LETTERS[values.index(best)] if values.count(best) == 1 else None


def paradigm_task(
    corpus: Corpus,
    collection: str,
    task_type: TaskType,
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
    window: int | None = None,
) -> MadeTask | Skipped:
    """Over `window` facts of the collection at most (`Corpus.facts`); the solver reads every
    (subject, relation) back from the whole store."""
    paradigm = PARADIGMS[task_type](corpus.facts(collection, window, rng), rng)
    if paradigm is None:
        return Skipped.NO_MATERIAL
    objects = [corpus.objects(f.subject, f.relation) for f in paradigm.facts]  # every collection
    if any(len(found) != 1 for found in objects) or solve(paradigm, [o[0] for o in objects]) != paradigm.answer:
        return Skipped.UNVERIFIED
    if paradigm.answer_kind == AnswerKind.NUMERIC and leaks(paradigm.answer, _VARIABLE.sub("", paradigm.question)):
        return Skipped.LEAK
    hops = len(paradigm.facts)
    composed = ComposedTask(task_type, "", paradigm.question, paradigm.answer, (), hops=hops)
    return in_context(
        corpus, composed, paradigm.facts, rng, context_tokens, count_tokens, depth, answer_kind=paradigm.answer_kind
    )
