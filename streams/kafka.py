"""Kafka client wrappers (kafka-python): the one small interface the actors use.

Producers wait for `acks=all`; consumers never auto-commit: `StreamProcessor` commits an
offset only after what it produced from the record is acknowledged.

A broker that lost its log (the embedded one on memory storage, restarted; a deleted and
re-created topic) hands out offsets from 0 again, and Kafka clients silently rewind to them.
Here a consumer raises `LogLost` instead when a partition goes below what it already read or
committed, and `streams.logs.check_log_intact` compares offsets known to have existed (a run's, a
checkpoint's) with what the broker holds, before anything trains on the new records.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, IllegalStateError
from kafka.structs import OffsetAndMetadata

from schemas import encode, headers_for
from streams.embedded import storage_setting_problem
from streams.security import security_options, security_problem
from streams.topics import partition_counts, retention_settings

log = logging.getLogger(__name__)

Partition = tuple[str, int]


@dataclass(frozen=True)
class StreamsConfig:
    """How to reach Kafka and where large payloads go."""

    bootstrap_servers: str = ""
    """host:port[,host:port]; empty starts the embedded broker (Tansu) on a free port."""
    embedded_storage: str = "durable"
    """Where the embedded broker keeps its log (streams/embedded.py): 'durable' (a private
    SeaweedFS S3 store in <run_dir>/store; the log, the committed offsets and the blobs outlive
    a crash of the broker, of the store or of the whole service), 'memory' or a memory:// URL
    (faster, lost when the broker stops; consumers detect the loss and stop), or any Tansu
    storage URL (s3://bucket/ with the AWS_* variables set)."""
    partitions: dict[str, int] = field(default_factory=dict)
    """Partition count per topic name, replacing the registry's (streams/topics.py) for topics
    created from now on; 'policy' and 'dlq' always have 1. Existing topics keep theirs, and
    `streams.logs.ensure_topics` reports those that differ."""
    retention_ms: dict[str, int] = field(default_factory=dict)
    """Retention per topic name (`retention.ms`, -1: forever), given to the topics created from
    now on; empty keeps the broker's default. Records older than it may be deleted: a topic a
    run must read back (`policy` for a resume, `docs` for a rebuilt store, `scored` for a
    replay) should keep them longer than the run. Apache Kafka enforces it; the embedded Tansu
    accepts the setting at creation and does not report it back (README, "Known limits")."""
    replication: int = 1
    """Replication factor of the topics created; 1 on the embedded broker (one node)."""
    max_poll_interval_ms: int = 10_000
    """Consumer-group rebalance timeout; the embedded broker stalls group joins unless this
    is a few seconds (ARCHITECTURE.md)."""
    session_timeout_ms: int = 10_000
    """Consumer-group session timeout."""
    heartbeat_interval_ms: int = 1_000
    """Heartbeat period of group consumers."""
    reconnect_backoff_max_ms: int = 1_000
    """The longest wait between a client's attempts to reach a broker it lost (the wait doubles
    from 50 ms up to this). kafka-python's own default is 30 s: after a broker restart its
    clients then sat idle for up to half a minute; 1 s is the Java client's default."""
    compression: str = ""
    """Producer compression: '', 'gzip', 'lz4', 'zstd' or 'snappy'."""
    blob_uri: str = ""
    """Blob store location (a local directory or s3://bucket/prefix, which every node of a
    cluster can reach); empty uses the durable embedded log's store (its `blobs` bucket), else
    the run directory's blobs/ folder."""
    inline_limit_bytes: int = 64 * 1024
    """Text or token payloads above this size go to the blob store (claim check)."""
    dedup_window: int = 200_000
    """How many recent record ids each consumer remembers to drop duplicates."""
    max_message_bytes: int = 1_000_000
    """Largest message an actor produces (Kafka's `message.max.bytes` is about 1 MB by default):
    a record whose output would be larger is dead-lettered instead of refused by the broker."""
    journal_dir: str = ""
    """Where consumers journal the records they are handling (`streams/journal.py`), shared by
    every process of a consumer group, and each group's committed offsets (so a broker that lost
    its log is caught even by a consumer new to a partition); under the launcher, a run's journal
    is `<journal_dir>/<run id>` (empty: `<run_dir>/runs/<id>/journal`); elsewhere empty keeps
    none (no deaths are counted)."""
    transient_retries: int = 2
    """How many more times a handler call that failed with a transient error (a timeout, an S3
    or connection error, an engine out of memory: streams/transient.py) is tried, 0.5 s then
    twice as long each time; one still failing then restarts the actor (the record is read
    again), never dead-letters it. Decode and validation errors are dead-lettered at once."""
    poison_deaths: int = 1
    """A record that was being handled alone when its actor's process died this many times is
    dead-lettered instead of handled again: with 1, a record that killed its actor once does not
    kill it a second time (but a record alone in flight at an operator's kill -9 is dead-lettered
    too: 2 retries it once more). Records in flight together at a death are each handled alone
    next, so a second death names the culprit."""
    security_protocol: str = "PLAINTEXT"
    """How every Kafka client of the service connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    (an external cluster; the embedded broker listens on loopback in plaintext)."""
    sasl_mechanism: str = ""
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with a SASL_* protocol."""
    sasl_username: str = ""
    """The SASL user."""
    sasl_password_env: str = ""
    """The name of the environment variable holding the SASL password: the password itself is
    never in a config file, a run directory or `state.json`."""
    ssl_cafile: str = ""
    """The CA certificate (PEM) that signed the brokers' certificates (SSL and SASL_SSL)."""
    ssl_certfile: str = ""
    """This client's certificate (PEM), for brokers that require client certificates."""
    ssl_keyfile: str = ""
    """This client's private key (PEM)."""

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a third "
                f"of session_timeout_ms ({self.session_timeout_ms})"
            )
        if not 50 <= self.reconnect_backoff_max_ms <= 60_000:
            raise ValueError(
                f"streams.reconnect_backoff_max_ms ({self.reconnect_backoff_max_ms}) must be 50..60000: "
                "1000 (the Java client's default) reconnects within a second of a broker's return"
            )
        if self.compression not in ("", "gzip", "lz4", "zstd", "snappy"):
            raise ValueError(f"compression ({self.compression!r}) must be one of '', gzip, lz4, zstd, snappy")
        problem = security_problem(
            self.security_protocol, self.sasl_mechanism, self.sasl_username, self.sasl_password_env
        )
        if problem:
            raise ValueError(problem)
        if self.max_message_bytes < 64 * 1024:
            raise ValueError(
                f"streams.max_message_bytes ({self.max_message_bytes}) must be >= 65536: set it to the brokers' "
                "message.max.bytes (Kafka's default is 1048588)"
            )
        if not 0 <= self.transient_retries <= 5:
            raise ValueError(
                f"streams.transient_retries ({self.transient_retries}) must be 0..5: more waits "
                f"{0.5 * (2**self.transient_retries - 1):.1f} s on one record, past the consumer's poll interval"
            )
        if self.poison_deaths < 1:
            raise ValueError(
                f"streams.poison_deaths ({self.poison_deaths}) must be >= 1: 1 dead-letters a record that killed "
                "its actor once, 2 retries it once more"
            )
        if self.inline_limit_bytes < 1024:
            raise ValueError(f"inline_limit_bytes ({self.inline_limit_bytes}) must be >= 1024")
        problem = storage_setting_problem(self.embedded_storage)
        if problem:
            raise ValueError(problem)
        partition_counts(self.partitions)  # raises naming the entry
        retention_settings(self.retention_ms)
        if self.replication < 1:
            raise ValueError(f"streams.replication ({self.replication}) must be >= 1")
        if self.replication > 1 and not self.bootstrap_servers:
            raise ValueError(
                f"streams.replication ({self.replication}) must be 1 with the embedded broker (one node); "
                "set streams.bootstrap_servers to a cluster with at least that many brokers"
            )

    def client_options(self) -> dict[str, Any]:
        """Connection settings every kafka-python client of the service is built with (producers,
        consumers, admin clients); the SASL password is read from `sasl_password_env` here, at
        connection time, and a missing one is an error naming the variable."""
        ssl_files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile}
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
        } | security_options(
            self.security_protocol, self.sasl_mechanism, self.sasl_username, self.sasl_password_env, ssl_files
        )


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


