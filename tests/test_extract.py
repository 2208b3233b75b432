"""Facts from documents (prose, key-value lines, tables) with their spans, and multi-hop tasks
over the shipped corpus's knowledge graph."""

from __future__ import annotations

import random
import time

import pytest

from actors.synthesis.corpus import Corpus, entity_key
from actors.synthesis.extract import extract, key_value_facts, prose_facts, table_facts
from actors.synthesis.graph import compose_path, multihop_task, path_question
from actors.synthesis.table_tasks import MadeTask, Skipped
from actors.synthesis.tables import extract_tables
from actors.tasks import word_count
from tests.corpus_helpers import CORPUS, add_fillers, sample_corpus


def _triples(facts: list) -> list[tuple[str, str, str, str]]:
    return [(f.subject, f.relation, f.object, f.kind) for f in facts]


def test_prose_relations_between_entities_dates_and_quantities() -> None:
    text = (
        "Pier Seven is the newest station and is run by Tomas Reyes, who reports to Ines Okafor.\n"
        "Its chair, Ines Okafor, took office in March 2023 after serving six years.\n\n"
        "Aldane & Voss was founded in 1979 in Port Ellery. Lake Morrow is a natural lake of 41 square kilometres.\n"
        "It feeds the Calloway North station. it rained a lot."
    )
    facts = prose_facts("d", text)
    assert _triples(facts) == [
        ("Pier Seven", "is run by", "Tomas Reyes", "entity"),  # after "and"
        ("Tomas Reyes", "reports to", "Ines Okafor", "entity"),  # after ", who"
        ("Ines Okafor", "took office in", "March 2023", "date"),  # "Its chair," dropped
        ("Aldane & Voss", "was founded in", "1979", "date"),
        ("Lake Morrow", "is a natural lake of", "41 square kilometres", "quantity"),
    ]  # "It feeds …": a pronoun is no subject; "it rained a lot": no mentions
    for fact in facts:
        assert fact.subject in text[fact.start : fact.end] and fact.object in text[fact.start : fact.end]


def test_key_values_and_table_rows_become_facts() -> None:
    text = "# Birchwood\n\nOpened: 2011\n- Designer: Aldane & Voss\nnot a key value line\n"
    assert _triples(key_value_facts("d", text)) == [
        ("Birchwood", "has Opened", "2011", "quantity"),
        ("Birchwood", "has Designer", "Aldane & Voss", "value"),
    ]
    tables, _ = extract_tables("h", (CORPUS / "harbor-district-2025.md").read_text())
    facts = table_facts(tables)
    assert ("Pier Seven", "has Opened", "2014", "quantity") in _triples(facts)
    assert ("Q3", "has Saltmarsh (ML)", "3,120", "quantity") in _triples(facts)


