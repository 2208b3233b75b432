"""Comparative, temporal and multi-fact questions, and entity obfuscation, over a hand-built
knowledge graph whose answers are worked out by hand below."""

from __future__ import annotations

import random
import re

from actors.synthesis.corpus import Corpus
from actors.synthesis.extract import Fact
from actors.synthesis.graph import multihop_task
from actors.synthesis.paradigms import amount_of, paradigm_task, year_of
from actors.synthesis.table_tasks import MadeTask, Skipped
from actors.tasks import TaskType, word_count
from schemas import AnswerKind
from tests.corpus_helpers import add_fillers

CAPACITY = {"Alder": 40, "Birch": 25, "Cedar": 31}
OPENED = {"Alder": 1998, "Cedar": 2006, "Dunmore Trust": 1979}


def _store(contradict_birch: bool = False) -> Corpus:
    """Two documents of collection C (Alder and Birch in d1, Cedar and the trust in d2) and 40
    filler documents; with `contradict_birch`, a document of another collection gives Birch
    another capacity."""
    corpus = Corpus(":memory:")
    d1 = [
        Fact("Alder", "has Capacity", "40 ML", "d1", 0, 1, "quantity"),
        Fact("Birch", "has Capacity", "25 ML", "d1", 0, 1, "quantity"),
        Fact("Alder", "opened in", "1998", "d1", 0, 1, "date"),
        Fact("Alder", "was built by", "Dunmore Trust", "d1", 0, 1, "entity"),
        Fact("Alder", "is painted", "green", "d1", 0, 1, "value"),
    ]
    d2 = [
        Fact("Cedar", "has Capacity", "31 ML", "d2", 0, 1, "quantity"),
        Fact("Cedar", "opened in", "2006", "d2", 0, 1, "date"),
        Fact("Dunmore Trust", "was founded in", "1979", "d2", 0, 1, "date"),
        Fact("Cedar", "is run by", "Dunmore Trust", "d2", 0, 1, "entity"),
    ]
    text1 = "Alder holds 40 ML and Birch 25 ML. Alder opened in 1998 and was built by Dunmore Trust."
    text2 = "Cedar holds 31 ML and opened in 2006. Dunmore Trust was founded in 1979 and runs Cedar."
    corpus.add_document("d1", "C", text1, word_count(text1), [], d1)
    corpus.add_document("d2", "C", text2, word_count(text2), [], d2)
    if contradict_birch:
        corpus.add_document("x", "X", "Birch holds 99 ML.", 4, [], [Fact("Birch", "has Capacity", "99 ML", "x", 0, 1)])
    add_fillers(corpus, 40)
    return corpus


def _made(corpus: Corpus, task_type: TaskType, n: int = 30, seed: int = 0) -> list[MadeTask]:
    rng = random.Random(seed)
    made = [paradigm_task(corpus, "C", task_type, rng, 200, word_count, 0.5) for _ in range(n)]
    assert Skipped.UNVERIFIED not in made and Skipped.LEAK not in made
    return [m for m in made if isinstance(m, MadeTask)]


def test_years_and_amounts_are_read_from_objects() -> None:
    assert year_of("1998") == 1998 and year_of("March 2023") == 2023 and year_of("1,998") is None
    assert amount_of("41 square kilometres") == (41.0, "square kilometres") and amount_of("1,840") == (1840.0, "")
    assert amount_of("2014") is None, "a year is not an amount"
    assert amount_of("Saltmarsh") is None


def test_comparative_answers_are_the_hand_derived_extreme() -> None:
    made = _made(_store(), TaskType.COMPARATIVE)
    assert len(made) == 30
    for task in made:
        q = task.composed.question
        options = dict(re.findall(r"\(([A-D])\) (\w+)", q))  # letter -> name
        values = {letter: CAPACITY[name] for letter, name in options.items()}
        pick = max if "largest" in q else min
        # e.g. (A) Cedar 31, (B) Alder 40, largest -> B
        assert task.composed.answer == pick(values, key=values.get)
        assert task.answer_kind is AnswerKind.OPTION and 2 <= len(options) <= 3
        assert abs(word_count(task.composed.context) - 200) <= 4


