"""Topics and their logs seen from outside a consumer group: creating the topics, one-shot
reads (a whole topic, offset ranges), end and committed offsets, and the check that a broker
still holds every record known to have existed (`check_log_intact`, which raises `LogLost`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas import DeadLetter, PolicyVersion, SchemaError, decode
from streams.kafka import LOSS_FIX, Consumer, LogLost, Message, Partition, StreamsConfig, TopicMissing
from streams.topics import ALL_TOPICS, DLQ, Topic, partition_counts, retention_settings

log = logging.getLogger(__name__)


def ensure_topics(config: StreamsConfig, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet, with `streams.partitions` (else the registry's
    count), `streams.replication` and `streams.retention_ms`. Returns, and logs as warnings, one line per existing
    topic whose partition count differs from the config: Kafka cannot lower a count, and
    raising one moves keys to other partitions, so that is for a person to decide."""
    counts = partition_counts(config.partitions)
    wanted = {t.name: counts.get(t.name, t.partitions) for t in topics}
    settings = retention_settings(config.retention_ms)
    admin = KafkaAdminClient(**config.client_options(), client_id="longtide-admin")
    try:
        names = set(admin.list_topics())
        present = [n for n in wanted if n in names]
        existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(present)} if present else {}
        missing = [
            NewTopic(n, c, config.replication, topic_configs=settings.get(n, {}))
            for n, c in wanted.items()
            if n not in names
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()
    problems = partition_mismatches(wanted, existing)
    for problem in problems:
        log.warning("%s", problem)
    return problems


def partition_mismatches(wanted: Mapping[str, int], existing: Mapping[str, int]) -> list[str]:
    """One line per topic in both whose partition count differs, naming both counts and the fix."""
    return [
        f"topic {name!r} has {existing[name]} partitions, the config says {count} (streams.partitions): "
        f"set streams.partitions.{name}={existing[name]} to match it, or delete the topic to re-create it"
        for name, count in wanted.items()
        if name in existing and existing[name] != count
    ]


class OffsetReader:
    """Reads high watermarks and groups' committed offsets without joining a group; keep one open
    to ask repeatedly (one connection each, not one per question)."""

    def __init__(self, config: StreamsConfig, *, client_id: str = "longtide-offsets") -> None:
        self._config, self._client_id = config, client_id
        self._consumer = KafkaConsumer(**config.client_options(), client_id=client_id, enable_auto_commit=False)
        self._admin: KafkaAdminClient | None = None
        self._parts: dict[str, list[TopicPartition]] = {}

    def end_offsets(self, topic: str) -> dict[int, int]:
        if topic not in self._parts:
            found = sorted(self._consumer.partitions_for_topic(topic) or ())
            if not found:
                return {}
            self._parts[topic] = [TopicPartition(topic, p) for p in found]
        offsets = self._consumer.end_offsets(self._parts[topic])
        return {tp.partition: off for tp, off in offsets.items()}

    def committed(self, group_id: str) -> dict[Partition, int]:
        """`group_offsets` on this reader's own admin connection."""
        if self._admin is None:
            self._admin = KafkaAdminClient(**self._config.client_options(), client_id=self._client_id)
        return _committed(self._admin, group_id)

    def close(self) -> None:
        self._consumer.close()
        if self._admin is not None:
            self._admin.close()


def read_all(config: StreamsConfig, topic: str, *, idle_ms: int = 1000) -> list[Message]:
    """Every message of `topic` from the beginning, until a poll brings nothing for `idle_ms`.

    Counting by reading, not by end offsets: the embedded broker's end offsets undercount
    multi-message batches. A topic that does not exist holds nothing.
    """
    return read_each(config, [topic], idle_ms=idle_ms)[topic]


def read_each(config: StreamsConfig, topics: Sequence[str], *, idle_ms: int = 1000) -> dict[str, list[Message]]:
    """`read_all` of several topics at once (one reader, one idle wait), by topic."""
    out: dict[str, list[Message]] = {topic: [] for topic in topics}
    try:
        reader = Consumer(config, group_id=None, topics=topics, client_id="longtide-reader", assign_all=True)
    except TopicMissing:
        return out
    try:
        while batch := reader.poll(idle_ms):
            for message in batch:
                out[message.topic].append(message)
    finally:
        reader.close()
    return out


def read_ranges(
    config: StreamsConfig, topic: str, ranges: Mapping[int, tuple[int, int]], *, idle_s: float = 30.0
) -> Iterator[Message]:
    """The messages of `topic` at offsets [start, end) of each partition in `ranges`, in order
    per partition. Raises `LogLost` when the log holds less than asked (nothing comes for
    `idle_s` seconds while some partition is short of its end)."""
    reader = Consumer(config, group_id=None, topics=[topic], client_id="longtide-range-reader", assign_all=True)
    try:
        short = {p: end for p, (start, end) in ranges.items() if start < end}
        reader.seek({(topic, p): ranges[p][0] for p in short})
        reader.pause([(t, p) for t, p in reader.assigned() if p not in short])
        idle_since = time.monotonic()
        while short:
            batch = reader.poll(1000)
            if not batch and time.monotonic() - idle_since > idle_s:
                raise LogLost(f"{topic}: no records for {idle_s:.0f} s below the ends {short}; {LOSS_FIX}")
            for message in batch:
                end = short.get(message.partition)
                if end is not None and message.offset < end:
                    yield message
                if end is not None and message.offset + 1 >= end:
                    del short[message.partition]
                    reader.pause([(topic, message.partition)])
            if batch:
                idle_since = time.monotonic()  # after the caller's time on the batch: not idle time
    finally:
        reader.close()


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
    consumer = KafkaConsumer(**config.client_options(), enable_auto_commit=False)
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


def consumer_groups(config: StreamsConfig, prefix: str = "") -> list[str]:
    """The broker's consumer groups whose id starts with `prefix`, sorted."""
    admin = KafkaAdminClient(**config.client_options(), client_id="longtide-admin")
    try:
        return sorted(g["group_id"] for g in admin.list_groups() if g["group_id"].startswith(prefix))
    finally:
        admin.close()


def group_offsets(config: StreamsConfig, group_id: str) -> dict[Partition, int]:
    """Committed offsets of a consumer group."""
    admin = KafkaAdminClient(**config.client_options(), client_id="longtide-admin")
    try:
        return _committed(admin, group_id)
    finally:
        admin.close()


def _committed(admin: KafkaAdminClient, group_id: str) -> dict[Partition, int]:
    offsets = admin.list_group_offsets(group_id).get(group_id, {})
    return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}


