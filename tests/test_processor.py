"""The processor's guarantees on a real broker: commit only after acks, drop duplicates."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from schemas import Document, Task, encode, headers_for
from streams.kafka import Consumer, Producer, StreamsConfig, group_offsets
from streams.processor import Output, StreamProcessor, arrow_decoder
from tests.kafka_helpers import read_records
from tests.test_schemas import SAMPLES

TASK: Task = SAMPLES[2]
DOC: Document = SAMPLES[1]


def _processor(streams: StreamsConfig, producer: Producer) -> StreamProcessor:
    consumer = Consumer(streams, group_id="longtide-test", topics=["tasks"], client_id="t")
    return StreamProcessor(
        actor="t",
        kind="test",
        consumer=consumer,
        producer=producer,
        decoder=arrow_decoder(Task),
        handle=lambda tasks: [Output("docs", [DOC], key=t.task_id.encode()) for t in tasks],
        dedup_window=100,
    )


def _send(streams: StreamsConfig, records: list) -> None:
    producer = Producer(streams, client_id="feeder")
    for record in records:
        producer.send("tasks", encode([record]), key=b"k", headers=headers_for(record)).get(10)
    producer.close()


def _step_until(processor: StreamProcessor, n: int) -> None:
    handled = 0
    for _ in range(100):
        handled += processor.step(timeout_ms=300)
        if handled >= n:
            return
    raise AssertionError(f"handled {handled} of {n} messages")


class RefusingProducer(Producer):
    """A producer whose broker acknowledgement fails, as when the broker rejects a write."""

    def send_records(self, topic: str, records: list, *, key: bytes | None = None) -> Future:
        future: Future = Future()
        future.set_exception(RuntimeError("broker refused the write"))
        future.get = future.result  # kafka-python futures are read with .get(timeout)
        return future


def test_no_commit_when_output_is_not_acknowledged(streams: StreamsConfig) -> None:
    _send(streams, [TASK])
    processor = _processor(streams, RefusingProducer(streams, client_id="t"))
    with pytest.raises(RuntimeError, match="broker refused"):
        _step_until(processor, 1)
    assert group_offsets(streams, "longtide-test") == {}, "nothing committed"
    processor.consumer.close()
    # a fresh processor in the same group gets the record again and, acknowledged, commits it
    processor = _processor(streams, Producer(streams, client_id="t2"))
    _step_until(processor, 1)
    assert sum(group_offsets(streams, "longtide-test").values()) == 1
    assert read_records(streams, "docs", Document, 1) == [DOC]
    processor.consumer.close()


def test_duplicates_dropped_by_record_id(streams: StreamsConfig) -> None:
    _send(streams, [TASK, TASK, TASK])
    processor = _processor(streams, Producer(streams, client_id="t"))
    _step_until(processor, 3)
    assert processor.counts["duplicates"] == 2 and processor.counts["produced"] == 1
    processor.consumer.close()
