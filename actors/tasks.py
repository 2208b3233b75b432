"""Task composers: verifiable questions over a set of facts, padded to a target context length.

Pure functions over `Fact` sequences and a seeded `random.Random`; no Kafka, no Ray. The
synthesis actor feeds them the facts it extracted from a collection's documents; the demo's
evaluation and the base-model script feed them a `World` directly.

Four task types (the first task family):
- `kv_retrieval`: "question : bako color ? answer :" -> "teal"; the one evidence fact is
  hidden among distractor facts.
- `two_hop`: "question : bako boss color ? answer :" -> the color of bako's boss; two
  evidence facts (the relation and the attribute), with distractors.

Context extension follows QwenLong-L1.5 §3 in miniature: distractor facts (other entities,
other attributes of the same entity) are added until the context reaches `context_tokens`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from actors.world import ATTRIBUTE_VALUES, RELATIONS, Fact


class TaskType(enum.StrEnum):
    KV_RETRIEVAL = "kv_retrieval"
    TWO_HOP = "two_hop"
    THREE_HOP = "three_hop"
    """Two relations, then an attribute: "bako boss friend color" -> the color of the friend
    of bako's boss; three evidence facts about three distinct entities."""
    MULTI_KV = "multi_kv"
    """Two key->value questions asked at once, in the world's language ("bako color kelo
    city" -> "teal lima"): multi-key retrieval that the tiny model can read. Scored as text,
    like every world task (unscaled list recall taught the tiny model to list context words,
    and its held-out accuracy fell from 0.32 to 0.01 in 100 RL steps)."""
    MEMORY_KV = "memory_kv"
    """Key->value over a context several times the memory agent's window, read chunk by chunk
    (actors.memory_agent); distractor facts may come from other collections."""
    REVERSE_KV = "reverse_kv"
    """Value -> key: "color teal" -> the one entity whose color is teal in the context."""
    TABLE_NUMERIC = "table_numeric"
    """Corpus numerical QA over a collection's tables (actors.synthesis.numeric): composed
    by the synthesis actor from its SQL corpus, not from facts, so it is not in COMPOSERS."""
    MULTI_HOP = "multi_hop"
    """A path of 2–6 facts over a collection's knowledge graph, across documents
    (actors.synthesis.graph); composed by the synthesis actor from its store."""
    KEYCHAIN = "keychain"
    """A table question hidden at the end of a UUID key chain among decoy chains (LoongRL;
    actors.synthesis.keychain); composed by the synthesis actor like table_numeric."""
    COMPARATIVE = "comparative"
    """Which of 2–4 entities has the largest (smallest) amount of one relation: an option
    answer (actors.synthesis.paradigms)."""
    TEMPORAL = "temporal"
    """Years between two dated facts of different entities (actors.synthesis.paradigms)."""
    MULTI_FACT = "multi_fact"
    """The sum of one relation's amounts over 2–3 entities (actors.synthesis.paradigms)."""
    NEEDLE = "needle"
    """One keyed number hidden among the documents (actors.synthesis.needles)."""
    MULTI_NEEDLE = "multi_needle"
    """2–4 keyed numbers asked together, among decoy needles (actors.synthesis.needles)."""
    DIALOGUE = "dialogue"
    """The latest value of something the user said, across a long conversation with
    updates (actors.synthesis.dialogue)."""


@dataclass(frozen=True)
class ComposedTask:
    """A question with its context and verified answer, before it becomes a `Task` record."""

    task_type: TaskType
    context: str
    question: str
    answer: str
    evidence: tuple[Fact, ...]
    hops: int


def word_count(text: str) -> int:
    """Token count under the tiny word-level tokenizer (one token per whitespace word)."""
    return len(text.split())


def _pad_context(
    evidence: Sequence[Fact],
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
) -> str:
    """Shuffle evidence with distractor facts until adding one more would pass the budget."""
    chosen = list(evidence)
    used = sum(count_tokens(f.sentence()) for f in chosen)
    pool = [f for f in facts if f not in evidence]
    rng.shuffle(pool)
    for fact in pool:
        cost = count_tokens(fact.sentence())
        if used + cost > context_tokens:
            break
        chosen.append(fact)
        used += cost
    rng.shuffle(chosen)
    return " ".join(f.sentence() for f in chosen)


def _kv(
    task_type: TaskType,
    facts: Sequence[Fact],
    distractors: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
) -> ComposedTask | None:
    candidates = [f for f in facts if f.relation in ATTRIBUTE_VALUES]
    if not candidates:
        return None
    target = rng.choice(candidates)
    # Drop distractors that would make the question ambiguous (same subject and relation).
    key = (target.subject, target.relation)
    pool = [f for f in (*facts, *distractors) if (f.subject, f.relation) != key]
    context = _pad_context([target], pool, rng, context_tokens, count_tokens)
    return ComposedTask(
        task_type=task_type,
        context=context,
        question=f"{target.subject} {target.relation}",
        answer=target.object,
        evidence=(target,),
        hops=1,
    )


