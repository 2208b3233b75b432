"""Composers produce verified answers from the facts they show, within the context budget."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from actors.synthesis.facts import world_sentences as extract_facts
from actors.tasks import TaskType, compose_kv_retrieval, compose_three_hop, compose_two_hop, render_prompt, word_count
from actors.world import ATTRIBUTE_VALUES, RELATIONS, Fact, make_world
from schemas import Task, decode


def test_world_is_seeded_and_complete() -> None:
    a, b = make_world(7, 6), make_world(7, 6)
    assert a == b and a != make_world(8, 6)
    assert len(a.facts) == 6 * (len(ATTRIBUTE_VALUES) + len(RELATIONS))
    with pytest.raises(ValueError, match="n_entities"):
        make_world(0, 1)


def test_documents_parse_back_to_their_facts() -> None:
    world = make_world(3, 5)
    for entity in world.entities:
        assert extract_facts(world.document(entity)) == list(world.facts_of(entity))
    assert extract_facts("free prose with no facts .") == []


@pytest.mark.parametrize("seed", range(20))
def test_kv_answer_is_the_world_fact_and_unambiguous(seed: int) -> None:
    world, rng = make_world(seed, 8), random.Random(seed)
    task = compose_kv_retrieval(world.facts, rng, context_tokens=32)
    subject, relation = task.question.split()
    assert task.answer == world.lookup(subject, relation)
    shown = extract_facts(task.context)
    assert [f.object for f in shown if (f.subject, f.relation) == (subject, relation)] == [task.answer]
    assert word_count(task.context) <= 32 and task.task_type is TaskType.KV_RETRIEVAL


@pytest.mark.parametrize("seed", range(20))
def test_two_hop_answer_follows_the_chain(seed: int) -> None:
    world, rng = make_world(seed, 8), random.Random(seed)
    task = compose_two_hop(world.facts, rng, context_tokens=32)
    subject, relation, attribute = task.question.split()
    assert task.answer == world.lookup(world.lookup(subject, relation), attribute)
    assert set(task.evidence) <= set(extract_facts(task.context)) and task.hops == 2


@pytest.mark.parametrize("seed", range(20))
def test_three_hop_answer_follows_two_relations_through_distinct_entities(seed: int) -> None:
    world, rng = make_world(seed, 8), random.Random(seed)
    task = compose_three_hop(world.facts, rng, context_tokens=32)
    subject, first, second, attribute = task.question.split()
    middle = world.lookup(subject, first)
    last = world.lookup(middle, second)
    assert task.answer == world.lookup(last, attribute) and len({subject, middle, last}) == 3
    shown = extract_facts(task.context)
    assert set(task.evidence) <= set(shown) and task.hops == 3
    # No distractor repeats an evidence key with another object: the path is unambiguous.
    keys = {(f.subject, f.relation) for f in task.evidence}
    assert [f for f in shown if (f.subject, f.relation) in keys] == list(f for f in shown if f in task.evidence)


def test_three_hop_needs_a_path_through_three_entities() -> None:
    """Two entities that are each other's boss and friend: no path of distinct entities."""
    facts = [Fact("a", "boss", "b"), Fact("b", "friend", "a"), Fact("a", "color", "red"), Fact("b", "boss", "a")]
    assert compose_three_hop(facts, random.Random(0), 32) is None


def test_prompt_format() -> None:
    assert render_prompt("a color red .", "a color") == "a color red . question : a color ? answer :"


