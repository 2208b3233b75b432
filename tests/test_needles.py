"""Needle, multi-needle and dialogue-recall tasks over real documents, and the acceptance
check over every store composer: on the shipped corpus and on a fresh synthetic world, every
published task is reproduced by its independent solver, lands within ±2% of its target, and a
multi-hop task's evidence spans ≥ 2 documents."""

from __future__ import annotations

import math
import random
import re
from collections import Counter

import pytest

from actors.synthesis.context import SEPARATOR, place
from actors.synthesis.corpus import Corpus, entity_key
from actors.synthesis.dialogue import dialogue_task, replay, statement
from actors.synthesis.extract import Fact, extract
from actors.synthesis.graph import multihop_task
from actors.synthesis.needles import needle_task, needle_text, read_needles
from actors.synthesis.numeric import format_number, leaks, solve, to_sql
from actors.synthesis.paradigms import PARADIGMS, amount_of, paradigm_task, year_of
from actors.synthesis.table_tasks import MadeTask, Skipped, table_task
from actors.tasks import TaskType, word_count
from actors.world import make_world
from schemas import AnswerKind
from tests.corpus_helpers import sample_corpus


def test_needles_go_between_documents_at_their_depths() -> None:
    parts = ["d0", "d1", "d2", "d3"]
    # depth 0 -> before d0; 0.5 -> after 2 of 4 documents; 1 -> at the end; two at 0.5 keep order
    assert place(parts, ["a", "b", "c", "e"], [0.5, 0.0, 1.0, 0.5]) == ["b", "d0", "d1", "a", "e", "d2", "d3", "c"]
    assert read_needles(" ".join([needle_text("amber-otter", "1234567"), "noise 7654321"])) == {
        "amber-otter": ["1234567"]
    }


def test_dialogue_replay_keeps_the_last_statement() -> None:
    turns = [
        statement("locker code", "1111", update=False),
        "User: I am reading this:\nMy locker code is in the drawer.\nAssistant: Noted.",
        statement("locker code", "2222", update=True),
        statement("gym day", "Monday", update=False),
    ]
    assert replay(SEPARATOR.join(turns)) == {"locker code": "2222", "gym day": "Monday"}


def _store_with_world() -> Corpus:
    """The shipped corpus (collection 'water', with its graph), 20 worlds of padding, and a
    fresh synthetic world (collection 'fresh') with its facts."""
    corpus = sample_corpus(facts=True)
    world = make_world(987_654, 12)
    for subject in world.entities:
        text = world.document(subject)
        corpus.add_document(
            f"fresh-{subject}", "fresh", text, word_count(text), [], extract(f"fresh-{subject}", text, [])
        )
    return corpus


def _resolve(corpus: Corpus, task: MadeTask) -> str | None:
    """Each composer's independent solver, run again on the published task."""
    composed = task.composed
    kind = composed.task_type
    if kind in (TaskType.NEEDLE, TaskType.MULTI_NEEDLE):
        keys = composed.question.removeprefix("What is the special magic number for ")
        keys = keys.removeprefix("What are the special magic numbers for ").split("?")[0]
        stated = read_needles(composed.context)
        return ", ".join(stated[k][0] for k in keys.replace(" and ", ", ").split(", ") if len(stated[k]) == 1)
    if kind is TaskType.DIALOGUE:
        topic = composed.question.removeprefix("What is the user's ").split(" now,")[0]
        return replay(composed.context).get(topic)
    table = next(t for t in corpus.tables("water") if t.name in task.sql)  # table and keychain tasks
    sql, params = to_sql(task.spec, table.name)
    assert math.isclose(corpus.scalar(sql, params), solve(task.spec, table), abs_tol=1e-9)
    return format_number(corpus.scalar(sql, params))


def _context_facts(corpus: Corpus, context: str) -> list[Fact]:
    """The stored facts of exactly the text in `context`: each document found in it whole, and
    the facts inside the prefix of one cut to fit (read from the store's tables directly)."""
    out = []
    for doc_id, text in corpus.db.execute("SELECT doc_id, text FROM docs"):
        kept = len(text)
        if text not in context:
            words = text.split(" ")
            low, high = 0, len(words)  # the longest prefix of whole words in the context
            while low < high:
                mid = (low + high + 1) // 2
                low, high = (mid, high) if " ".join(words[:mid]) in context else (low, mid - 1)
            kept = len(" ".join(words[:low]))
        rows = corpus.db.execute(
            "SELECT subject, relation, object, doc_id, start, end_, kind, extractor FROM facts WHERE doc_id = ?",
            (doc_id,),
        )
        out += [f for f in (Fact(*row) for row in rows) if f.end <= kept]
    return out


def _objects(facts: list[Fact], subject: str, relation: str) -> set[str]:
    return {f.object for f in facts if entity_key(f.subject) == entity_key(subject) and f.relation == relation}


def _subject_of(facts: list[Fact], stated: str) -> tuple[str, str]:
    """'{subject} {relation}' as the question states it → (subject, relation), from the facts."""
    [found] = {(f.subject, f.relation) for f in facts if f"{f.subject} {f.relation}" == stated}
    return found


