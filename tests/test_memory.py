"""The memory actor on a real embedded broker: documents read into per-collection memories and
persisted, a restart that neither skips nor re-reads a document, dead letters, and the query
API (in-process and over HTTP)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from actors.memory.actor import MemoryActor
from actors.memory.config import MemoryConfig
from actors.memory.queries import QueryError
from actors.memory.store import Memory, MemoryStore
from actors.memory_agent import MemoryAgentConfig
from actors.world import make_world
from schemas import SCHEMA_VERSION, DeadLetter, Document, MemoryUpdate
from streams.blobs import ClaimCheck
from streams.kafka import Producer, StreamsConfig
from tests.conftest import Running, make_learner, send_scored, wait_for
from tests.kafka_helpers import read_records


def _doc(collection: str, text: str) -> Document:
    return Document(
        doc_id=hashlib.sha256(f"{collection}\0{text}".encode()).hexdigest(),
        collection=collection,
        text=text,
        text_ref="",
        n_tokens=max(1, len(text.split())),  # (ingest would refuse a blank text; a foreign producer may not)
        source="",
        attrs=(),
        ingested_at=0,
    )


def _send(streams: StreamsConfig, docs: list[Document]) -> None:
    producer = Producer(streams, client_id="test-docs")
    for doc in docs:
        producer.send_records("docs", [doc], key=doc.collection.encode())
    producer.flush()
    producer.close()


def _actor(streams: StreamsConfig, claim: ClaimCheck, model: str, run_dir: Path, **config: object) -> MemoryActor:
    return MemoryActor(
        name="memory-t",
        config=MemoryConfig(enabled=True, questions={"*": ("bako color",)}, **config),
        agent=MemoryAgentConfig(chunk_tokens=8, memory_tokens=4),
        streams=streams,
        model_path=model,
        claim=claim,
        run_dir=run_dir,
    )


def _world_docs(n_worlds: int) -> list[Document]:
    docs = []
    for w in range(n_worlds):
        world = make_world(w, 3)
        docs += [_doc(f"c{w}", world.document(e)) for e in world.entities]
    return docs


def test_a_restart_resumes_every_collection_without_skipping_or_rereading(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    docs = _world_docs(4)  # 12 documents in 4 collections
    _send(streams, docs[:7])
    first = _actor(streams, claim, tiny_model, tmp_path)
    with Running(first) as running:
        wait_for(lambda: first.store.read_count() >= 4 or bool(running.errors), 120, "some documents read")
    # stopped part-way (its consumer commits may lag the store); more documents arrive meanwhile
    _send(streams, docs[7:])
    second = _actor(streams, claim, tiny_model, tmp_path)
    with Running(second) as running:
        wait_for(lambda: second.store.read_count() >= len(docs) or bool(running.errors), 120, "every document read")
        running.check()
    store = MemoryStore(tmp_path / "memory.sqlite")
    read = [doc_id for _, doc_id, _, _ in store.reads()]
    print(f"documents read: {len(read)} of {len(docs)}; distinct: {len(set(read))}")
    assert sorted(read) == sorted(d.doc_id for d in docs), "every document read exactly once"
    for w in range(4):
        memories = store.memories(f"c{w}")
        assert set(memories) == {"bako color", "summary"}
        assert all(m.docs_covered == 3 and m.revision == 3 for m in memories.values())
    updates = read_records(streams, "memory", MemoryUpdate, len(docs))  # a message per document
    assert sorted((u.collection, u.question, u.revision) for u in updates) == sorted(
        (f"c{w}", q, r) for w in range(4) for q in ("bako color", "summary") for r in (1, 2, 3)
    )


def test_an_unreadable_document_is_dead_lettered_and_reading_goes_on(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    producer = Producer(streams, client_id="test-bad")
    producer.send(
        "docs",
        b"not arrow",
        key=b"c0",
        headers=[("longtide.schema", b"Document"), ("longtide.schema_version", str(SCHEMA_VERSION).encode())],
    )
    producer.flush()
    producer.close()
    _send(streams, [_doc("c0", " \n\t "), _doc("c0", "bako color teal .")])
    actor = _actor(streams, claim, tiny_model, tmp_path)
    with Running(actor) as running:
        wait_for(lambda: actor.store.read_count() >= 1 or bool(running.errors), 120, "the good document read")
        letters = read_records(streams, "dlq", DeadLetter, 2)
        read = actor.store.reads()
    errors = sorted(letter.error for letter in letters)
    assert any("not an Arrow IPC stream" in e for e in errors) and any("nothing to read" in e for e in errors)
    assert [doc_id for _, doc_id, _, _ in read] == [_doc("c0", "bako color teal .").doc_id]


def test_ask_answers_from_memory_and_refuses_what_it_cannot(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    actor = _actor(streams, claim, tiny_model, tmp_path)
    try:
        with pytest.raises(QueryError, match="unknown collection 'nowhere'") as unknown:
            actor.ask("nowhere", "bako color")
        assert unknown.value.status == 404

        def put(text: str) -> None:
            memories = [Memory("c0", q, text, 1, -1, 1, "d" * 64) for q in ("bako color", "summary")]
            actor.store.record(memories, doc_id="d" * 64, partition=0, offset=0, policy_version=-1)

        put("")
        with pytest.raises(QueryError, match="empty memory for bako color after 1 documents") as empty:
            actor.ask("c0", "bako color")
        assert empty.value.status == 409
        put("bako color teal .")
        answer = actor.ask("c0", "bako  color")
        assert answer["memory"] == {
            "question": "bako color",
            "text": "bako color teal .",
            "revision": 1,
            "policy_version": -1,
        }
        assert answer["documents"] == {"count": 2, "latest": ["d" * 64, "d" * 64]}
        assert answer["policy_version"] == -1 and isinstance(answer["answer"], str)
        # a question that is not a standing one is answered from the summary memory
        assert actor.ask("c0", "kelo city")["memory"]["question"] == "summary"
    finally:
        actor.close()


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_http_endpoint_rejects_bad_requests_and_keeps_serving(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    _send(streams, [_doc("c0", "bako color teal . kelo city lima .")])
    actor = _actor(streams, claim, tiny_model, tmp_path, max_request_bytes=512, max_question_chars=64)
    with Running(actor) as running:
        wait_for(lambda: actor.server is not None and actor.store.read_count() >= 1 or bool(running.errors), 120)
        running.check()
        url = f"http://{actor.server.address}"
        assert actor.server.address.startswith("127.0.0.1:")
        cases = {
            "oversize": (json.dumps({"collection": "c0", "question": "x" * 600}).encode(), 413, "larger than 512"),
            "not json": (b"{nope", 422, "malformed request"),
            "missing field": (b'{"collection": "c0"}', 422, "question"),
            "long question": (json.dumps({"collection": "c0", "question": "y" * 65}).encode(), 422, "question"),
            "blank": (b'{"collection": "c0", "question": "   "}', 422, "must not be blank"),
            "unknown collection": (b'{"collection": "zz", "question": "bako color"}', 404, "unknown collection"),
        }
        for name, (body, status, message) in cases.items():
            got, payload = _post(f"{url}/ask", body)
            assert (got, message in payload["error"]) == (status, True), (name, got, payload)
        status, payload = _post(f"{url}/ask", b'{"collection": "c0", "question": "bako color"}')
        assert status in (200, 409), payload  # the untrained model may write an empty memory
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{url}/collections", timeout=10) as response:
            assert json.loads(response.read()) == {"collections": ["c0"]}
        # unknown paths and methods answer in the same shape as every other error
        for method, path, status, message in (
            ("GET", "/nope", 404, "no such endpoint: GET /nope"),
            ("DELETE", "/ask", 405, "method not allowed: DELETE /ask"),
        ):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}{path}", method=method), timeout=10)
                raise AssertionError(f"{method} {path} answered 200")
            except urllib.error.HTTPError as exc:
                payload = json.loads(exc.read())
                assert exc.code == status and list(payload) == ["error"], payload
                assert payload["error"].startswith(message), payload


MEMORY_MODEL = str(Path(__file__).resolve().parents[1] / "ops" / "models" / "tiny-memory")


def test_documents_arriving_while_the_learner_trains_change_the_answer(
    streams: StreamsConfig, claim: ClaimCheck, tmp_path: Path
) -> None:
    """The committed memory agent (`make memory-model`) keeps collection 'probe' for a standing
    question while a learner trains and publishes new versions, which the memory actor follows.
    Before a document states the answer, the memory holds nothing to answer from; after one
    arrives, `ask` answers it."""
    from actors.modeling import load_policy

    world = make_world(11, 8)
    target, *others = world.entities
    question = f"{target} color"
    filler = " ".join(f.sentence() for e in others[:3] for f in world.facts_of(e)[:2])
    fact = f"{question} {world.lookup(target, 'color')} ."
    _, tokenizer = load_policy(MEMORY_MODEL)
    send_scored(streams, tokenizer, groups=200)
    learner = make_learner(streams, claim, MEMORY_MODEL, tmp_path / "learner", rl_steps=100, groups_per_step=2, lr=1e-7)
    actor = MemoryActor(
        name="memory-t",
        config=MemoryConfig(enabled=True, questions={"probe": (question,)}),
        agent=MemoryAgentConfig(),
        streams=streams,
        model_path=MEMORY_MODEL,
        claim=claim,
        run_dir=tmp_path,
    )
    with Running(learner, actor) as running:
        _send(streams, [_doc("probe", filler)])
        wait_for(lambda: actor.store.read_count() >= 1 or bool(running.errors), 120, "the first document read")
        with pytest.raises(QueryError, match="empty memory"):
            actor.ask("probe", question)
        wait_for(
            lambda: (actor.policy.version or -1) >= 1 or bool(running.errors),
            120,
            "the memory actor on a trained version",
        )
        sent = time.monotonic()
        _send(streams, [_doc("probe", f"{filler} {fact} {world.facts_of(others[4])[0].sentence()}")])

        def answered() -> bool:
            running.check()
            try:
                return actor.ask("probe", question)["answer"] == world.lookup(target, "color")
            except QueryError:
                return False

        wait_for(answered, 120, "the answer from the new document")
        delay = time.monotonic() - sent
        answer = actor.ask("probe", question)
    print(f"the answer changed {delay:.1f} s after the document was sent; memory {answer['memory']}")
    assert answer["memory"]["text"] == fact and answer["documents"]["count"] == 2
    assert answer["memory"]["policy_version"] >= 1, "written by a version the learner trained"
    assert delay < 60


def test_a_question_asked_after_its_documents_reads_the_collection_then_answers(
    streams: StreamsConfig, claim: ClaimCheck, tmp_path: Path
) -> None:
    """A question no memory was kept for (only the summary was, and the committed memory agent
    writes nothing for 'summary'): the first ask says it is reading; the question's own memory
    then reads the collection's stored documents from the start and answers; a document arriving
    later is read for it too."""
    world = make_world(5, 8)
    docs = [_doc("w5", world.document(e)) for e in world.entities]
    target = world.entities[-1]
    question = f"{target} color"
    _send(streams, docs[:-1])
    actor = MemoryActor(
        name="memory-t",
        config=MemoryConfig(enabled=True, max_asked_questions=2),
        agent=MemoryAgentConfig(),
        streams=streams,
        model_path=MEMORY_MODEL,
        claim=claim,
        run_dir=tmp_path,
    )
    with Running(actor) as running:
        wait_for(lambda: actor.store.read_count() >= 7 or bool(running.errors), 120, "the documents read")
        first = actor.ask("w5", question)
        assert first == {"status": "reading", "collection": "w5", "question": question, "documents": 7, "read": 0}
        wait_for(lambda: actor.progress("w5")["questions"][question] == 7, 60, "the question to catch up")
        _send(streams, docs[-1:])  # the target's own document arrives after the question
        wait_for(lambda: actor.store.read_count() >= 8 or bool(running.errors), 60, "the last document read")
        answer = actor.ask("w5", question)
        progress = actor.progress("w5")
        actor.ask("w5", "one more")
        with pytest.raises(QueryError, match="already keeps memories for 2 asked questions") as refused:
            actor.ask("w5", "a third")
        running.check()
    assert refused.value.status == 409
    assert answer["status"] == "answered" and answer["answer"] == world.lookup(target, "color"), answer
    assert answer["memory"]["question"] == question and answer["memory"]["revision"] == 8
    assert progress["documents_read"] == 8 and progress["reads_pending"] == 0
    assert progress["questions"] == {"summary": 8, question: 8}


def test_a_dead_lettered_document_is_not_read_again_after_a_restart(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    """The memory actor resumes from its store's offsets, not the group's commits: a document it
    dead-lettered is recorded as passed, so a restart does not meet it (and dead-letter it) again."""
    _send(streams, [_doc("c0", "bako color teal ."), _doc("c0", " \n ")])  # the last one cannot be read
    first = _actor(streams, claim, tiny_model, tmp_path)
    with Running(first) as running:
        wait_for(lambda: first.processor.counts["dead_letters"] == 1 or bool(running.errors), 120, "the dead letter")
    second = _actor(streams, claim, tiny_model, tmp_path)
    assert second._applied == {0: 2}, "reading resumes after the dead-lettered document"
    with Running(second):
        time.sleep(3)
    assert second.processor.counts == {**second.processor.counts, "consumed": 0, "dead_letters": 0}
    assert len(read_records(streams, "dlq", DeadLetter, 1)) == 1
