"""The consume -> process -> produce -> ack -> commit loop shared by the record-at-a-time actors.

At-least-once on the wire, exactly-once in effect: offsets are committed only after every
record produced from the polled batch is acknowledged, and records whose id was already
seen are dropped.

No record can stop the loop. Whatever a message holds, it is handled or it becomes a
`DeadLetter` with its original bytes and a reason in the record's terms (the field, what it
expects, what came), and the loop commits past it: a message that fails to decode, whose id
cannot be taken, whose handling raises, or whose output cannot be encoded or is larger than
`streams.max_message_bytes`. A record whose handling kills the actor's process (an engine that
crashes on it, an out-of-memory kill) is caught by the `Journal`: the restarted actor
dead-letters a record that was alone in flight at `streams.poison_deaths` (1) deaths instead of
handling it again, and handles alone each record that was in flight with others at a death.

A handler error that may pass (a timeout, an S3 or connection error, an engine out of memory:
streams/transient.py) is retried `streams.transient_retries` times with backoff
(`longtide_<kind>_transient_retries_total`); one that outlasts them ends the loop like a
`FatalError` (the record is read again after the restart), never a dead letter.

A `FatalError` is not the record's fault (a dead engine, a lost device), nor is a Kafka error:
they propagate, nothing from the poll is committed, and the actor's loop ends so its host
reports the failure (records are read again on restart). With `batched=True` the records of
every message of a poll go to one `handle` call (the rollout actor generates for many prompts
at once); if that call raises, each message is handled alone, so only the message that breaks
processing is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from schemas import DeadLetter, SchemaError, decode, encode, headers_for, record_id
from streams.journal import Journal
from streams.kafka import Consumer, LogLost, Message, Producer, StreamsConfig
from streams.metrics import Phases, stream_metrics
from streams.topics import DLQ
from streams.transient import StillFailing, retrying

log = logging.getLogger(__name__)


class FatalError(Exception):
    """The actor is broken, not the record (a dead engine, a lost device): the processor
    re-raises it instead of dead-lettering, nothing from the poll is committed, and the actor's
    loop ends so its host reports the failure (records are read again on restart)."""


Decoder = Callable[[Message], list[Any]]
PASS_THROUGH = (KafkaError, FatalError, LogLost, StillFailing)
"""Errors that are not the record's fault: they end the loop instead of dead-lettering."""


@dataclass(frozen=True)
class Output:
    """Records of one type sent as one message (one Arrow record batch)."""

    topic: str
    records: Sequence[Any]
    key: bytes | None = None


@dataclass(frozen=True)
class Encoded:
    """An `Output` as the bytes and headers it is sent with."""

    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]
    count: int


