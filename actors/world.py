"""A seeded synthetic world: entities with attributes and relations, spread over documents.

The world is the first task family's source of truth. Every entity gets one value per
attribute and one target per relation; each entity's facts are written as one short
document. Because the generator holds the ground truth, every question built from it has a
programmatically verified answer (see `tasks.py`).

Names and values come from a fixed lexicon (`LEXICON`) so that a word-level tokenizer built
once covers every world; two worlds with different seeds assign the lexicon differently, so
a model can only answer held-out questions by reading the context, never by memorising.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


def _entity_names(count: int) -> tuple[str, ...]:
    """Deterministic pseudo-word names: consonant-vowel-consonant-vowel, e.g. 'bako'."""
    names = [
        onset + vowel + coda + end for onset in _ONSETS for vowel in _VOWELS for coda in _ONSETS for end in _VOWELS
    ]
    return tuple(random.Random(0).sample(names, count))


ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "teal", "gold", "gray", "pink", "plum"),
    "city": ("oslo", "lima", "rome", "kyiv", "doha", "baku", "riga", "bern"),
    "metal": ("iron", "zinc", "lead", "tin", "gold", "nickel", "cobalt", "copper"),
    "animal": ("fox", "owl", "elk", "yak", "emu", "eel", "cat", "ram"),
}
"""Attribute name -> the values it can take (each a single word)."""

RELATIONS: tuple[str, ...] = ("boss", "friend")
"""Relations between entities; a relation's object is another entity of the same world."""

ENTITY_NAMES: tuple[str, ...] = _entity_names(48)

FUNCTION_WORDS: tuple[str, ...] = (".", "?", "question", "answer", ":")

LEXICON: tuple[str, ...] = tuple(
    dict.fromkeys(
        FUNCTION_WORDS
        + ENTITY_NAMES
        + tuple(ATTRIBUTE_VALUES)
        + RELATIONS
        + tuple(v for values in ATTRIBUTE_VALUES.values() for v in values)
    )
)
"""Every word any world can produce, in a fixed order (the tokenizer's training corpus)."""


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple; `relation` is an attribute or a relation."""

    subject: str
    relation: str
    object: str

    def sentence(self) -> str:
        """The fact as text: 'bako color teal .' (terse, so tiny models see short contexts)."""
        return f"{self.subject} {self.relation} {self.object} ."


@dataclass(frozen=True)
class World:
    """Entities, their facts, and one document per entity."""

    seed: int
    entities: tuple[str, ...]
    facts: tuple[Fact, ...]

    def lookup(self, subject: str, relation: str) -> str:
        """The object of `subject`'s `relation`; KeyError if the world has no such fact."""
        for fact in self.facts:
            if fact.subject == subject and fact.relation == relation:
                return fact.object
        raise KeyError((subject, relation))

    def facts_of(self, subject: str) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if f.subject == subject)

    def document(self, subject: str) -> str:
        """The entity's document: its facts, one sentence each."""
        return " ".join(f.sentence() for f in self.facts_of(subject))


def make_world(seed: int, n_entities: int = 16) -> World:
    """Build a world of `n_entities` entities with every attribute and relation assigned."""
    if not 2 <= n_entities <= len(ENTITY_NAMES):
        raise ValueError(
            f"n_entities ({n_entities}) must lie in [2, {len(ENTITY_NAMES)}]: the lexicon has that many names"
        )
    rng = random.Random(seed)
    entities = tuple(rng.sample(ENTITY_NAMES, n_entities))
    facts: list[Fact] = []
    for entity in entities:
        for attribute, values in ATTRIBUTE_VALUES.items():
            facts.append(Fact(entity, attribute, rng.choice(values)))
        others = [e for e in entities if e != entity]
        for relation in RELATIONS:
            facts.append(Fact(entity, relation, rng.choice(others)))
    return World(seed=seed, entities=entities, facts=tuple(facts))