PRODUCER_BATCH_BYTES = 1024 * 1024
"""Bytes the producer packs into one batch per partition (kafka-python's default is 16 KiB,
librdkafka's 1 MiB). A scored group is ~40 KB, so at 16 KiB every message was a batch of its
own, and on the durable store every batch is an S3 write: bench/broker_storage.py measured
the streams layer at 0.10 of a raw confluent-kafka producer on durable storage."""


class Producer:
    """Sends bytes or records; every send returns a future resolved on broker ack."""

    def __init__(self, config: StreamsConfig, *, client_id: str) -> None:
        self._producer = KafkaProducer(
            **config.client_options(),
            client_id=client_id,
            acks="all",
            linger_ms=5,
            batch_size=PRODUCER_BATCH_BYTES,
            compression_type=config.compression or None,
            max_request_size=16 * 1024 * 1024,
        )

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Future:
        return self._producer.send(topic, value=value, key=key, headers=headers or [])

    def send_records(self, topic: str, records: Sequence[Any], *, key: bytes | None = None) -> Future:
        """Records of one type as one message; headers name the type and the first id."""
        return self.send(topic, encode(records), key=key, headers=headers_for(records[0]))

    def flush(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)


class TopicMissing(RuntimeError):
    """A topic to read from every partition of does not exist (a broker Longtide never set up)."""


