"""The processor's guarantees on a real broker: commit only after acks, drop duplicates."""

from __future__ import annotations

import re
from concurrent.futures import Future

import pytest

from schemas import Document, Task, encode, headers_for
from streams.kafka import Consumer, Producer, StreamsConfig
from streams.logs import group_offsets
from streams.processor import Output, StreamProcessor, arrow_decoder
from tests.conftest import wait_for
from tests.kafka_helpers import read_records
from tests.samples import SAMPLES

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

    def send(self, topic: str, value: bytes, **_: object) -> Future:
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


def _batched(streams: StreamsConfig, handle, group: str = "longtide-batched", **options: object) -> StreamProcessor:  # noqa: ANN001
    consumer = Consumer(streams, group_id=group, topics=["tasks"], client_id="b")
    return StreamProcessor(
        actor="b",
        kind="test",
        consumer=consumer,
        producer=Producer(streams, client_id="b"),
        decoder=arrow_decoder(Task),
        handle=handle,
        dedup_window=100,
        **{"batched": True, **options},  # type: ignore[arg-type]
    )


def test_batched_handle_sees_the_whole_poll_and_isolates_a_bad_record(streams: StreamsConfig) -> None:
    import dataclasses

    tasks = [dataclasses.replace(TASK, task_id=f"t{i}") for i in range(4)]
    _send(streams, tasks)
    calls: list[list[str]] = []

    def handle(batch: list[Task]) -> list[Output]:
        calls.append([t.task_id for t in batch])
        if any(t.task_id == "t2" for t in batch):
            raise ValueError("t2 cannot be processed")
        return [Output("docs", [DOC], key=t.task_id.encode()) for t in batch]

    processor = _batched(streams, handle)
    _step_until(processor, 4)
    # one call with every polled task failed on t2; then message by message: only t2 fails
    assert len(calls[0]) > 1 and "t2" in calls[0]
    assert processor.counts["dead_letters"] == 1 and processor.counts["produced"] == 3
    assert sum(group_offsets(streams, "longtide-batched").values()) == 4
    processor.consumer.close()


def test_a_fatal_error_is_not_dead_lettered_and_commits_nothing(streams: StreamsConfig) -> None:
    from streams.processor import FatalError

    _send(streams, [TASK])

    def handle(batch: list[Task]) -> list[Output]:
        raise FatalError("the engine died")

    processor = _batched(streams, handle)
    with pytest.raises(FatalError, match="engine died"):
        _step_until(processor, 1)
    assert processor.counts["dead_letters"] == 0
    assert group_offsets(streams, "longtide-batched") == {}, "nothing committed: the task is read again"
    processor.consumer.close()


