"""Corpora shared by tests: the shipped sample corpus as a store (with synthetic worlds to pad
contexts with), and filler documents."""

from __future__ import annotations

from pathlib import Path

from actors.synthesis.corpus import Corpus
from actors.synthesis.extract import extract
from actors.synthesis.tables import extract_tables
from actors.tasks import word_count
from ops.feed import SAMPLE_CORPUS, documents_from_path, world_documents

CORPUS = SAMPLE_CORPUS
"""The shipped sample corpus's folder (`ops/corpus`: markdown and CSV documents with tables)."""


def sample_corpus(facts: bool = False) -> Corpus:
    """The shipped corpus as collection 'water', and synthetic worlds' documents (other
    collections, no tables) to pad contexts with; with `facts`, every document's facts (the
    knowledge graph), as the synthesis actor stores them."""
    corpus = Corpus(":memory:")
    for i, doc in enumerate(world_documents(worlds=20, entities_per_world=8, seed=0)):
        found = extract(f"world{i}", doc["text"], []) if facts else []  # as the actor stores them
        corpus.add_document(f"world{i}", doc["collection"], doc["text"], word_count(doc["text"]), [], found)
    for i, doc in enumerate(documents_from_path(CORPUS, "water")):
        doc_id = f"doc{i}-{Path(doc['source']).stem}"
        tables, problems = extract_tables(doc_id, doc["text"], doc.get("attrs", {}).get("format", ""))
        assert not problems, problems
        found = extract(doc_id, doc["text"], tables) if facts else []
        corpus.add_document(doc_id, "water", doc["text"], word_count(doc["text"]), tables, found)
    return corpus


def add_fillers(corpus: Corpus, n: int) -> None:
    """`n` distractor documents of 20 distinct words each, in collection F."""
    for i in range(n):
        corpus.add_document(f"f{i}", "F", " ".join(f"w{i}x{j}" for j in range(20)), 20, [])
