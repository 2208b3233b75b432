"""Kafka client wrappers (kafka-python): the one small interface the actors use.

Producers wait for `acks=all`; consumers never auto-commit: `StreamProcessor` commits an
offset only after what it produced from the record is acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from schemas import encode, headers_for
from streams.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)

Partition = tuple[str, int]


@dataclass(frozen=True)
class StreamsConfig:
    """How to reach Kafka and where large payloads go."""

    bootstrap_servers: str = ""
    """host:port[,host:port]; empty starts the embedded broker (Tansu) on a free port."""
    embedded_storage: str = "memory://tansu/"
    """Storage URL of the embedded broker (memory:// or s3://)."""
    max_poll_interval_ms: int = 10_000
    """Consumer-group rebalance timeout; the embedded broker stalls group joins unless this
    is a few seconds (ARCHITECTURE.md)."""
    session_timeout_ms: int = 10_000
    """Consumer-group session timeout."""
    heartbeat_interval_ms: int = 1_000
    """Heartbeat period of group consumers."""
    compression: str = ""
    """Producer compression: '', 'gzip', 'lz4', 'zstd' or 'snappy'."""
    blob_uri: str = ""
    """Blob store location (a local directory or s3://bucket/prefix); empty uses the run
    directory's blobs/ folder."""
    inline_limit_bytes: int = 64 * 1024
    """Text or token payloads above this size go to the blob store (claim check)."""
    dedup_window: int = 200_000
    """How many recent record ids each consumer remembers to drop duplicates."""

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a third "
                f"of session_timeout_ms ({self.session_timeout_ms})"
            )
        if self.compression not in ("", "gzip", "lz4", "zstd", "snappy"):
            raise ValueError(f"compression ({self.compression!r}) must be one of '', gzip, lz4, zstd, snappy")
        if self.inline_limit_bytes < 1024:
            raise ValueError(f"inline_limit_bytes ({self.inline_limit_bytes}) must be >= 1024")


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class Producer:
    """Sends bytes or records; every send returns a future resolved on broker ack."""

    def __init__(self, config: StreamsConfig, *, client_id: str) -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=client_id,
            acks="all",
            linger_ms=5,
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


class Consumer:
    """A consumer of some topics: in a group (subscribe), or of every partition (assign).

    With `assign_all`, the group id (if any) is used only to commit offsets; a reader with
    no group id (e.g. of `policy`) commits nothing and reads from the beginning.
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
            bootstrap_servers=config.bootstrap_servers,
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
        if assign_all:
            parts = [TopicPartition(t, p) for t in topics for p in sorted(self._consumer.partitions_for_topic(t) or ())]
            if not parts:
                raise RuntimeError(f"no partitions found for {list(topics)}; were topics created?")
            self._consumer.assign(parts)
        else:
            self._consumer.subscribe(list(topics))

    def poll(self, timeout_ms: int = 200, max_records: int | None = None) -> list[Message]:
        batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Message(tp.topic, tp.partition, m.offset, m.key, m.value, list(m.headers or []))
            for tp, records in batches.items()
            for m in records
        ]

    def commit(self, next_offsets: dict[Partition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""
        if next_offsets:
            self._consumer.commit(
                {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in next_offsets.items()}
            )

    def seek(self, offsets: dict[Partition, int]) -> None:
        """Read each assigned partition from the given offset next (a checkpoint's offsets)."""
        for (topic, partition), offset in offsets.items():
            self._consumer.seek(TopicPartition(topic, partition), offset)

    def lag(self) -> dict[Partition, int]:
        """Records behind the high watermark, per assigned partition (from the last fetch)."""
        out = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                out[(tp.topic, tp.partition)] = max(0, high - self._consumer.position(tp))
        return out

    def pause(self) -> None:
        self._consumer.pause(*self._consumer.assignment())

    def resume(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def ensure_topics(config: StreamsConfig, topics: Iterable[Topic] = ALL_TOPICS) -> None:
    """Create the topics that do not exist yet (replication factor 1 on one broker)."""
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers, client_id="longtide-admin")
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t.name, t.partitions, 1) for t in topics if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


class OffsetReader:
    """Reads high watermarks without joining a group; keep one open to ask repeatedly."""

    def __init__(self, config: StreamsConfig, *, client_id: str = "longtide-offsets") -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers, client_id=client_id, enable_auto_commit=False
        )
        self._parts: dict[str, list[TopicPartition]] = {}

    def end_offsets(self, topic: str) -> dict[int, int]:
        if topic not in self._parts:
            found = sorted(self._consumer.partitions_for_topic(topic) or ())
            if not found:
                return {}
            self._parts[topic] = [TopicPartition(topic, p) for p in found]
        offsets = self._consumer.end_offsets(self._parts[topic])
        return {tp.partition: off for tp, off in offsets.items()}

    def close(self) -> None:
        self._consumer.close()


def read_all(config: StreamsConfig, topic: str, *, idle_ms: int = 1000) -> list[Message]:
    """Every message of `topic` from the beginning, until a poll brings nothing for `idle_ms`.

    Counting by reading, not by end offsets: the embedded broker's end offsets undercount
    multi-message batches.
    """
    reader = Consumer(config, group_id=None, topics=[topic], client_id="longtide-reader", assign_all=True)
    out: list[Message] = []
    try:
        while batch := reader.poll(idle_ms):
            out.extend(batch)
    finally:
        reader.close()
    return out


def exact_end_offsets(config: StreamsConfig, topic: str, *, timeout_ms: int = 5000) -> dict[int, int]:
    """Per partition, 1 + the offset of the last record, read from the record itself.

    The embedded broker (Tansu) reports a batch's base offset + 1 as the end offset, which
    undercounts when the last batch holds several records; reading that batch is exact on
    every broker."""
    reader = OffsetReader(config, client_id="longtide-exact-ends")
    try:
        ends = reader.end_offsets(topic)
    finally:
        reader.close()
    consumer = KafkaConsumer(bootstrap_servers=config.bootstrap_servers, enable_auto_commit=False)
    try:
        out = {}
        for partition, end in ends.items():
            out[partition] = end
            if end == 0:
                continue
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, end - 1)
            deadline = time.monotonic() + timeout_ms / 1000
            while time.monotonic() < deadline:
                records = consumer.poll(timeout_ms=200).get(tp, [])
                if records:
                    out[partition] = max(end, max(r.offset for r in records) + 1)
                    break
        return out
    finally:
        consumer.close()


def group_offsets(config: StreamsConfig, group_id: str) -> dict[Partition, int]:
    """Committed offsets of a consumer group."""
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers, client_id="longtide-admin")
    try:
        offsets = admin.list_group_offsets(group_id).get(group_id, {})
        return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}
    finally:
        admin.close()
