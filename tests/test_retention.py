"""Retention on the embedded durable log (streams/retention.py): what may be deleted, by hand,
then the janitor on a real Tansu over a real SeaweedFS store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streams.embedded import LOG_BUCKET, EmbeddedLog
from streams.kafka import StreamsConfig
from streams.logs import check_log_intact, ensure_topics, exact_end_offsets
from streams.retention import LogJanitor, deletable, floors

HOUR = 3600.0


def test_a_batch_goes_only_when_every_record_is_below_the_floor_and_it_is_old_enough() -> None:
    batches = [(0, 10.0), (3, 10.0), (5, 20.0), (9, 10.0)]  # records 0-2, 3-4, 5-8, 9-
    assert deletable(batches, floor=5, cutoff=15.0) == [0, 3], "0-2 and 3-4 are below 5"
    assert deletable(batches, floor=4, cutoff=15.0) == [0], "3-4 holds offset 4, not yet committed past"
    assert deletable(batches, floor=9, cutoff=15.0) == [0, 3], "5-8 is below 9 but newer than the cutoff"
    assert deletable(batches, floor=100, cutoff=99.0) == [0, 3, 5], "the last batch always stays"
    assert deletable(list(reversed(batches)), floor=5, cutoff=15.0) == [0, 3], "in any order"
    assert deletable([(0, 1.0)], floor=100, cutoff=99.0) == []
    assert deletable([], floor=100, cutoff=99.0) == []


def test_the_floor_is_the_lowest_commit_of_the_topics_readers_and_0_for_one_that_has_none() -> None:
    committed = {
        "a": {("tasks", 0): 7, ("tasks", 1): 3},
        "b": {("tasks", 0): 5},  # reads tasks, nothing committed on partition 1 yet
        "c": {("docs", 0): 1},  # reads another topic: no say over tasks
    }
    assert floors(committed, ("a", "b"), [0, 1], "tasks") == {0: 5, 1: 0}
    assert floors(committed, ("a",), [0, 1], "tasks") == {0: 7, 1: 3}
    assert floors(committed, ("a", "learner"), [0, 1], "tasks") == {0: 0, 1: 0}, "a reader yet to commit: 0"
    assert floors(committed, (), [0], "scored") == {}, "no known readers: nothing may go"


def _offsets(consumer: KafkaConsumer, tp: TopicPartition) -> list[int]:
    out: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500).get(tp, [])
        out += [r.offset for r in batch]
        if not batch and out:
            break
    return out


@pytest.mark.broker
def test_the_janitor_deletes_consumed_old_batches_and_readers_carry_on(tmp_path: Path) -> None:
    with EmbeddedLog("durable", tmp_path) as embedded:
        streams = StreamsConfig(bootstrap_servers=embedded.bootstrap_servers, retention_ms={"tasks": 60_000})
        ensure_topics(streams)
        bootstrap = embedded.bootstrap_servers
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        for i in range(10):  # one batch each: offsets 0..9
            producer.send("tasks", f"r{i}".encode(), key=b"k", partition=0).get(10)
            producer.send("docs", f"d{i}".encode(), key=b"k", partition=0).get(10)
        tp = TopicPartition("tasks", 0)
        for group, offset in (("longtide-a", 6), ("longtide-b", 8)):
            committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            committer.commit({tp: OffsetAndMetadata(offset, "", -1)})
            committer.close()
        readers = {"tasks": ("longtide-a", "longtide-b"), "docs": ("longtide-c",)}
        early = LogJanitor(streams, embedded.store, LOG_BUCKET, {"tasks": ("longtide-a", "longtide-b", "longtide-c")})
        try:
            assert early.sweep(now=time.time() + HOUR) == {"tasks": 0}, "longtide-c has committed nothing on tasks"
        finally:
            early.close()
        janitor = LogJanitor(streams, embedded.store, LOG_BUCKET, readers)
        try:
            assert janitor.sweep() == {"tasks": 0}, "nothing is an hour old yet"
            assert janitor.sweep(now=time.time() + HOUR) == {"tasks": 6}, "below group a's 6"
            assert janitor.sweep(now=time.time() + HOUR) == {"tasks": 0}, "done already"
        finally:
            janitor.close()

        reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        reader.assign([tp])
        reader.seek_to_beginning(tp)
        assert _offsets(reader, tp) == [6, 7, 8, 9], "a reader from the beginning starts at the first batch kept"
        reader.close()
        resumed = KafkaConsumer(bootstrap_servers=bootstrap, group_id="longtide-a", enable_auto_commit=False)
        resumed.assign([tp])
        assert _offsets(resumed, tp) == [6, 7, 8, 9], "the group resumes where it committed"
        resumed.close()
        assert exact_end_offsets(streams, "tasks")[0] == 10
        check_log_intact(streams, {("tasks", 0): 10})  # the end is where it was: no loss is reported

        producer.send("tasks", b"r10", key=b"k", partition=0).get(10)
        producer.close()
        embedded.broker.stop()
        embedded.broker.start()
        again = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        again.assign([tp])
        again.seek_to_beginning(tp)
        assert _offsets(again, tp) == [6, 7, 8, 9, 10], "after a restart too"
        docs = TopicPartition("docs", 0)
        again.assign([docs])
        again.seek_to_beginning(docs)
        assert _offsets(again, docs) == list(range(10)), "a topic without retention keeps everything"
        again.close()
