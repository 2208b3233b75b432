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
    MULTI_KV = "multi_kv"
    """Two key->value questions asked at once, in the world's language ("bako color kelo
    city" -> "teal lima"): multi-key retrieval that the tiny model can read. Scored as text,
    like every world task (unscaled list recall taught the tiny model to list context words,
    and its held-out accuracy fell from 0.32 to 0.01 in 100 RL steps)."""
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


def compose_kv_retrieval(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """One key->value question; None when the facts hold no attribute fact."""
    candidates = [f for f in facts if f.relation in ATTRIBUTE_VALUES]
    if not candidates:
        return None
    target = rng.choice(candidates)
    # Drop distractors that would make the question ambiguous (same subject and relation).
    pool = [f for f in facts if (f.subject, f.relation) != (target.subject, target.relation)]
    context = _pad_context([target], pool, rng, context_tokens, count_tokens)
    return ComposedTask(
        task_type=TaskType.KV_RETRIEVAL,
        context=context,
        question=f"{target.subject} {target.relation}",
        answer=target.object,
        evidence=(target,),
        hops=1,
    )


def compose_two_hop(
    facts: Sequence[Fact],
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int] = word_count,
) -> ComposedTask | None:
    """One two-hop question (relation, then attribute); None when no chain exists."""
    index = {(f.subject, f.relation): f for f in facts}
    chains = [
        (link, index[(link.object, attribute)])
        for link in facts
        if link.relation in RELATIONS
        for attribute in ATTRIBUTE_VALUES
        if (link.object, attribute) in index
    ]
    if not chains:
        return None
    link, leaf = rng.choice(chains)
    keys = {(link.subject, link.relation), (leaf.subject, leaf.relation)}
    pool = [f for f in facts if (f.subject, f.relation) not in keys]
    context = _pad_context([link, leaf], pool, rng, context_tokens, count_tokens)
    return ComposedTask(
        task_type=TaskType.TWO_HOP,
        context=context,
        question=f"{link.subject} {link.relation} {leaf.relation}",
        answer=leaf.object,
        evidence=(link, leaf),
        hops=2,
    )


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
    TaskType.MULTI_KV: compose_multi_kv,
    TaskType.REVERSE_KV: compose_reverse_kv,
}


def render_prompt(context: str, question: str) -> str:
    """The text the policy sees; the answer follows as the continuation."""
    return f"{context} question : {question} ? answer :"