class LogLost(RuntimeError):
    """The broker no longer holds records that were read, committed or known to exist: it
    restarted without its log (memory storage) or the topic was deleted. Not a record's fault
    and not retried: what was built on the lost records cannot be continued silently."""


LOSS_FIX = (
    "the broker lost its log (the embedded broker on memory storage restarted, or the topic was deleted): "
    "records before that offset are gone and offsets started again. Keep the log on durable storage "
    "(streams.embedded_storage=durable, or a Kafka cluster in "
    "streams.bootstrap_servers), or start a fresh run (without --resume)"
)


class OffsetFloor:
    """Per partition, the lowest offset a consumer may be handed next: past what it has read
    while the partition stayed assigned, and past what it committed. A record below the floor
    means the log went backward. An explicit seek sets the floor."""

    def __init__(self) -> None:
        self._read: dict[Partition, int] = {}
        self._committed: dict[Partition, int] = {}

    def floor(self, part: Partition) -> int:
        return max(self._read.get(part, 0), self._committed.get(part, 0))

    def check(self, part: Partition, offset: int) -> None:
        """Accept a record at `offset`, or raise LogLost."""
        floor = self.floor(part)
        if offset < floor:
            raise LogLost(
                f"{part[0]}/{part[1]}: got offset {offset} after reading or committing up to {floor}; {LOSS_FIX}"
            )
        self._read[part] = offset + 1

    def check_position(self, part: Partition, position: int) -> None:
        """Accept the consumer's position (the next offset it will fetch), or raise LogLost:
        a client that finds its offset out of range rewinds to the start of the new log before
        any record comes, or when records only arrive on other partitions."""
        floor = self.floor(part)
        if position < floor:
            raise LogLost(
                f"{part[0]}/{part[1]}: position went back to {position} after reading or committing up to "
                f"{floor}; {LOSS_FIX}"
            )

    def committed(self, offsets: Mapping[Partition, int]) -> None:
        for part, offset in offsets.items():
            self._committed[part] = max(self._committed.get(part, 0), offset)

    def seeked(self, offsets: Mapping[Partition, int]) -> None:
        for part, offset in offsets.items():
            self._read[part] = self._committed[part] = offset

    def released(self, parts: Iterable[Partition]) -> None:
        """Partitions given up in a rebalance: whoever reads them next starts from the group's
        committed offset, never below this consumer's own commits."""
        for part in parts:
            self._read.pop(part, None)


class _ReleaseOnRebalance(ConsumerRebalanceListener):
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        parts = [(tp.topic, tp.partition) for tp in revoked]
        self.consumer.floor.released(parts)
        for listener in self.consumer.on_revoked:
            listener(parts)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.consumer.unseeded += list(assigned)  # no blocking calls here: poll() asks after