def test_synthesis_actor_waits_for_enough_facts(streams, claim, tiny_model) -> None:  # noqa: ANN001
    """A collection's first document (6 facts, 24 tokens) cannot fill 32 tokens; the second can.

    Budgets are counted by the policy's tokenizer (the tiny one: a token per word)."""
    from actors.modeling import load_policy_tokenizer, token_counter
    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from schemas import Document

    world = make_world(1, 8)
    actor = SynthesisActor(
        name="synthesis-t",
        config=SynthesisConfig(context_tokens=32, tasks_per_document=4),
        streams=streams,
        claim=claim,
        count_tokens=token_counter(load_policy_tokenizer(tiny_model)),
    )
    try:
        docs = [
            Document(
                doc_id=f"{i:064d}",
                collection="w",
                text=world.document(e),
                text_ref="",
                n_tokens=24,
                source="",
                attrs=(),
                ingested_at=0,
            )
            for i, e in enumerate(world.entities[:2])
        ]
        assert actor.handle(docs[:1]) == []
        tasks = [o.records[0] for o in actor.handle(docs[1:])]
        assert len(tasks) == 4 and {t.task_type for t in tasks} == {"kv_retrieval", "two_hop"}
        for task in tasks:
            assert 28 <= task.context_tokens <= 32 and task.context_tokens == word_count(task.context)
            words = task.question.split()
            if task.task_type == "kv_retrieval":
                assert task.answer == world.lookup(words[0], words[1])
            elif task.task_type == "multi_kv":
                assert task.answer == f"{world.lookup(words[0], words[1])} {world.lookup(words[2], words[3])}"
            else:
                assert task.answer == world.lookup(world.lookup(words[0], words[1]), words[2])
    finally:
        actor.close()


def test_memory_kv_tasks_reach_their_length_with_other_collections_facts(streams, claim, tiny_model) -> None:  # noqa: ANN001
    """A world holds 48 facts (192 tokens); a 256-token memory_kv context is padded with other
    collections' facts, never with another value of the asked key, and carries its evidence."""
    import hashlib

    from actors.modeling import load_policy_tokenizer, token_counter
    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from schemas import Document

    actor = SynthesisActor(
        name="synthesis-m",
        config=SynthesisConfig(task_types=(TaskType.MEMORY_KV,), memory_context_tokens=(256,), tasks_per_document=2),
        streams=streams,
        claim=claim,
        count_tokens=token_counter(load_policy_tokenizer(tiny_model)),
    )
    worlds = [make_world(seed, 8) for seed in (5, 6, 7)]
    try:
        tasks = []
        for w, world in enumerate(worlds):
            for e in world.entities:
                text = world.document(e)
                doc = Document(
                    doc_id=hashlib.sha256(f"{w}{text}".encode()).hexdigest(),
                    collection=f"w{w}",
                    text=text,
                    text_ref="",
                    n_tokens=24,
                    source="",
                    attrs=(),
                    ingested_at=0,
                )
                tasks += [(w, o.records[0]) for o in actor.handle([doc])]
        assert tasks and all(w > 0 for w, _ in tasks), "the first world alone cannot fill 256 tokens"
        for w, task in tasks:
            assert task.task_type == "memory_kv" and 224 <= task.context_tokens <= 256
            subject, relation = task.question.split()
            assert task.answer == worlds[w].lookup(subject, relation)
            assert task.evidence == (f"{subject} {relation} {task.answer} .",)
            context = claim.get_text(task.context, task.context_ref)
            assert task.evidence[0] in context
            stated = [f for f in extract_facts(context) if (f.subject, f.relation) == (subject, relation)]
            assert len(stated) == 1, "no other value of the asked key in the context"
            assert {f.subject for f in extract_facts(context)} - set(worlds[w].entities), "other worlds' facts"
    finally:
        actor.close()