def compose_kv_retrieval(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """One key->value question; None when the facts hold no attribute fact."""
    return _kv(TaskType.KV_RETRIEVAL, facts, (), rng, context_tokens, count_tokens)


def compose_memory_kv(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
    distractors: Sequence[Fact] = (),
) -> ComposedTask | None:
    """A key->value question about one of `facts` in a context of `context_tokens`, padded with
    `facts` and `distractors` (other collections' facts: a world alone is too short to fill
    many windows). Read by the memory agent."""
    return _kv(TaskType.MEMORY_KV, facts, distractors, rng, context_tokens, count_tokens)


def _chains(facts: Sequence[Fact], links: int) -> list[tuple[Fact, ...]]:
    """Every path of `links` relation facts through distinct entities, then one attribute of
    the last entity, in the order of `facts` (so a seeded choice is stable)."""
    index = {(f.subject, f.relation): f for f in facts}
    paths: list[tuple[Fact, ...]] = [(f,) for f in facts if f.relation in RELATIONS]
    for _ in range(links - 1):
        paths = [
            (*path, index[(path[-1].object, relation)])
            for path in paths
            for relation in RELATIONS
            if (path[-1].object, relation) in index
            and index[(path[-1].object, relation)].object not in {f.subject for f in path}
        ]
    return [
        (*path, index[(path[-1].object, attribute)])
        for path in paths
        for attribute in ATTRIBUTE_VALUES
        if (path[-1].object, attribute) in index
    ]


def _compose_chain(
    task_type: TaskType,
    links: int,
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    decoys: bool = False,
) -> ComposedTask | None:
    chains = _chains(facts, links)
    if not chains:
        return None
    chain = rng.choice(chains)
    keys = {(f.subject, f.relation) for f in chain}
    pool = [f for f in facts if (f.subject, f.relation) not in keys]
    shown = list(chain)
    if decoys:  # the asked attribute of every other entity on the path, so no type shortcut
        index = {(f.subject, f.relation): f for f in pool}
        asked = chain[-1].relation
        shown += [index[(f.subject, asked)] for f in chain[:-1] if (f.subject, asked) in index]
        pool = [f for f in pool if f not in shown]
    context = _pad_context(shown, pool, rng, context_tokens, count_tokens)
    return ComposedTask(
        task_type=task_type,
        context=context,
        question=" ".join((chain[0].subject, *(f.relation for f in chain))),
        answer=chain[-1].object,
        evidence=chain,
        hops=len(chain),
    )


def compose_two_hop(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """One two-hop question (relation, then attribute); None when no chain exists."""
    return _compose_chain(TaskType.TWO_HOP, 1, facts, rng, context_tokens, count_tokens)


def compose_three_hop(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """One three-hop question (two relations through three distinct entities, then an
    attribute): "bako boss friend color"; None when no such path exists."""
    return _compose_chain(TaskType.THREE_HOP, 2, facts, rng, context_tokens, count_tokens, decoys=True)


def compose_multi_kv(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """Two key->value questions about different entities, answered in order; None when the
    facts hold attribute facts of fewer than two entities."""
    candidates = [f for f in facts if f.relation in ATTRIBUTE_VALUES]
    if len({f.subject for f in candidates}) < 2:
        return None
    first = rng.choice(candidates)
    second = rng.choice([f for f in candidates if f.subject != first.subject])
    keys = {(first.subject, first.relation), (second.subject, second.relation)}
    pool = [f for f in facts if (f.subject, f.relation) not in keys]
    context = _pad_context([first, second], pool, rng, context_tokens, count_tokens)
    return ComposedTask(
        task_type=TaskType.MULTI_KV,
        context=context,
        question=f"{first.subject} {first.relation} {second.subject} {second.relation}",
        answer=f"{first.object} {second.object}",
        evidence=(first, second),
        hops=2,
    )


def compose_reverse_kv(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """The entity with a given attribute value; distractors never share that value."""
    candidates = [f for f in facts if f.relation in ATTRIBUTE_VALUES]
    if not candidates:
        return None
    target = rng.choice(candidates)
    pool = [
        f
        for f in facts
        if (f.relation, f.object) != (target.relation, target.object)
        and (f.subject, f.relation) != (target.subject, target.relation)
    ]
    context = _pad_context([target], pool, rng, context_tokens, count_tokens)
    return ComposedTask(
        task_type=TaskType.REVERSE_KV,
        context=context,
        question=f"{target.relation} {target.object}",
        answer=target.subject,
        evidence=(target,),
        hops=1,
    )


COMPOSERS: dict[TaskType, Callable[..., ComposedTask | None]] = {
    TaskType.KV_RETRIEVAL: compose_kv_retrieval,
    TaskType.TWO_HOP: compose_two_hop,
    TaskType.THREE_HOP: compose_three_hop,
    TaskType.MULTI_KV: compose_multi_kv,
    TaskType.REVERSE_KV: compose_reverse_kv,
    TaskType.MEMORY_KV: compose_memory_kv,
}

MEMORY_TASK_TYPES = frozenset({TaskType.MEMORY_KV})
"""Task types read by the memory agent, chunk by chunk (all others are read whole)."""


def render_prompt(context: str, question: str) -> str:
    """The text the policy sees; the answer follows as the continuation."""
    return f"{context} question : {question} ? answer :"
