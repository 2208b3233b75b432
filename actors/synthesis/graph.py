"""Multi-hop questions over a collection's knowledge graph (the facts of all its documents).

`compose_path` is pure: a seeded random walk of `hops` edges, each edge a fact whose
(subject, relation) has exactly one object in the graph (so every step has one answer), whose
object is the next edge's subject, preferring an edge from another document than the previous
one, with no entity visited twice. The question names only the start and the relations:

    "Birchwood station was designed by the firm X1. X1 was founded in X2. What is X2"

`multihop_task` turns a path into a task: the evidence documents (≥ 2 of them) go into the
context among distractors from any collection, none of which states anything about a step's
(subject, relation) (another world's "geka friend" would give a step two answers); then the
independent solver follows the relations through the SQL store (not the walk's own index),
over the facts of the documents drawn for the context (a superset of those it holds), and
must reach the same answer; the answer must not appear in the question.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet

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
    window: int | None = None,
) -> MadeTask | Skipped:
    """With `obfuscate`, the start entity is named by another of its facts when one names it
    uniquely ('Let E be the one that was founded in 1979. E …'); one hop more to solve. The
    path is walked over `window` facts of the collection at most (`Corpus.facts`): a step
    unique there but not in the whole collection is still unique in the context, since no
    document stating that (subject, relation) is drawn as a distractor."""
    facts = corpus.facts(collection, window, rng)
    path = compose_path(facts, rng, hops)
    if path is None:
        return Skipped.NO_MATERIAL
    alias = describe(corpus, facts, path[0].subject, rng, path[0].relation) if obfuscate else None
    answer = path[-1].object
    question = path_question(path)
    if alias is not None:
        question = f"Let E be the one that {alias.relation} {alias.object}. " + path_question(path, "E")
    if entity_key(answer) in entity_key(question):
        return Skipped.LEAK

    def solve(in_context: list[str]) -> str | None:
        """Through SQL over the context's documents: one object per step."""
        here = path[0].subject
        if alias is not None:  # the description read back first (unique in the whole store)
            named = corpus.subjects(alias.relation, alias.object)
            if len(named) != 1:
                return None
            here = named[0]
        for fact in path:
            found = corpus.objects(here, fact.relation, doc_ids=in_context)
            if len(found) != 1:
                return None
            here = found[0]
        return here

    steps = hops + (alias is not None)
    composed = ComposedTask(TaskType.MULTI_HOP, "", question, answer, (), hops=steps)
    used = [*path, alias] if alias is not None else path
    clash = corpus.holding((f.subject, f.relation) for f in path)
    return in_context(corpus, composed, used, rng, context_tokens, count_tokens, depth, solve=solve, clash=clash)


def in_context(
    corpus: Corpus,
    composed: ComposedTask,
    used: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
    *,
    answer_kind: AnswerKind = AnswerKind.TEXT,
    difficulty: float | None = None,
    solve: Callable[[list[str]], str | None] | None = None,
    clash: AbstractSet[str] = frozenset(),
) -> MadeTask | Skipped:
    """A graph task with its context: the documents of the facts `used`, whole, among distractor
    documents from every collection but those in `clash`; `solve` (given every document drawn
    for the context) must then reach the answer. Each fact's span (sentence, line or table), as
    its document states it, is the evidence."""
    evidence = tuple(dict.fromkeys(f.doc_id for f in used))
    evidence_sized = list(corpus.sized_texts(evidence))
    drawn: list[str] = []

    def fillers() -> Iterator[str]:
        for doc_id in corpus.fillers(rng, set(evidence), clash=clash):
            drawn.append(doc_id)  # (a superset of those used: texts are fetched in batches)
            yield doc_id

    made = assemble_parts(evidence_sized, corpus.sized_texts(fillers()), context_tokens, count_tokens, depth)
    if made is None:
        return Skipped.NO_CONTEXT
    if solve is not None and entity_key(solve([*evidence, *drawn]) or "") != entity_key(composed.answer):
        return Skipped.UNVERIFIED
    hard = float(composed.hops) if difficulty is None else difficulty
    with_context = dataclasses.replace(composed, context=made.text())
    texts = {doc_id: text for doc_id, (text, _) in zip(evidence, evidence_sized, strict=True)}
    spans = tuple(dict.fromkeys(texts[f.doc_id][f.start : f.end] for f in used if f.end > f.start))
    return MadeTask(with_context, evidence, None, "", hard, answer_kind, made.tokens, spans)