def test_a_folder_of_notes_becomes_tasks_under_the_gpu_config(streams, claim, tiny_model, tmp_path) -> None:  # noqa: ANN001
    """`longtide ingest FOLDER`'s documents (markdown with tables, a CSV) through the ingest and
    synthesis actors with the task types of ops/configs/qwenlong-l15.yaml: tasks of several
    types, table answers numeric, every context on target in policy tokens, evidence in it."""
    from pathlib import Path

    from actors.ingest.actor import IngestActor
    from actors.ingest.config import IngestConfig
    from actors.modeling import load_policy_tokenizer, token_counter
    from actors.synthesis.actor import SynthesisActor
    from ops.config import load_config
    from ops.feed import documents_from_path, world_documents
    from schemas import RawDocument
    from schemas.codec import from_mapping

    count = token_counter(load_policy_tokenizer(tiny_model))
    notes = list(documents_from_path(Path(__file__).resolve().parent.parent / "ops" / "corpus", "notes"))
    assert len(notes) == 4 and {dict(n.get("attrs", {})).get("format") for n in notes} == {None, "csv"}
    padding = list(world_documents(worlds=10, entities_per_world=8, seed=0))
    ingest = IngestActor(name="ingest-t", config=IngestConfig(), streams=streams, claim=claim, count_tokens=count)
    gpu = load_config(Path(__file__).resolve().parent.parent / "ops" / "configs" / "qwenlong-l15.yaml")
    # 600 tokens: the notes' one unambiguous multi-hop path (Birchwood → Aldane & Voss → Pier
    # Seven → Tomas Reyes → Ines Okafor) needs three whole documents in the context
    synthesis = SynthesisActor(
        name="synthesis-notes",
        config=dataclasses.replace(gpu.synthesis, context_tokens=600, tasks_per_document=4),
        streams=streams,
        claim=claim,
        count_tokens=count,
        store=str(tmp_path / "corpus.sqlite"),
    )
    try:
        docs = [o.records[0] for o in ingest.handle([from_mapping(RawDocument, d) for d in padding + notes])]
        tasks = [o.records[0] for o in synthesis.handle(docs) if o.topic == "tasks"]
        kinds = Counter(t.task_type for t in tasks)
        assert len(tasks) >= 8 and {"table_numeric", "multi_hop"} <= set(kinds), kinds
        assert {t.task_type for t in tasks if t.collection == "notes"} >= {"table_numeric", "multi_hop"}
        for task in tasks:
            if task.task_type == "table_numeric":
                assert task.answer_kind == "numeric" and float(task.answer) == float(task.answer)
            context = claim.get_text(task.context, task.context_ref)
            assert abs(count(context) - 600) <= 12 and task.context_tokens == count(context)
            assert set(task.doc_ids) <= {d.doc_id for d in docs if d.collection == task.collection}, task.task_type
            assert task.evidence and all(span in context for span in task.evidence)
    finally:
        synthesis.close()
        ingest.close()


def test_a_lost_store_is_rebuilt_from_docs_without_new_tasks(streams, claim, tmp_path) -> None:  # noqa: ANN001
    """The synthesis actor handles 12 documents (their tasks published, offsets committed); its
    store file is then lost. The next actor re-reads the 12 from `docs` into a new store, makes no
    task for them, and composes over them as the 13th arrives."""
    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from ops.feed import SAMPLE_CORPUS, documents_from_path, world_documents
    from schemas import Document
    from streams.kafka import Producer
    from streams.logs import read_all
    from streams.topics import DOCS, TASKS

    raw = list(world_documents(worlds=2, entities_per_world=4, seed=0)) + list(
        documents_from_path(SAMPLE_CORPUS, "water")
    )
    docs = [
        Document(f"{i:064d}", d["collection"], d["text"], "", word_count(d["text"]), "", (), 0)
        for i, d in enumerate(raw)
    ]
    store = tmp_path / "synthesis.sqlite"
    config = SynthesisConfig(task_types=(TaskType.TEMPORAL, TaskType.KV_RETRIEVAL), context_tokens=300)
    producer = Producer(streams, client_id="test-docs")

    def send(batch: list[Document]) -> None:
        for doc in batch:
            producer.send_records(DOCS.name, [doc], key=doc.collection.encode())
        producer.flush()

    def actor() -> SynthesisActor:
        return SynthesisActor(
            name="synthesis-r", config=config, streams=streams, claim=claim, count_tokens=word_count, store=str(store)
        )

    send(docs[:-1])
    first = actor()
    try:
        while first.processor.counts["consumed"] < len(docs) - 1:
            first.processor.step()
        first.corpus.mark_applied(first.processor.committed)
    finally:
        first.close()
    tasks_before = len(read_all(streams, TASKS.name))
    assert tasks_before > 0
    store.unlink()

    second = actor()
    try:
        assert sum(second.corpus.applied(DOCS.name).values()) == len(docs) - 1
        assert len(second.corpus.texts([d.doc_id for d in docs[:-1]])) == len(docs) - 1
        assert len(read_all(streams, TASKS.name)) == tasks_before, "re-reading made no task"
        send(docs[-1:])
        while second.processor.counts["consumed"] < 1:
            second.processor.step()
        temporal = [
            t
            for m in read_all(streams, TASKS.name)[tasks_before:]
            for t in decode(m.value, Task)
            if t.task_type == "temporal"
        ]
        earlier = {d.doc_id for d in docs[:-1]}
        assert any(earlier & set(t.doc_ids) for t in temporal), "its pairs span the re-read documents"
    finally:
        second.close()
        producer.close()