def test_a_partition_this_consumer_no_longer_holds_is_not_committed(streams: StreamsConfig) -> None:
    """Two consumers share `tasks` (2 partitions) in one group; one commits offsets for both,
    as after a rebalance during `hold` moved a partition away mid-batch: only its own partition
    is committed, so the other owner's committed offset is not moved."""
    import threading

    first = Consumer(streams, group_id="longtide-owned", topics=["tasks"], client_id="a")
    second = Consumer(streams, group_id="longtide-owned", topics=["tasks"], client_id="b")
    split = threading.Event()

    def poll(consumer: Consumer) -> None:  # each in its own thread: a join waits for the other
        for _ in range(300):
            if split.is_set():
                return
            consumer.poll(200)
            if len(first.assigned()) == 1 and len(second.assigned()) == 1:
                split.set()

    threads = [threading.Thread(target=poll, args=(c,)) for c in (first, second)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert split.is_set(), (first.assigned(), second.assigned())
        [own] = first.assigned()
        first.commit({("tasks", 0): 3, ("tasks", 1): 3})
        assert group_offsets(streams, "longtide-owned") == {own: 3}
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(("mode", "deaths"), [("alone", [9, 0]), ("batched", [9, 9, 0])])
def test_a_record_that_kills_its_process_does_not_kill_it_again(
    streams: StreamsConfig, tmp_path, mode: str, deaths: list[int]
) -> None:
    """A processor whose process dies on one task (os._exit, as an engine crash or an
    out-of-memory kill would). Handled alone, the task is charged the death and the restarted
    process dead-letters it instead of dying a second time. Handled in a batch, the death makes
    every task of the batch a suspect; the restart handles each alone, the second death names
    the culprit, and the next process dead-letters it. Every other task is handled."""
    import dataclasses
    import subprocess
    import sys

    from schemas import DeadLetter

    tasks = [dataclasses.replace(TASK, task_id=i) for i in ("t0", "poison", "t2", "t3")]
    _send(streams, tasks)
    command = [
        *(sys.executable, "-m", "tests.poison_worker", streams.bootstrap_servers, str(tmp_path), "poison", "4", mode)
    ]
    codes = [subprocess.run(command, timeout=120).returncode for _ in deaths]
    assert codes == deaths
    [letter] = read_records(streams, "dlq", DeadLetter, 1)
    group = f"longtide-poisoned-{mode == 'batched'}"
    assert (letter.source_topic, letter.source_offset, letter.consumer_group) == ("tasks", 1, group)
    assert letter.error.startswith("poison: poisoned's process died 1 time while handling this record alone")
    assert letter.original_value == encode([tasks[1]])
    handled = {d.doc_id[:2] for d in read_records(streams, "docs", Document, 3)}
    assert handled == {"t0", "t2", "t3"}
    assert sum(group_offsets(streams, group).values()) == 4, "committed past every task"


def test_an_output_larger_than_the_broker_takes_dead_letters_its_input(streams: StreamsConfig) -> None:
    import dataclasses

    from schemas import DeadLetter

    _send(streams, [TASK, dataclasses.replace(TASK, task_id="big")])

    def handle(batch: list[Task]) -> list[Output]:
        text = "x" * (200_000 if batch[0].task_id == "big" else 10)
        return [Output("docs", [dataclasses.replace(DOC, text=text)], key=t.task_id.encode()) for t in batch]

    processor = _batched(streams, handle, "longtide-big", batched=False, max_message_bytes=100_000)
    _step_until(processor, 2)
    [letter] = read_records(streams, "dlq", DeadLetter, 1)
    assert letter.source_offset == 1
    assert re.fullmatch(
        r"process: its output to docs is 20\d,\d{3} bytes, over streams.max_message_bytes \(100,000\)", letter.error
    )
    assert processor.counts["produced"] == 1
    processor.consumer.close()


def test_lost_records_count_each_dead_lettered_record_of_a_topic_once(streams: StreamsConfig) -> None:
    """The rollout gate's view of groups that will never be trained: junk on `rollouts` that
    reward dead-lettered, counted once however many consumers rejected it, and only above the
    run's base offsets (an older run's junk is not this run's)."""
    from streams.kafka import Message
    from streams.logs import LostRecords
    from streams.processor import dead_letter

    producer = Producer(streams, client_id="t")
    for group, offset in (
        ("longtide-reward", 5),
        ("longtide-other", 5),
        ("longtide-reward", 7),
        ("longtide-reward", 2),
    ):
        junk = Message("rollouts", 0, offset, b"k", b"junk", [])
        producer.send_records("dlq", [dead_letter(junk, actor="a", group=group, error="decode: junk")]).get(10)
    other = Message("tasks", 0, 9, b"k", b"junk", [])
    producer.send_records("dlq", [dead_letter(other, actor="a", group="longtide-rollout", error="x")]).get(10)
    producer.send("dlq", b"not a dead letter").get(10)
    producer.close()
    lost = LostRecords(streams, "rollouts", base={0: 3}, client_id="t-lost")
    try:
        wait_for(lambda: lost.count() == 2, 30, "offsets 5 and 7 of rollouts")
    finally:
        lost.close()


def test_a_transient_error_is_retried_and_one_that_lasts_restarts_the_actor(streams: StreamsConfig) -> None:
    """A timeout that passes on the second try is handled (one retry counted, nothing
    dead-lettered); a ValueError is dead-lettered on the first try; an S3 error that lasts is
    tried 1 + streams.transient_retries times and then ends the loop (StillFailing) with its
    record uncommitted, so a restarted actor reads it again: never a dead letter."""
    import dataclasses

    from streams.transient import StillFailing

    tries: dict[str, int] = {}

    def handle(batch: list[Task]) -> list[Output]:
        (task,) = batch
        tries[task.task_id] = tries.get(task.task_id, 0) + 1
        if task.task_id == "passes" and tries["passes"] == 1:
            raise TimeoutError("S3 read timed out")
        if task.task_id == "lasts":
            raise OSError("When reading blobs/ab/cd: AWS Error NETWORK_CONNECTION during GetObject")
        if task.task_id == "invalid":
            raise ValueError("not a task this actor takes")
        return [Output("docs", [DOC], key=task.task_id.encode())]

    _send(streams, [dataclasses.replace(TASK, task_id=t) for t in ("passes", "invalid")])
    processor = _batched(streams, handle, group="longtide-transient", batched=False, transient_retries=2)
    _step_until(processor, 2)
    assert tries == {"passes": 2, "invalid": 1}
    assert processor.counts["retries"] == 1 and processor.counts["dead_letters"] == 1
    assert processor.counts["produced"] == 1
    committed = group_offsets(streams, "longtide-transient")

    _send(streams, [dataclasses.replace(TASK, task_id="lasts")])
    with pytest.raises(StillFailing, match=r"NETWORK_CONNECTION during GetObject \(still failing after 2 retries\)"):
        _step_until(processor, 1)
    assert tries["lasts"] == 3 and processor.counts["dead_letters"] == 1, "tried 3 times, not dead-lettered"
    assert group_offsets(streams, "longtide-transient") == committed, "nothing committed: it is read again"
    processor.consumer.close()


def test_polls_that_take_nothing_while_records_wait_are_counted_as_starved(streams: StreamsConfig) -> None:
    """The soak's stall, made here: a consumer whose fetches never complete. Its own view of the
    partition says records wait; the processor counts the empty polls (the supervisor restarts
    the actor past `supervision.stall_s`), but not while the partitions are paused."""
    import time

    _send(streams, [TASK.__class__(**{**TASK.__dict__, "task_id": f"s{i}"}) for i in range(3)])
    processor = _processor(streams, Producer(streams, client_id="t"))
    for _ in range(100):
        if processor.step(timeout_ms=300, max_records=1):
            break
    kafka_consumer = processor.consumer._consumer
    real_poll = kafka_consumer.poll

    def stuck(timeout_ms: int = 0, **_: object) -> dict:
        time.sleep(timeout_ms / 1000)
        return {}

    kafka_consumer.poll = stuck
    for _ in range(3):
        assert processor.step(timeout_ms=100) == 0
    snapshot = processor.snapshot()
    assert snapshot["input_waiting"] == 2 and snapshot["input_starved_s"] >= 0.3, snapshot
    processor.consumer.pause()
    processor.step(timeout_ms=100)
    assert processor.snapshot()["input_starved_s"] == 0.0, "paused on purpose: not starved"
    processor.consumer.resume()
    kafka_consumer.poll = real_poll
    _step_until(processor, 2)
    assert processor.snapshot()["input_starved_s"] == 0.0
    processor.consumer.close()
