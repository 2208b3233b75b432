"""The checkpointed reader on a real broker: it starts where the actor's state says, hands out
messages in order, gives the position less what the actor still holds, and commits only when
told the state is durable."""

from __future__ import annotations

import time

from streams.kafka import Consumer, Producer, StreamsConfig
from streams.reader import CheckpointedReader
from streams.topics import SCORED


def _read(reader: CheckpointedReader, n: int, timeout_s: float = 30.0) -> list[tuple[int, int]]:
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += [(m.partition, m.offset) for m in reader.poll(200)]
    return got


def _committed(streams: StreamsConfig, group: str) -> dict[int, int]:
    consumer = Consumer(streams, group_id=group, topics=[SCORED.name], client_id="test-committed", assign_all=True)
    try:
        return consumer.committed_offsets(SCORED.name)
    finally:
        consumer.close()


def test_position_commit_and_restart(streams: StreamsConfig) -> None:
    producer = Producer(streams, client_id="test-reader")
    for i in range(6):
        meta = producer.send(SCORED.name, f"m{i}".encode(), key=b"one key, one partition").get(timeout=30)
    producer.close()
    part = (SCORED.name, meta.partition)

    reader = CheckpointedReader(streams, actor="a", kind="learner", group_id="g-reader", topics=[SCORED.name])
    assert _read(reader, 6) == [(meta.partition, i) for i in range(6)]
    assert reader.handed == {part: 6}
    # the actor still holds offsets 3 and 4: a restart must read from 3
    position = reader.position([(part, 4), (part, 3)])
    assert position == {part: 3}
    assert _committed(streams, "g-reader") == {}, "nothing is committed before the state is durable"
    reader.durable(position)
    reader.close()
    assert _committed(streams, "g-reader") == {meta.partition: 3}

    # a restart from a checkpoint's position reads on from there, whatever the group committed
    again = CheckpointedReader(
        streams, actor="a", kind="learner", group_id="g-reader", topics=[SCORED.name], start={part: 5}
    )
    assert _read(again, 1) == [(meta.partition, 5)]
    assert again.position() == {part: 6}
    again.close()

    # messages a replay leaves out are neither handed out nor counted as read
    replay = CheckpointedReader(streams, actor="a", kind="learner", group_id="g-replay", topics=[SCORED.name])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        got += [m.offset for m in replay.poll(200, keep=lambda m: m.offset < 2)]
    assert got == [0, 1] and replay.handed == {part: 2}
    replay.close()