def lost_offsets(expected: Mapping[Partition, int], ends: Mapping[str, Mapping[int, int]]) -> list[str]:
    """One line per partition whose end (`ends`: topic -> partition -> exact end offset) is
    below an offset known to have existed; a missing topic or partition has end 0."""
    return [
        f"{topic}/{partition} ends at {ends.get(topic, {}).get(partition, 0)}, below offset {offset} known to exist"
        for (topic, partition), offset in sorted(expected.items())
        if ends.get(topic, {}).get(partition, 0) < offset
    ]


def check_log_intact(config: StreamsConfig, expected: Mapping[Partition, int], *, what: str = "expected") -> None:
    """Raise LogLost (logged as an error) if the broker holds fewer records than `expected`
    says existed: per partition, an offset known from outside the broker (a run's base
    offsets, a checkpoint's offsets, offsets committed before a restart). `what` names them."""
    topics = sorted({topic for topic, _ in expected})
    lost = lost_offsets(expected, {topic: exact_end_offsets(config, topic) for topic in topics})
    if lost:
        message = f"{what} offsets are past the end of the log: {'; '.join(lost)}; {LOSS_FIX}"
        log.error("LOG LOST: %s", message)
        raise LogLost(message)


def newest_of_run(messages: Iterable[Message], run_id: str | None) -> tuple[PolicyVersion | None, Counter[str]]:
    """The highest-version `policy` record of run `run_id` (None: of any run) among `messages` (of
    its version, the one with the most groups consumed: the learner re-announces a version as it
    drops groups), and how many records were passed over, by reason: 'other_run', or
    'undecodable' (garbage, or an older build's record on a reused broker; logged with its
    offset). Every reader of `policy` goes through here, so no record on it can stop one."""
    newest: PolicyVersion | None = None
    skipped: Counter[str] = Counter()
    for message in messages:
        try:
            records = decode(message.value, PolicyVersion, message.headers)
        except SchemaError as exc:
            skipped["undecodable"] += 1
            log.warning("policy record at offset %d skipped: %s", message.offset, exc)
            continue
        for record in records:
            if run_id is not None and record.run_id != run_id:
                skipped["other_run"] += 1
            elif newest is None or (record.version, record.groups_consumed) > (newest.version, newest.groups_consumed):
                newest = record
    return newest, skipped


class LostRecords:
    """Records of `topic` that went to `dlq` (any consumer group's dead letter of one counts
    once), at or above `base` offsets: what was written to `topic` but will never come out the
    other end. Follows `dlq` from its start; `count()` reads what arrived since the last call."""

    def __init__(self, config: StreamsConfig, topic: str, *, base: Mapping[int, int], client_id: str) -> None:
        self.topic = topic
        self.base = dict(base)
        self._reader = Consumer(config, group_id=None, topics=[DLQ.name], client_id=client_id, assign_all=True)
        self._lost: set[tuple[int, int]] = set()

    def count(self) -> int:
        while batch := self._reader.poll(0):  # everything that has arrived since the last call
            for message in batch:
                self._take(message)
        return len(self._lost)

    def _take(self, message: Message) -> None:
        try:
            letters = decode(message.value, DeadLetter, message.headers)
        except SchemaError:
            return  # anyone may write to dlq
        for letter in letters:
            if letter.source_topic == self.topic and letter.source_offset >= self.base.get(letter.source_partition, 0):
                self._lost.add((letter.source_partition, letter.source_offset))

    def close(self) -> None:
        self._reader.close()
