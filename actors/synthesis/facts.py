"""A fact as every extractor returns it, and the synthetic world's sentence form.

`Fact` is (subject, relation, object) with the document and span it came from;
`world_sentences` reads the world's "subject relation object ." sentences exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.world import ATTRIBUTE_VALUES, RELATIONS
from actors.world import Fact as WorldFact

KNOWN_RELATIONS = frozenset(ATTRIBUTE_VALUES) | frozenset(RELATIONS)


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str
    doc_id: str
    start: int
    end: int
    """Character span of the evidence (sentence, line or table) in the document's text."""
    kind: str = "entity"
    """What the object is: 'entity', 'date', 'quantity' or 'value'."""
    extractor: str = ""


def world_sentences(text: str) -> list[WorldFact]:
    """Every 'subject relation object .' sentence whose relation is known."""
    facts = []
    for sentence in text.split(" ."):
        words = sentence.split()
        if len(words) == 3 and words[1] in KNOWN_RELATIONS:
            facts.append(WorldFact(*words))
    return facts