def test_unsolved_tasks_come_back_on_tasks_after_the_policy_moved_on(streams, claim) -> None:  # noqa: ANN001
    """The actor reads `scored` too: a group with no correct sample bins its task as unsolved,
    and the task is re-published (new id, same question) once the policy is 50 versions on."""
    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from actors.synthesis.retrospect import retry_id
    from schemas import Document
    from tests.conftest import scored_rollout

    world = make_world(3, 8)
    actor = SynthesisActor(
        name="synthesis-retro", config=SynthesisConfig(), streams=streams, claim=claim, count_tokens=word_count
    )
    try:
        docs = [
            Document(f"{i:064d}", "w", world.document(e), "", 24, "", (), 0) for i, e in enumerate(world.entities[:3])
        ]
        tasks = [o.records[0] for o in actor.handle(docs)]
        first, second = tasks[0], tasks[1]

        def group(task: Task, version: int, reward: float) -> list:
            return [
                scored_rollout(task.task_id, i, 4, [1], [2], reward=reward, policy_version=version) for i in range(4)
            ]

        assert actor.handle(group(first, 0, 0.0)) == [] and actor.handle(group(second, 10, 1.0)) == []
        assert actor.handle(group(second, 49, 1.0)) == []
        [out] = actor.handle(group(second, 50, 1.0))
        again = out.records[0]
        assert out.topic == "tasks" and again.task_id == retry_id(first.task_id, 1)
        assert (again.question, again.answer, again.context) == (first.question, first.answer, first.context)
    finally:
        actor.close()


def test_malformed_documents_yield_no_task_and_the_actor_goes_on(streams, claim) -> None:  # noqa: ANN001
    """Prose without facts, binary junk, a ragged table and a 2 MB document through the actor's
    own handling: no exception, no task, each counted; the next world document still yields tasks."""
    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from actors.synthesis.metrics import NO_FACTS, TABLE_PROBLEMS
    from schemas import Document

    world = make_world(5, 8)
    junk = bytes(range(256)).decode("latin-1") * 400
    bad = {
        "prose": "it rained. then it rained again, for a while.",
        "junk": junk,
        "ragged": "| a | b |\n|---|---|\n| 1 | 2 | 3 |\n| 4 |\n",
        "big": ("x y z. " * 300_000)[:2_000_000],
    }
    config = SynthesisConfig(task_types=(TaskType.KV_RETRIEVAL, TaskType.TABLE_NUMERIC, TaskType.MULTI_HOP))
    actor = SynthesisActor(name="synthesis-bad", config=config, streams=streams, claim=claim, count_tokens=word_count)
    try:
        before = NO_FACTS.labels("synthesis-bad")._value.get(), TABLE_PROBLEMS.labels("synthesis-bad")._value.get()
        for name, text in bad.items():
            assert actor.handle([Document(name * 8, "bad", text, "", word_count(text), "", (), 0)]) == [], name
        after = NO_FACTS.labels("synthesis-bad")._value.get(), TABLE_PROBLEMS.labels("synthesis-bad")._value.get()
        assert after[0] - before[0] == 4 and after[1] - before[1] == 1
        good = [Document(f"{i:064d}", "w", world.document(e), "", 24, "", (), 0) for i, e in enumerate(world.entities)]
        assert [o for doc in good for o in actor.handle([doc])], "the loop goes on"
    finally:
        actor.close()