class DedupWindow:
    """The most recent `size` ids seen; older ids are forgotten (LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        if key in self._ids:
            self._ids.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        self._ids[key] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def ids(self) -> list[str]:
        """The remembered ids, oldest first."""
        return list(self._ids)


def arrow_decoder(record_type: type) -> Decoder:
    """Decode a message as Arrow IPC records of `record_type`, checking its headers."""
    return lambda message: decode(message.value, record_type, message.headers)


def starved(so_far: float, took: bool, waiting: int, polled_s: float) -> float:
    """Seconds of polls in a row that took nothing while records waited on partitions the
    consumer fetches, after one more poll of `polled_s`: a record taken, or nothing waiting
    (paused partitions do not count), starts it again from 0."""
    return 0.0 if took or not waiting else so_far + polled_s


def dead_letter(message: Message, *, actor: str, group: str, error: str) -> DeadLetter:
    """The dead letter of `message`, rejected by `actor` in consumer group `group`. The reason may
    quote the record (a field name), so what UTF-8 cannot carry in it is escaped."""
    return DeadLetter(
        dead_letter_id=f"{group}/{message.topic}/{message.partition}/{message.offset}",
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        actor=actor,
        consumer_group=group,
        error=error[:2000].encode("utf-8", "backslashreplace").decode("utf-8"),
        original_key=message.key or b"",
        original_value=message.value or b"",
        original_headers=tuple((k, v or b"") for k, v in message.headers),
    )


def describe(exc: BaseException, actor: str = "") -> str:
    """A reason a person can read: a `SchemaError` says what is wrong with the record in its
    own terms; anything else is the actor failing on the record, named with the exception."""
    if isinstance(exc, SchemaError):
        return str(exc)
    who = f"{actor} " if actor else ""
    return f"{who}could not handle this record ({type(exc).__name__}: {exc})"


def encode_output(output: Output, max_bytes: int) -> Encoded:
    """`output` as one message; SchemaError when it is larger than the broker takes."""
    value = encode(output.records)
    if len(value) > max_bytes:
        raise SchemaError(
            f"its output to {output.topic} is {len(value):,} bytes, over streams.max_message_bytes ({max_bytes:,})"
        )
    return Encoded(output.topic, value, output.key, headers_for(output.records[0]), len(output.records))


class StreamProcessor:
    """Runs `handle` on the records of every message (after dedup); see the module docstring."""

    def __init__(
        self,
        *,
        actor: str,
        kind: str,
        consumer: Consumer,
        producer: Producer,
        decoder: Decoder,
        handle: Callable[[list[Any]], Sequence[Output]],
        dedup_window: int,
        dedup_key: Callable[[Any], str] = record_id,
        batched: bool = False,
        journal_dir: str | Path | None = None,
        poison_deaths: int = StreamsConfig.poison_deaths,
        transient_retries: int = StreamsConfig.transient_retries,
        max_message_bytes: int = StreamsConfig.max_message_bytes,
        on_dead_letter: Callable[[Message], None] | None = None,
    ) -> None:
        """`journal_dir`: where the in-flight journal of the consumer's group lives (None: no
        journal, deaths are not counted); `poison_deaths`, `transient_retries`, `max_message_bytes`: as in
        `StreamsConfig`; `on_dead_letter`: told of each message dead-lettered, once its dead letter
        is acknowledged and before its offset is committed."""
        self.actor = actor
        self.consumer = consumer
        self.producer = producer
        self.decoder = decoder
        self.handle = handle
        self.dedup_key = dedup_key
        self.batched = batched
        self.group = consumer.group_id or f"{kind}-ungrouped"
        self.journal = Journal(journal_dir, self.group)
        self.poison_deaths = poison_deaths
        self.transient_retries = transient_retries
        self.max_message_bytes = max_message_bytes
        self.on_dead_letter = on_dead_letter
        self._rejected: list[Message] = []
        """What this step dead-lettered."""
        consumer.on_revoked.append(self.journal.forget)  # its next holder counts its deaths
        consumer.known_committed = self.journal.committed_offsets  # what the group committed, kept off the broker
        consumer.floor.committed(self.journal.committed_offsets(consumer.assigned()))  # assigned already (assign_all)
        self.dedup = DedupWindow(dedup_window)
        self.metrics = stream_metrics(kind)
        self.phases = Phases(kind, actor)
        for topic in consumer.topics:  # every series exists from the start, at 0
            self.metrics.dead_letters.labels(actor, topic)
            self.metrics.duplicates.labels(actor, topic)
        self.committed: dict[tuple[str, int], int] = {}
        self.acked: dict[tuple[str, int], int] = {}
        """Per output partition, one past the highest offset the broker acknowledged to us."""
        self.input_starved_s = 0.0
        """Seconds of polls in a row that took nothing while records waited (`starved`)."""
        self.input_waiting = 0
        self.counts = {"consumed": 0, "produced": 0, "dead_letters": 0, "duplicates": 0, "poison": 0, "retries": 0}

    def step(self, timeout_ms: int = 200, max_records: int | None = None) -> int:
        """Poll once (at most `max_records`) and process what came, in offset order per partition;
        return how many messages."""
        polled_at = time.monotonic()
        with self.phases("poll"):
            messages = self.consumer.poll(timeout_ms, max_records)
        lag = self.consumer.lag()
        self.metrics.polled(self.actor, messages, lag)
        self.input_waiting = self.consumer.waiting(lag)
        self.input_starved_s = starved(
            self.input_starved_s, bool(messages), self.input_waiting, time.monotonic() - polled_at
        )
        if not messages:
            return 0
        start = time.perf_counter()
        self._rejected = []
        futures: list[Future] = []
        next_offsets: dict[tuple[str, int], int] = {}
        polled: set[str] = set()  # ids earlier in this poll count as seen
        run: list[Message] = []  # consecutive messages handled together (one call, when batched)
        for message in messages:
            part = (message.topic, message.partition)
            next_offsets[part] = message.offset + 1
            deaths = self.journal.deaths(part, message.offset)
            if not deaths and not self.journal.suspect(part, message.offset):
                run.append(message)
                continue
            futures += self._process(run, polled)  # what came before it goes first
            run = []
            if deaths >= self.poison_deaths:
                futures.append(self._poison(message, deaths))
            else:  # in flight at an earlier death: decoded and handled alone
                futures += self._process([message], polled)
        futures += self._process(run, polled)
        with self.phases("produce"):
            self.producer.flush()
            for future in futures:
                meta = future.get(timeout=30)  # raises if the broker refused it: no commit then
                part = (meta.topic, meta.partition)
                self.acked[part] = max(self.acked.get(part, 0), meta.offset + 1)
        if self.on_dead_letter is not None:
            for message in self._rejected:  # on dlq now: the actor may record it as passed
                self.on_dead_letter(message)
        with self.phases("commit"):
            done = self.consumer.commit(next_offsets)
        self.journal.committed(done)
        self.committed.update(done)
        self.counts["consumed"] += len(messages)
        elapsed = time.perf_counter() - start
        self.metrics.process_seconds.labels(self.actor).observe(elapsed)
        per_record = self.metrics.record_seconds.labels(self.actor)
        for _ in messages:
            per_record.observe(elapsed / len(messages))
        return len(messages)

    def _process(self, messages: list[Message], polled: set[str]) -> list[Future]:
        """Decode `messages` (journaled: a death while decoding makes each of them a suspect) and
        handle what is fresh."""
        if not messages:
            return []
        futures: list[Future] = []
        pending: list[tuple[Message, list[Any]]] = []
        self._journaled(messages)
        for message in messages:
            fresh = self._decode_fresh(message, futures, polled)
            if fresh:
                pending.append((message, fresh))
        self.journal.end()
        return futures + self._handle_all(pending)

    def _decode_fresh(self, message: Message, futures: list[Future], polled: set[str]) -> list[Any]:
        """The message's records not seen before; a dead letter (into `futures`) if undecodable."""
        try:
            with self.phases("decode"):
                records = self.decoder(message)
                keys = [self.dedup_key(record) for record in records]
        except PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - any bad input becomes a dead letter
            futures.append(self._dead_letter(message, f"decode: {describe(exc, self.actor)}"))
            return []
        fresh = []
        for record, key in zip(records, keys, strict=True):
            if key and (key in polled or self.dedup.seen(key)):
                self.counts["duplicates"] += 1
                self.metrics.duplicates.labels(self.actor, message.topic).inc()
            else:
                polled.add(key)
                fresh.append(record)
        return fresh

    def _journaled(self, messages: list[Message]) -> None:
        self.journal.begin(((m.topic, m.partition), m.offset) for m in messages)

    def _handled(self, messages: list[Message], records: list[Any]) -> list[Encoded]:
        """`handle(records)` with its outputs encoded, the messages journaled as in flight meanwhile.
        Only the process's death leaves them in flight, to be counted by the next holder: an
        exception takes them out again (a `FatalError` or a Kafka error is the actor's, not the
        record's; anything else dead-letters the record with its reason)."""
        self._journaled(messages)

        def count(exc: BaseException) -> None:
            self.counts["retries"] += 1
            self.metrics.retries.labels(self.actor, messages[0].topic).inc()

        try:
            with self.phases("handle"):
                outputs = retrying(lambda: self.handle(records), attempts=self.transient_retries, on_retry=count)
            with self.phases("encode"):
                encoded = [encode_output(o, self.max_message_bytes) for o in outputs]
        finally:
            self.journal.end()
        self._remember(records)
        return encoded

    def _handle_all(self, pending: list[tuple[Message, list[Any]]]) -> list[Future]:
        if self.batched and len(pending) > 1:
            try:
                encoded = self._handled([m for m, _ in pending], [r for _, rs in pending for r in rs])
            except PASS_THROUGH:
                raise
            except Exception as exc:  # noqa: BLE001 - find the culprit message by message
                log.warning("%s: batch of %d failed (%s); handling message by message", self.actor, len(pending), exc)
            else:
                return [self._send(e) for e in encoded]
        return [f for message, records in pending for f in self._handle_one(message, records)]

    def _handle_one(self, message: Message, fresh: list[Any]) -> list[Future]:
        try:
            encoded = self._handled([message], fresh)
        except PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - a record that breaks processing
            reason = describe(exc, self.actor)
            log.warning(
                "%s: dead-lettering %s/%d@%d: %s", self.actor, message.topic, message.partition, message.offset, reason
            )
            return [self._dead_letter(message, f"process: {reason}")]
        return [self._send(e) for e in encoded]

    def _remember(self, records: list[Any]) -> None:
        for record in records:
            key = self.dedup_key(record)
            if key:
                self.dedup.add(key)

    def _send(self, encoded: Encoded) -> Future:
        self.counts["produced"] += encoded.count
        self.metrics.produced.labels(self.actor, encoded.topic).inc(encoded.count)
        with self.phases("produce"):
            return self.producer.send(encoded.topic, encoded.value, key=encoded.key, headers=encoded.headers)

    def _poison(self, message: Message, deaths: int) -> Future:
        self.counts["poison"] += 1
        log.error(
            "%s: %s/%d@%d was in flight at %d deaths: dead-lettered",
            self.actor,
            message.topic,
            message.partition,
            message.offset,
            deaths,
        )
        return self._dead_letter(
            message,
            f"poison: {self.actor}'s process died {deaths} time{'s' if deaths > 1 else ''} while handling this record "
            "alone (a segfault, an out-of-memory kill, an engine that took the process down); dead-lettered instead of "
            "handled again "
            f"(streams.poison_deaths={self.poison_deaths})",
        )

    def _dead_letter(self, message: Message, error: str) -> Future:
        self._rejected.append(message)
        self.counts["dead_letters"] += 1
        self.metrics.dead_letters.labels(self.actor, message.topic).inc()
        record = dead_letter(message, actor=self.actor, group=self.group, error=error)
        return self.producer.send_records(DLQ.name, [record], key=message.key)

    def snapshot(self) -> dict[str, Any]:
        """What this processor has consumed, produced and dropped (for `longtide status`), and
        how long its polls have taken nothing while records waited (the supervisor restarts an
        actor whose input stalls: `ops.supervisor.death_of`)."""
        return {
            **self.counts,
            "committed": {f"{t}/{p}": o for (t, p), o in sorted(self.committed.items())},
            "input_starved_s": round(self.input_starved_s, 1),
            "input_waiting": self.input_waiting,
        }

    def close(self) -> None:
        """A clean close: nothing is in flight any more (a stop, not a record, ended any handling)."""
        self.journal.close()