def _one(values: set[str]) -> str:
    assert len(values) == 1, f"ambiguous or unstated in the context: {values}"
    return next(iter(values))


def _resolve_graph(corpus: Corpus, task: MadeTask) -> str:
    """Multi-hop and paradigm questions answered again from the facts of the context's own text:
    every step has exactly one object there."""
    composed = task.composed
    facts = _context_facts(corpus, composed.context)
    question = composed.question
    if composed.task_type is TaskType.MULTI_HOP:
        start = None
        if question.startswith("Let E be the one that "):
            described, question = question.removeprefix("Let E be the one that ").split(". E ", 1)
            start = _one({f.subject for f in facts if f"{f.relation} {f.object}" == described})
            question = "E " + question
        steps = re.split(r" X\d+\. ", question.rsplit(" What is X", 1)[0] + " ")
        head, relation = steps[0].split(" ", 1) if start else _subject_of(facts, steps[0])
        here = _one(_objects(facts, start or head, relation))
        for step in steps[1:]:
            if step:
                here = _one(_objects(facts, here, step.split(" ", 1)[1]))
        return here
    if composed.task_type is TaskType.COMPARATIVE:
        relation = question.removeprefix("For '").split("', which", 1)[0]
        options = re.findall(r"\(([A-Z])\) (.+?)(?=, \([A-Z]\) |\. |$)", question)
        amounts = {letter: amount_of(_one(_objects(facts, name, relation)))[0] for letter, name in options}
        best = (max if "largest" in question else min)(amounts.values())
        return _one({letter for letter, a in amounts.items() if a == best})
    named = re.findall(r"(.+?) ([XY]\d)\. ", question)
    values = [_one(_objects(facts, *_subject_of(facts, stated.strip()))) for stated, _ in named]
    if composed.task_type is TaskType.TEMPORAL:
        return str(year_of(values[0]) - year_of(values[1]))
    return format_number(math.fsum(amount_of(v)[0] for v in values))  # multi_fact


def _leaks(task: MadeTask) -> bool:
    """The answer readable off the question: a number in it equal to a numeric answer, or a text
    answer inside it. Option letters are in every multiple-choice question; a key chain's
    question is its head key (the real question lies in the context, checked when composed)."""
    answer, question = task.composed.answer, task.composed.question
    if task.answer_kind is AnswerKind.OPTION or task.composed.task_type is TaskType.KEYCHAIN:
        return False
    if task.answer_kind is AnswerKind.NUMERIC:
        return leaks(answer, question)
    return answer.lower() in question.lower()


@pytest.mark.parametrize("collection", ["water", "fresh"])
def test_every_published_task_is_solved_again_and_on_target(collection: str) -> None:
    corpus = _store_with_world()
    rng = random.Random(7)
    target = 600
    made: list[MadeTask | Skipped] = []
    for i in range(6):
        depth = rng.choice((0.0, 0.25, 0.5, 0.75, 1.0))
        made.append(multihop_task(corpus, collection, rng, rng.choice((2, 3)), target, word_count, depth, True))
        made += [paradigm_task(corpus, collection, t, rng, target, word_count, depth) for t in PARADIGMS]
        made.append(needle_task(corpus, rng, target, word_count, depth, 1 + 2 * (i % 2)))
        made.append(dialogue_task(corpus, rng, target, word_count, depth, rng.randint(0, 2)))
        if collection == "water":
            made += [table_task(corpus, "water", rng, target, word_count, depth, keychain=k) for k in (False, True)]
    assert Skipped.UNVERIFIED not in made, "a composer published what its solver disagreed with"
    published = [m for m in made if isinstance(m, MadeTask)]
    kinds = Counter(m.composed.task_type for m in published)
    print(f"{collection}: {dict(kinds)} of {len(made)} attempts")
    expected = {TaskType.NEEDLE, TaskType.MULTI_NEEDLE, TaskType.DIALOGUE, TaskType.MULTI_HOP}
    expected |= {TaskType.COMPARATIVE, TaskType.TEMPORAL, TaskType.MULTI_FACT, TaskType.TABLE_NUMERIC}
    if collection == "fresh":  # a world's attributes are words: no amounts, no years, no tables
        expected -= {TaskType.COMPARATIVE, TaskType.TEMPORAL, TaskType.MULTI_FACT, TaskType.TABLE_NUMERIC}
    assert expected <= set(kinds)
    for task in published:
        composed = task.composed
        assert abs(word_count(composed.context) - target) <= 0.02 * target, composed.task_type
        assert not _leaks(task), composed.question
        if composed.task_type is TaskType.MULTI_HOP:
            assert len(task.doc_ids) >= 2
            for text in corpus.texts(list(task.doc_ids)):
                assert text in composed.context
        if composed.task_type in PARADIGMS or composed.task_type is TaskType.MULTI_HOP:
            assert _resolve_graph(corpus, task) == composed.answer, composed.question
        else:
            assert _resolve(corpus, task) == composed.answer, composed.question
        assert task.evidence and all(span in composed.context for span in task.evidence), composed.task_type