def test_temporal_answers_are_years_between_the_two_facts() -> None:
    made = _made(_store(), TaskType.TEMPORAL)
    answers = set()
    for task in made:
        later, earlier = re.findall(r"(\w+(?: Trust)?) (?:opened in|was founded in) Y\d", task.composed.question)
        assert int(task.composed.answer) == OPENED[later] - OPENED[earlier] > 0
        answers.add(task.composed.answer)
        assert len(task.doc_ids) == 2, "the two dated facts stand in different documents"
    # Alder (d1, 1998) with Cedar (d2, 2006): 8; with the trust (d2, 1979): 19. Cedar and the
    # trust share d2, and a pair from two documents exists, so they are never paired.
    assert answers == {"8", "19"}


def test_multi_fact_sums_the_named_entities() -> None:
    for task in _made(_store(), TaskType.MULTI_FACT):
        names = re.findall(r"(\w+) has Capacity X\d", task.composed.question)
        # e.g. Alder + Cedar = 40 + 31 = 71; all three = 96
        assert task.composed.answer == str(sum(CAPACITY[n] for n in names))
        assert task.composed.question.endswith(", in ML") and task.answer_kind is AnswerKind.NUMERIC


def test_an_entity_contradicted_in_another_collection_is_never_compared() -> None:
    made = [m for tt in (TaskType.COMPARATIVE, TaskType.MULTI_FACT) for m in _made_any(tt)]
    assert made and not [m for m in made if "Birch" in m.composed.question]


def _made_any(task_type: TaskType) -> list[MadeTask]:
    rng = random.Random(1)
    made = [paradigm_task(_store(True), "C", task_type, rng, 200, word_count, 0.5) for _ in range(30)]
    return [m for m in made if isinstance(m, MadeTask)]


def test_obfuscation_names_the_start_by_a_fact_no_other_entity_has() -> None:
    corpus = _store()
    rng = random.Random(0)
    made = [multihop_task(corpus, "C", rng, 2, 200, word_count, 0.5, obfuscate=True) for _ in range(20)]
    made = [m for m in made if isinstance(m, MadeTask)]
    assert made
    for task in made:
        q = task.composed.question
        # The only 2-edge path over two documents: Alder (d1) was built by Dunmore Trust, which
        # was founded in 1979 (d2); Cedar's path stays in d2. Of Alder's other facts, only "is
        # painted green" may name it: capacity and opening year are amounts and dates.
        assert q.startswith("Let E be the one that is painted green. ") and "Alder" not in q
        assert q.endswith("E was built by X1. X1 was founded in X2. What is X2")
        assert task.composed.answer == "1979" and task.composed.hops == 3


def test_rounded_sums_say_so_and_placeholders_are_not_leaks() -> None:
    """Amounts 0.125 and 0.5 sum to 0.625, published rounded as 0.62 "to 2 decimal places";
    years 2005 and 2006 are 1 apart, and the "1" of "Y1" does not count as the answer leaking."""
    corpus = Corpus(":memory:")
    facts = [
        Fact("Alder", "has Share", "0.125", "d1", 0, 1, "quantity"),
        Fact("Birch", "has Share", "0.5", "d2", 0, 1, "quantity"),
        Fact("Alder", "was built in", "2005", "d1", 0, 1, "date"),
        Fact("Birch", "was built in", "2006", "d2", 0, 1, "date"),
    ]
    for doc in ("d1", "d2"):
        own = [f for f in facts if f.doc_id == doc]
        corpus.add_document(doc, "C", f"{doc} text.", 2, [], own)
    add_fillers(corpus, 20)
    made = _made(corpus, TaskType.MULTI_FACT, n=5)
    assert {(m.composed.answer, m.composed.question.endswith(", to 2 decimal places")) for m in made} == {
        ("0.62", True)
    }
    made = _made(corpus, TaskType.TEMPORAL, n=5)
    assert made and {m.composed.answer for m in made} == {"1"}
