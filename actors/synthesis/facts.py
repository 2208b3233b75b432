"""Fact extraction: documents -> (subject, relation, object) triples.

The walking skeleton reads the synthetic world's sentence form ("bako color teal .") exactly;
text in any other form yields no facts (the synthesis actor counts such documents). Learned
extraction from free text is a later task family.
"""

from __future__ import annotations

from actors.world import ATTRIBUTE_VALUES, RELATIONS, Fact

KNOWN_RELATIONS = frozenset(ATTRIBUTE_VALUES) | frozenset(RELATIONS)


def extract_facts(text: str) -> list[Fact]:
    """Every 'subject relation object .' sentence whose relation is known."""
    facts = []
    for sentence in text.split(" ."):
        words = sentence.split()
        if len(words) == 3 and words[1] in KNOWN_RELATIONS:
            facts.append(Fact(*words))
    return facts