def test_junk_and_huge_documents_yield_nothing_or_facts_without_stopping() -> None:
    junk = bytes(range(256)).decode("latin-1") * 4000  # 1 MB of control characters and symbols
    assert extract("j", junk, []) == []
    page = (CORPUS / "harbor-district-2025.md").read_text()
    huge = (page * (10_000_000 // len(page) + 1))[:10_000_000]  # 10 MB, one paragraph per copy
    start = time.perf_counter()
    facts = extract("h", huge, [])
    print(f"10 MB document: {len(facts)} distinct facts in {time.perf_counter() - start:.1f} s")
    assert ("Pier Seven", "is run by", "Tomas Reyes", "entity") in _triples(facts)


def _graph() -> Corpus:
    return sample_corpus(facts=True)


def test_paths_cross_documents_and_ask_only_through_relations() -> None:
    corpus = _graph()
    facts = corpus.facts("water")
    rng = random.Random(0)
    for hops in (2, 3, 4):
        path = compose_path(facts, rng, hops)
        assert path is not None and len(path) == hops and len({f.doc_id for f in path}) >= 2
        for a, b in zip(path, path[1:], strict=False):
            assert entity_key(a.object) == entity_key(b.subject)
        question = path_question(path)
        assert question.startswith(path[0].subject) and question.endswith(f"What is X{hops}")
    assert compose_path(facts, rng, 6) is None, "the sample graph has no 6-edge path"


def test_multihop_tasks_are_solved_through_the_store_and_on_target() -> None:
    corpus = _graph()
    rng = random.Random(1)
    made = [multihop_task(corpus, "water", rng, hops, 400, word_count, 0.5) for hops in (2, 3, 4) * 5]
    assert not [m for m in made if m is Skipped.UNVERIFIED]
    made = [m for m in made if isinstance(m, MadeTask)]
    assert len(made) >= 10
    for task in made:
        assert len(task.doc_ids) >= 2 and abs(word_count(task.composed.context) - 400) <= 8
        for text in corpus.texts(list(task.doc_ids)):
            assert text in task.composed.context
        assert task.composed.answer.lower() not in task.composed.question.lower()


def test_a_document_contradicting_a_step_is_kept_out_of_the_context() -> None:
    """Distractors come from every collection: a document where a step has another object
    ("founded in 1981" in collection B) would make the question ambiguous, so it is never drawn
    into the context, and the solver, over the context's documents, still finds one answer.
    The evidence is each step's sentence as the document states it."""
    from actors.synthesis.extract import Fact

    corpus = Corpus(":memory:")
    a1, a2 = "Birchwood was designed by Aldane & Voss.", "Aldane & Voss was founded in 1979."
    a = [
        Fact("Birchwood", "was designed by", "Aldane & Voss", "a1", 0, len(a1)),
        Fact("Aldane & Voss", "was founded in", "1979", "a2", 0, len(a2), "date"),
    ]
    corpus.add_document("a1", "A", a1, 8, [], a[:1])
    corpus.add_document("a2", "A", a2, 7, [], a[1:])
    add_fillers(corpus, 40)
    b1 = "Aldane & Voss was founded in 1981."
    corpus.add_document(
        "b1", "B", b1, 7, [], [Fact("Aldane & Voss", "was founded in", "1981", "b1", 0, len(b1), "date")]
    )
    assert corpus.holding([("Aldane & Voss", "was founded in")]) == {"a2", "b1"}
    for seed in range(20):
        made = multihop_task(corpus, "A", random.Random(seed), 2, 60, word_count, 0.5)
        assert isinstance(made, MadeTask) and made.composed.answer == "1979"
        assert b1 not in made.composed.context and made.evidence == (a1, a2)
    # without the exclusion the same store would give the step two answers in one context
    assert corpus.objects("Aldane & Voss", "was founded in", doc_ids=["a1", "a2", "b1"]) == ["1979", "1981"]


def test_a_task_reads_a_bounded_stretch_of_a_large_graph() -> None:
    """`Corpus.facts(collection, window, rng)`: at most `window` facts, consecutive in arrival
    order, from a drawn point; the whole graph when it is smaller. A window under 100 is refused."""
    from actors.synthesis.config import SynthesisConfig
    from actors.synthesis.extract import Fact

    corpus = Corpus(":memory:")
    for d in range(50):  # 50 documents of 20 facts: 1,000 facts
        facts = [Fact(f"E{d}-{i}", "knows", f"E{d}-{i + 1}", f"d{d}", 0, 1) for i in range(20)]
        corpus.add_document(f"d{d}", "big", f"doc {d}", 2, [], facts)
    corpus.add_document("o", "other", "other", 1, [], [Fact("X", "knows", "Y", "o", 0, 1)])
    everything = corpus.facts("big")
    assert len(everything) == 1000 and corpus.facts("big", 5000, random.Random(0)) == everything
    starts = set()
    for seed in range(5):
        stretch = corpus.facts("big", 100, random.Random(seed))
        assert len(stretch) == 100
        start = everything.index(stretch[0])
        assert stretch == everything[start : start + 100]
        starts.add(start)
    assert len(starts) > 1, "the stretch is drawn, not always the first"
    with pytest.raises(ValueError, match=r"synthesis.graph_window \(10\) must be >= 100"):
        SynthesisConfig(graph_window=10)
