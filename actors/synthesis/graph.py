"""Multi-hop questions over a collection's knowledge graph (the facts of all its documents).

`compose_path` is pure: a seeded random walk of `hops` edges, each edge a fact whose
(subject, relation) has exactly one object in the graph (so every step has one answer), whose
object is the next edge's subject, preferring an edge from another document than the previous
one, with no entity visited twice. The question names only the start and the relations:

    "Birchwood station was designed by the firm X1. X1 was founded in X2. What is X2"

`multihop_task` turns a path into a task: the independent solver follows the relations
through the SQL store (not the walk's own index), over every collection since distractors
come from any of them, and must reach the same answer; the answer
must not appear in the question; the evidence documents (≥ 2 of them) go into the context
among distractors, like table tasks.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from actors.synthesis.context import assemble_parts
from actors.synthesis.corpus import Corpus, entity_key
from actors.synthesis.extract import Fact
from actors.synthesis.table_tasks import MadeTask, Skipped
from actors.tasks import ComposedTask, TaskType
from schemas import AnswerKind


def unique_edges(facts: Sequence[Fact]) -> dict[str, list[Fact]]:
    """subject key → its facts whose (subject, relation) has one object only."""
    objects: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in facts:
        objects[(entity_key(f.subject), f.relation)].add(entity_key(f.object))
    out: dict[str, list[Fact]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for f in facts:
        key = (entity_key(f.subject), f.relation)
        if len(objects[key]) == 1 and key not in seen:
            seen.add(key)
            out[key[0]].append(f)
    return out


def compose_path(facts: Sequence[Fact], rng: random.Random, hops: int, tries: int = 50) -> list[Fact] | None:
    """A path of `hops` edges over ≥ 2 documents, or None when the graph has none found."""
    edges = unique_edges(facts)
    starts = [f for fs in edges.values() for f in fs if f.kind == "entity" and entity_key(f.object) in edges]
    for _ in range(tries if starts else 0):
        path = [rng.choice(starts)]
        visited = {entity_key(path[0].subject), entity_key(path[0].object)}
        while len(path) < hops:
            here = entity_key(path[-1].object)
            options = [f for f in edges.get(here, []) if entity_key(f.object) not in visited]
            if len(path) < hops - 1:
                options = [f for f in options if f.kind == "entity" and entity_key(f.object) in edges]
            if not options:
                break
            other_docs = [f for f in options if f.doc_id != path[-1].doc_id]
            path.append(rng.choice(other_docs or options))
            visited.add(entity_key(path[-1].object))
        if len(path) == hops and len({f.doc_id for f in path}) >= 2:
            return path
    return None


def path_question(path: Sequence[Fact], start: str | None = None) -> str:
    """'{start} {r1} X1. X1 {r2} X2. … What is Xk' (the prompt adds ' ? answer :'); `start`
    replaces the first entity's name (entity obfuscation: 'E')."""
    parts = [f"{start or path[0].subject} {path[0].relation} X1."]
    parts += [f"X{i} {f.relation} X{i + 1}." for i, f in enumerate(path[1:], 1)]
    return " ".join(parts) + f" What is X{len(path)}"


def describe(corpus: Corpus, facts: Sequence[Fact], entity: str, rng: random.Random, avoid: str) -> Fact | None:
    """A fact that names `entity` without its name: its (relation, object) belongs to no other
    subject anywhere in the store, checked in SQL (entity obfuscation), or None. Dates and
    quantities are not used: "1979" and "May 1979" are different objects to SQL but not to a
    reader."""
    key = entity_key(entity)
    own = [f for f in facts if entity_key(f.subject) == key and f.relation != avoid and f.kind in ("entity", "value")]
    rng.shuffle(own)
    for fact in own:
        if [entity_key(s) for s in corpus.subjects(fact.relation, fact.object)] == [key]:
            return fact
    return None


def multihop_task(
    corpus: Corpus,
    collection: str,
    rng: random.Random,
    hops: int,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
    obfuscate: bool = False,
) -> MadeTask | Skipped:
    """With `obfuscate`, the start entity is named by another of its facts when one names it
    uniquely ('Let E be the one that was founded in 1979. E …'); one hop more to solve."""
    facts = corpus.facts(collection)
    path = compose_path(facts, rng, hops)
    if path is None:
        return Skipped.NO_MATERIAL
    alias = describe(corpus, facts, path[0].subject, rng, path[0].relation) if obfuscate else None
    here = path[0].subject
    if alias is not None:  # the solver reads the description back through SQL first
        named = corpus.subjects(alias.relation, alias.object)
        if len(named) != 1:
            return Skipped.UNVERIFIED
        here = named[0]
    for fact in path:  # the solver: through SQL, one object per step in the whole store
        found = corpus.objects(here, fact.relation)  # (distractors come from every collection)
        if len(found) != 1:
            return Skipped.UNVERIFIED
        here = found[0]
    answer = path[-1].object
    question = path_question(path)
    if alias is not None:
        question = f"Let E be the one that {alias.relation} {alias.object}. " + path_question(path, "E")
    if entity_key(here) != entity_key(answer):
        return Skipped.UNVERIFIED
    if entity_key(answer) in entity_key(question):
        return Skipped.LEAK
    steps = hops + (alias is not None)
    composed = ComposedTask(TaskType.MULTI_HOP, "", question, answer, (), hops=steps)
    doc_ids = [f.doc_id for f in path] + ([alias.doc_id] if alias else [])
    return in_context(corpus, composed, doc_ids, rng, context_tokens, count_tokens, depth)


def in_context(
    corpus: Corpus,
    composed: ComposedTask,
    doc_ids: Sequence[str],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
    *,
    answer_kind: AnswerKind = AnswerKind.TEXT,
    difficulty: float | None = None,
) -> MadeTask | Skipped:
    """A graph task with its context: the evidence documents, whole, among distractor documents
    from every collection (no document can contradict a step: the solver checked that each
    (subject, relation) has one object in the whole store)."""
    evidence = tuple(dict.fromkeys(doc_ids))
    fillers = corpus.fillers(rng, set(evidence))
    made = assemble_parts(
        corpus.sized_texts(list(evidence)), corpus.sized_texts(fillers), context_tokens, count_tokens, depth
    )
    if made is None:
        return Skipped.NO_CONTEXT
    hard = float(composed.hops) if difficulty is None else difficulty
    with_context = dataclasses.replace(composed, context=made.text())
    return MadeTask(with_context, evidence, None, "", hard, answer_kind, made.tokens)
