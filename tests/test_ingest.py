"""Ingest on the real embedded broker: JSON from another Kafka client, dedup, dead letters."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer as ConfluentProducer

from actors.ingest.actor import IngestActor, content_id
from actors.ingest.config import IngestConfig
from actors.tasks import word_count
from schemas import SCHEMA_VERSION, DeadLetter, Document, RawDocument, encode, headers_for
from streams.blobs import BlobStore, ClaimCheck
from streams.broker import EmbeddedBroker
from streams.kafka import Producer, StreamsConfig
from tests.conftest import Running, broker_streams
from tests.kafka_helpers import read_records


def _ingest(streams: StreamsConfig, claim: ClaimCheck) -> IngestActor:
    return IngestActor(name="ingest-t", config=IngestConfig(), streams=streams, claim=claim, count_tokens=word_count)


def test_json_from_confluent_kafka_with_its_own_headers_is_ingested_once(
    streams: StreamsConfig, claim: ClaimCheck
) -> None:
    other = ConfluentProducer({"bootstrap.servers": streams.bootstrap_servers})
    doc = {"collection": "notes", "text": "bako color teal .", "source": "confluent", "attrs": {"lang": "en"}}
    # the producer's own headers, one named `schema`: Longtide's are in the `longtide.` namespace
    own = [("schema", b"notes-app/v2"), ("content-type", b"application/json"), ("record_id", b"42")]
    for _ in range(2):  # a retrying producer sends it twice
        other.produce("docs.raw", json.dumps(doc).encode(), headers=own)
    other.produce("docs.raw", json.dumps({**doc, "text": "x " * 800}).encode())  # long: goes to the blob store
    assert other.flush(10) == 0
    del other  # stop librdkafka reconnecting after the broker is gone
    with Running(_ingest(streams, claim)):
        docs = read_records(streams, "docs", Document, 2)
    assert len(docs) == 2, "the duplicate was dropped"
    short, long = sorted(docs, key=lambda d: d.n_tokens)
    assert short.doc_id == content_id("notes", "bako color teal .") and short.n_tokens == 4
    assert short.attrs == (("lang", "en"),) and short.source == "confluent"
    assert long.text == "" and claim.get_text(long.text, long.text_ref).startswith("x x")


CASES = {
    "invalid_json": (b'{"collection": "c", "text": ', [], "decode: payload: invalid JSON (Expecting value at line 1"),
    # the shapes that stopped the service in an operator's hands (issue 20), each read as the producer would say it
    "lone_surrogate": (
        b'{"collection": "c", "text": "ok \\ud800"}',
        [],
        "decode: RawDocument.text: not valid Unicode: a lone surrogate \\ud800 at character 3",
    ),
    "attrs_list": (
        b'{"collection": "c", "text": "t", "attrs": [1, 2]}',
        [],
        "decode: RawDocument.attrs: expected an object of strings, got an array",
    ),
    "attrs_nested": (
        b'{"collection": "c", "text": "t", "attrs": {"k": {"deep": 1}}}',
        [],
        "decode: RawDocument.attrs.k: expected a string, number or boolean, got an object",
    ),
    "tombstone": (None, [], "decode: payload: the message has no value (a tombstone, or empty)"),
    "missing_text": (b'{"collection": "c"}', [], "decode: RawDocument.text: missing (required: collection, text)"),
    "deep_nesting": (
        b'{"collection": "c", "text": "t", "attrs": {"k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        [],
        "decode: payload: JSON nested too deeply to read",
    ),
    "huge_attrs": (
        b'{"collection": "c", "text": "t", "attrs": {"k": "' + b"x" * 2_000_000 + b'"}}',
        [],
        "decode: RawDocument.attrs: 2,000,001 bytes, over ingest.max_attrs_bytes (65,536)",
    ),
    "text_a_number": (
        b'{"collection": "c", "text": 5}',
        [],
        "decode: RawDocument.text: expected a string, got a number",
    ),
    "top_level_array": (b"[1, 2]", [], "decode: payload: expected a JSON object, got an array"),
    "invalid_utf8": (b'{"collection": "c", "text": "\xff"}', [], "payload: invalid UTF-8 at byte 29"),
    "empty_text": (b'{"collection": "c", "text": "  "}', [], "RawDocument.text: must not be empty"),
    "wrong_schema_version": (
        encode([RawDocument(collection="c", text="t")]),
        [("longtide.schema", b"RawDocument"), ("longtide.schema_version", b"7")],
        f"header longtide.schema_version: got '7', this build reads {SCHEMA_VERSION}",
    ),
}


@pytest.fixture(scope="module")
def dead_letters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DeadLetter, Document | None]]:
    """One ingest actor reads every bad record of CASES, each followed by a good document, on one
    broker: each case's dead letter and the good document after it, by case. (One run, not one
    broker and one consumer-group join per case: the join alone took 3 s of each.)"""
    tmp = tmp_path_factory.mktemp("dlq")
    with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
        streams = broker_streams(broker)
        producer = Producer(streams, client_id="test")
        for case, (value, headers, _) in CASES.items():
            producer.send("docs.raw", value, key=case.encode(), headers=headers).get(10)
            good = RawDocument(collection="c", text=f"after the bad one {case}")
            producer.send("docs.raw", encode([good]), key=case.encode(), headers=headers_for(good)).get(10)
        producer.close()
        with Running(_ingest(streams, ClaimCheck(BlobStore(str(tmp / "blobs")), limit=1024))) as running:
            letters = read_records(streams, "dlq", DeadLetter, len(CASES))
            docs = read_records(streams, "docs", Document, len(CASES))
            running.check()
    by_text = {d.text: d for d in docs}
    return {
        letter.original_key.decode(): (letter, by_text.get(f"after the bad one {letter.original_key.decode()}"))
        for letter in letters
    }


@pytest.mark.broker
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_record_goes_to_dlq_and_loop_keeps_going(
    dead_letters: dict[str, tuple[DeadLetter, Document | None]], case: str
) -> None:
    value, headers, reason = CASES[case]
    letter, doc = dead_letters[case]
    assert reason in letter.error
    assert letter.original_value == (value or b"") and letter.original_key == case.encode()
    assert letter.source_topic == "docs.raw" and letter.actor == "ingest-t"
    assert letter.consumer_group == "longtide-ingest"
    assert letter.dead_letter_id == f"longtide-ingest/docs.raw/{letter.source_partition}/{letter.source_offset}"
    assert dict(letter.original_headers) == dict(headers)
    assert doc is not None and doc.text == f"after the bad one {case}", "the good record after it was ingested"


def test_cli_ingests_files_and_reports_status(
    streams: StreamsConfig, claim: ClaimCheck, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ops.cli import main

    (tmp_path / "note.md").write_text("# A note\nbako color teal .\n")
    (tmp_path / "docs.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "collection": "other"}\n')
    args = ["--bootstrap-servers", streams.bootstrap_servers]
    assert main(["ingest", str(tmp_path / "note.md"), str(tmp_path / "docs.jsonl"), "--collection", "c", *args]) == 0
    assert "sent 3 documents" in capsys.readouterr().out
    with Running(_ingest(streams, claim)):
        docs = read_records(streams, "docs", Document, 3)
    assert sorted((d.collection, d.n_tokens) for d in docs) == [("c", 1), ("c", 7), ("other", 1)]
    assert main(["status", *args]) == 0  # the one-screen view
    assert "policy version -" in capsys.readouterr().out
    assert main(["status", "--json", *args]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["topics"]["docs.raw"]["records"] >= 1 and status["dead_letters"] == 0
    assert "docs.raw/0" in status["consumer_groups"]["longtide-ingest"]