def test_a_10_mb_document_does_not_cost_the_actor_its_group(streams, claim, tmp_path) -> None:  # noqa: ANN001
    """A 10 MB document (by reference through the blob store) takes the running actor longer to
    extract than `streams.max_poll_interval_ms` (6 s here): the extraction runs while the
    consumer keeps its group membership, so the document's offset is committed and the world
    documents after it still yield tasks."""
    import time
    from pathlib import Path

    from actors.synthesis.actor import SynthesisActor
    from actors.synthesis.config import SynthesisConfig
    from schemas import Document
    from streams.kafka import Producer
    from tests.conftest import Running, wait_for

    page = (Path(__file__).resolve().parent.parent / "ops" / "corpus" / "harbor-district-2025.md").read_text()
    huge = (page * (10_000_000 // len(page) + 1))[:10_000_000]
    inline, ref = claim.put_text(huge)
    assert ref and not inline
    world = make_world(7, 8)
    docs = [Document("b" * 64, "big", "", ref, word_count(huge), "", (), 0)]
    docs += [Document(f"{i:064d}", "w", world.document(e), "", 24, "", (), 0) for i, e in enumerate(world.entities)]
    config = SynthesisConfig(task_types=(TaskType.KV_RETRIEVAL, TaskType.MULTI_HOP), context_tokens=32)
    actor = SynthesisActor(name="synthesis-big", config=config, streams=streams, claim=claim, count_tokens=word_count)
    producer = Producer(streams, client_id="test-docs")
    for doc in docs:  # one partition (one key): the big document first
        producer.send_records("docs", [doc], key=b"one")
    producer.flush()
    producer.close()
    with Running(actor) as running:
        start = time.monotonic()
        wait_for(lambda: actor.processor.counts["consumed"] >= len(docs) or bool(running.errors), 240, "all documents")
        running.check()
        took = time.monotonic() - start
        assert actor.tasks_by_type["kv_retrieval"] > 0, "the world documents after it yielded tasks"
        assert sum(actor.processor.committed.values()) >= len(docs), actor.processor.committed
    print(f"10 MB document and {len(docs) - 1} more handled in {took:.1f} s")
    assert actor.kept_alive >= 1, "no extraction outlasted keep_alive's patience: the test exercised nothing"


@pytest.mark.parametrize("seed", range(5))
def test_multi_kv_and_reverse_kv_answers_follow_the_world(seed: int) -> None:
    from actors.tasks import compose_multi_kv, compose_reverse_kv

    world = make_world(seed, 8)
    rng = random.Random(seed)
    both = compose_multi_kv(world.facts, rng, 32)
    a, ra, b, rb = both.question.split()
    assert a != b and both.answer == f"{world.lookup(a, ra)} {world.lookup(b, rb)}"
    reverse = compose_reverse_kv(world.facts, rng, 32)
    relation, value = reverse.question.split()
    shown = [s.split() for s in reverse.context.split(" .") if s.strip()]
    assert [s for s, r, o in shown if (r, o) == (relation, value)] == [reverse.answer], "one entity has it"
    assert world.lookup(reverse.answer, relation) == value and word_count(reverse.context) <= 32