def _unpark_resumed(consumer: KafkaConsumer) -> None:
    """Work around a kafka-python 3.0.12 bug that stopped a resumed partition for good.

    When a partition is paused while part of its fetched batch is still in line, the client
    parks the rest (KAFKA-7548) and gives it back on resume, but only while its in-line slot
    is `None`; the slot keeps a drained batch (falsy, not `None`) once any other partition's
    records were read, so the parked batch never comes back and the partition is never fetched
    again (`Fetcher._fetchable_partitions` skips parked partitions). Synthesis stalled on
    `docs` that way after backpressure's first pause while `scored` flowed (the soaks of issue
    22). A drained batch holds nothing: emptying the slot loses no record.
    `tests/test_backpressure.py::test_a_source_paused_mid_batch_flows_again_while_another_topic_was_read_meanwhile`
    fails without this."""
    fetcher = consumer._fetcher  # noqa: SLF001 - the client's own state; pinned kafka-python==3.0.12
    in_line = fetcher._next_partition_records  # noqa: SLF001
    if in_line is not None and not in_line and fetcher._paused_partition_records:  # noqa: SLF001
        fetcher._next_partition_records = None  # noqa: SLF001


class Consumer:
    """A consumer of some topics: in a group (subscribe), or of every partition (assign).

    With `assign_all`, the group id (if any) is used only to commit offsets; a reader with
    no group id (e.g. of `policy`) commits nothing and reads from the beginning.
    `poll` raises `LogLost` when a partition goes below what this consumer read or committed.
    """

    def __init__(
        self,
        config: StreamsConfig,
        *,
        group_id: str | None,
        topics: Sequence[str],
        client_id: str,
        assign_all: bool = False,
        max_poll_records: int = 100,
    ) -> None:
        self._consumer = KafkaConsumer(
            **config.client_options(),
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=config.max_poll_interval_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            max_poll_records=max_poll_records,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        self.topics = tuple(topics)
        self.group_id = group_id
        self.floor = OffsetFloor()
        self.on_revoked: list[Callable[[list[Partition]], None]] = []
        """Told of the partitions a rebalance takes away (before their new holder reads them)."""
        self.unseeded: list[TopicPartition] = []
        """Partitions assigned whose committed offset is not yet part of the floor."""
        self.known_committed: Callable[[list[Partition]], dict[Partition, int]] | None = None
        """Committed offsets known outside the broker (the group's journal): part of the floor
        too, so a broker that lost its log and its commits is still caught."""
        if assign_all:
            parts = [TopicPartition(t, p) for t in topics for p in sorted(self._consumer.partitions_for_topic(t) or ())]
            if not parts:
                raise TopicMissing(f"no partitions found for {list(topics)}; were topics created?")
            self._consumer.assign(parts)
            if group_id is not None:
                self.floor_from_committed(parts)
        else:
            self._consumer.subscribe(list(topics), listener=_ReleaseOnRebalance(self))

    def floor_from_committed(self, parts: Iterable[TopicPartition]) -> None:
        """The group's committed offsets as the floor (the broker's, and those known outside
        it): a restarted actor whose broker lost its log meanwhile is rewound below them by the
        client, and stops instead."""
        parts = list(parts)
        self.floor.committed(self._committed(parts))
        if self.known_committed is not None:
            self.floor.committed(self.known_committed([(tp.topic, tp.partition) for tp in parts]))

    def _committed(self, parts: Iterable[TopicPartition]) -> dict[Partition, int]:
        """The group's committed offset of each of `parts` that has one."""
        found = {(tp.topic, tp.partition): self._consumer.committed(tp) for tp in parts}
        return {part: offset for part, offset in found.items() if offset is not None}

    def poll(self, timeout_ms: int = 200, max_records: int | None = None) -> list[Message]:
        _unpark_resumed(self._consumer)
        batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        messages = [
            Message(tp.topic, tp.partition, m.offset, m.key, m.value, list(m.headers or []))
            for tp, records in batches.items()
            for m in records
        ]
        if self.unseeded:
            parts, self.unseeded = self.unseeded, []
            self.floor_from_committed(parts)
        try:
            for message in messages:
                self.floor.check((message.topic, message.partition), message.offset)
            for tp, position in self._positions().items():
                self.floor.check_position((tp.topic, tp.partition), position)
                end = self._consumer.highwater(tp)  # from the last fetch; None before one
                if end is not None and position > end:  # a broker that lost its log serves from
                    raise LogLost(  # 0 again, and a client parked past its end waits forever
                        f"{tp.topic}/{tp.partition}: position {position} is past the log's end {end}; {LOSS_FIX}"
                    )
        except LogLost as exc:
            log.error("LOG LOST: %s", exc)
            raise
        return messages

    def _positions(self) -> dict[TopicPartition, int]:
        """The known positions of the assigned partitions, without waiting for unknown ones."""
        out = {}
        for tp in self._consumer.assignment():
            with contextlib.suppress(IllegalStateError):  # unassigned by a rebalance meanwhile
                position = self._consumer.position(tp, timeout_ms=0)
                if position is not None:
                    out[tp] = position
        return out

    def commit(self, next_offsets: dict[Partition, int]) -> dict[Partition, int]:
        """Commit, per partition, the offset of the next record to read; returns what was
        committed. A partition this consumer no longer holds (revoked by a rebalance while its
        records were handled, during `hold`) is left out: its new owner has read on from the
        group's committed offset, which this commit must not move (those records may be handled
        twice: at least once). Likewise when the group refuses the commit because it dropped
        this consumer meanwhile (work that outlasted `max_poll_interval_ms`): nothing is
        committed, the consumer rejoins on its next poll and reads from the group's offsets."""
        owned = self._consumer.assignment()
        lost = [part for part in next_offsets if TopicPartition(*part) not in owned]
        if lost:
            log.warning("not committing %s: revoked while their records were handled", lost)
            next_offsets = {part: o for part, o in next_offsets.items() if part not in lost}
        if not next_offsets:
            return {}
        try:
            self._consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in next_offsets.items()}
            )
        except CommitFailedError as exc:
            log.warning("not committing %s: the group dropped this consumer meanwhile (%s)", sorted(next_offsets), exc)
            return {}
        self.floor.committed(next_offsets)
        return next_offsets

    def committed_offsets(self, topic: str) -> dict[int, int]:
        """The group's committed offset of each partition of `topic` that has one."""
        parts = [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
        return {partition: offset for (_, partition), offset in self._committed(parts).items()}

    def seek(self, offsets: dict[Partition, int]) -> None:
        """Read each assigned partition from the given offset next (a checkpoint's offsets)."""
        for (topic, partition), offset in offsets.items():
            self._consumer.seek(TopicPartition(topic, partition), offset)
        self.floor.seeked(offsets)

    def lag(self) -> dict[Partition, int]:
        """Records behind the high watermark, per assigned partition (from the last fetch)."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                out[(tp.topic, tp.partition)] = max(0, high - self._consumer.position(tp))
        return out

    def waiting(self, lag: Mapping[Partition, int]) -> int:
        """Records `lag` (from `lag()`) shows waiting on the partitions this consumer fetches
        (assigned and not paused)."""
        paused = {(tp.topic, tp.partition) for tp in self._consumer.paused()}
        return sum(n for part, n in lag.items() if part not in paused)

    def assigned(self) -> list[Partition]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def pause(self, partitions: Iterable[Partition] | None = None) -> None:
        """Stop fetching `partitions` (every assigned one by default)."""
        if partitions is None:
            self._consumer.pause(*self._consumer.assignment())
        else:
            self._consumer.pause(*(TopicPartition(t, p) for t, p in partitions))

    def resume(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def resume_topic(self, topic: str) -> None:
        """Fetch `topic`'s paused partitions again (others stay paused)."""
        self._consumer.resume(*(tp for tp in self._consumer.paused() if tp.topic == topic))

    def hold(self, timeout_ms: int = 100) -> None:
        """Poll without taking records, keeping the group membership alive (a closed gate).
        A partition assigned by a rebalance during the poll is not paused yet: whatever it
        returns is sought back, so nothing is skipped, and it is paused too."""
        self.pause()
        returned: dict[Partition, int] = {}
        for message in self.poll(timeout_ms):
            part = (message.topic, message.partition)
            returned[part] = min(returned.get(part, message.offset), message.offset)
        if returned:
            for (topic, partition), offset in returned.items():
                self._consumer.seek(TopicPartition(topic, partition), offset)
            self.floor.seeked(returned)
            self.pause()

    def close(self) -> None:
        self._consumer.close(autocommit=False)
