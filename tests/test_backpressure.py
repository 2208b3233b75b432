"""Backpressure: an actor pauses its input while its output's readers lag, on a real broker."""

from __future__ import annotations

import pytest

from schemas import Document, Task, encode, headers_for
from streams.backpressure import Backpressure, lag_of, should_pause
from streams.kafka import Consumer, Producer, StreamsConfig
from streams.topics import DOCS, TASKS
from tests.conftest import wait_for
from tests.samples import SAMPLES

TASK: Task = SAMPLES[2]
DOC: Document = SAMPLES[1]


@pytest.mark.unit
def test_lag_sums_partitions_and_pausing_has_hysteresis() -> None:
    assert lag_of({0: 10, 1: 5}, {0: 4}) == 6 + 5
    assert lag_of({0: 3}, {0: 7}) == 0, "a commit past a (low) end offset is no negative lag"
    assert should_pause(False, 101, 100) and not should_pause(False, 100, 100)
    assert should_pause(True, 51, 100), "paused: stays paused until half the bound"
    assert not should_pause(True, 50, 100)


def _send(streams: StreamsConfig, topic: str, record: object, n: int) -> None:
    producer = Producer(streams, client_id="feeder")
    for i in range(n):
        producer.send(topic, encode([record]), key=str(i).encode(), headers=headers_for(record)).get(10)
    producer.close()


def test_the_input_pauses_above_the_bound_and_flows_again_at_half(streams: StreamsConfig) -> None:
    """`tasks` holds 10 records its readers ('longtide-rollout') have not committed: with a bound
    of 6 the actor's `docs` partitions are paused (metrics and counts say so) and its consumer
    takes nothing from there; once the readers commit what they read, `docs` flows again."""
    _send(streams, TASKS.name, TASK, 10)
    consumer = Consumer(streams, group_id="longtide-synthesis", topics=[DOCS.name], client_id="s")
    pressure = Backpressure(
        streams,
        actor="synthesis-t",
        kind="test",
        source=DOCS.name,
        downstream=TASKS.name,
        groups=("longtide-rollout",),
        bound=6,
        check_every_s=0,
    )
    try:
        wait_for(lambda: consumer.poll(100) == [] and bool(consumer.assigned()), 30, "an assignment")
        assert pressure.apply(consumer) and pressure.lag == 10 and pressure.pauses == 1
        _send(streams, DOCS.name, DOC, 4)  # after the assignment: no poll before the pause may take them
        assert all(tp.topic == DOCS.name for tp in consumer._consumer.paused())
        assert [m for _ in range(5) for m in consumer.poll(200)] == [], "nothing read while paused"

        readers = Consumer(streams, group_id="longtide-rollout", topics=[TASKS.name], client_id="r", assign_all=True)
        got = [m for _ in range(20) for m in readers.poll(200)]
        by_partition: dict[tuple[str, int], int] = {}
        for m in got:
            by_partition[(m.topic, m.partition)] = max(by_partition.get((m.topic, m.partition), 0), m.offset + 1)
        (first, end), *rest = sorted(by_partition.items())
        readers.commit({first: end, **dict(rest)})  # everything: lag 0
        readers.close()
        assert not pressure.apply(consumer) and pressure.lag == 0
        read = []
        wait_for(lambda: read.extend(consumer.poll(200)) or len(read) >= 4, 30, "docs read again")
    finally:
        pressure.close()
        consumer.close()


def test_a_source_paused_mid_batch_flows_again_while_another_topic_was_read_meanwhile(
    streams: StreamsConfig,
) -> None:
    """What stalled synthesis in the soaks: a fetched batch of `docs` is only partly taken when
    backpressure pauses `docs`; `scored` goes on flowing; on resume the rest of the batch, and
    every later document, must come. kafka-python 3.0.12 parks the rest of a paused partition's
    batch and gives it back only while no other partition's records are in line; once `scored`
    had been read, `docs` was parked for good and never fetched again."""
    _send(streams, DOCS.name, DOC, 30)
    consumer = Consumer(streams, group_id="longtide-synthesis", topics=[DOCS.name, TASKS.name], client_id="s")
    try:
        docs: list[tuple[int, int]] = []
        wait_for(
            lambda: docs.extend((m.partition, m.offset) for m in consumer.poll(200, max_records=3)) or bool(docs),
            30,
            "docs",
        )
        assert len(docs) < 30, "the first poll took part of the batch"
        consumer.pause([part for part in consumer.assigned() if part[0] == DOCS.name])
        _send(streams, TASKS.name, TASK, 5)  # another topic flows while docs is paused
        others: list[str] = []
        wait_for(lambda: others.extend(m.topic for m in consumer.poll(200)) or len(others) >= 5, 30, "tasks")
        assert set(others) == {TASKS.name}, "nothing of a paused topic is taken"
        assert consumer._consumer._fetcher._paused_partition_records, "the rest of the docs batch was parked"
        consumer.resume_topic(DOCS.name)
        _send(streams, DOCS.name, DOC, 10)
        wait_for(
            lambda: (
                docs.extend((m.partition, m.offset) for m in consumer.poll(200) if m.topic == DOCS.name)
                or len(docs) >= 40
            ),
            30,
            "every document after the resume",
        )
        assert len(docs) == len(set(docs)) == 40, "every document once"
    finally:
        consumer.close()
