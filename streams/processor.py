"""The consume -> process -> produce -> ack -> commit loop shared by the record-at-a-time actors.

At-least-once on the wire, exactly-once in effect: offsets are committed only after every
record produced from the polled batch is acknowledged, and records whose id was already
seen are dropped. A record that fails to decode, validate or process becomes a `DeadLetter`
with its original bytes and the reason, and the loop keeps going.

A `FatalError` (or a Kafka error) is not the record's fault: it propagates and nothing is
committed. With `batched=True` the records of every message of a poll go to one `handle` call (the
rollout actor generates for many prompts at once); if that call raises, each message is
handled alone, so only the message that breaks processing is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError

from schemas import DeadLetter, decode, record_id
from streams.kafka import Consumer, Message, Producer
from streams.metrics import stream_metrics
from streams.topics import DLQ

log = logging.getLogger(__name__)


class FatalError(Exception):
    """The actor is broken, not the record (a dead engine, a lost device): the processor
    re-raises it instead of dead-lettering, nothing from the poll is committed, and the actor's
    loop ends so its host reports the failure (records are read again on restart)."""


Decoder = Callable[[Message], list[Any]]


@dataclass(frozen=True)
class Output:
    """Records of one type sent as one message (one Arrow record batch)."""

    topic: str
    records: Sequence[Any]
    key: bytes | None = None


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


def dead_letter(message: Message, *, actor: str, error: str) -> DeadLetter:
    return DeadLetter(
        dead_letter_id=f"{message.topic}/{message.partition}/{message.offset}",
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        actor=actor,
        error=error[:2000],
        original_key=message.key or b"",
        original_value=message.value or b"",
        original_headers=tuple((k, v or b"") for k, v in message.headers),
    )


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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
    ) -> None:
        self.actor = actor
        self.consumer = consumer
        self.producer = producer
        self.decoder = decoder
        self.handle = handle
        self.dedup_key = dedup_key
        self.batched = batched
        self.dedup = DedupWindow(dedup_window)
        self.metrics = stream_metrics(kind)
        for topic in consumer.topics:  # every series exists from the start, at 0
            self.metrics.dead_letters.labels(actor, topic)
            self.metrics.duplicates.labels(actor, topic)
        self.committed: dict[tuple[str, int], int] = {}
        self.acked: dict[tuple[str, int], int] = {}
        """Per output partition, one past the highest offset the broker acknowledged to us."""
        self.counts = {"consumed": 0, "produced": 0, "dead_letters": 0, "duplicates": 0}

    def step(self, timeout_ms: int = 200, max_records: int | None = None) -> int:
        """Poll once (at most `max_records`) and process what came; return how many messages."""
        messages = self.consumer.poll(timeout_ms, max_records)
        self.metrics.polled(self.actor, messages, self.consumer.lag())
        if not messages:
            return 0
        start = time.perf_counter()
        futures: list[Future] = []
        next_offsets: dict[tuple[str, int], int] = {}
        pending: list[tuple[Message, list[Any]]] = []
        polled: set[str] = set()  # ids earlier in this poll count as seen
        for message in messages:
            next_offsets[(message.topic, message.partition)] = message.offset + 1
            fresh = self._decode_fresh(message, futures, polled)
            if fresh:
                pending.append((message, fresh))
        futures.extend(self._handle_all(pending))
        self.producer.flush()
        for future in futures:
            meta = future.get(timeout=30)  # raises if the broker refused it: no commit then
            part = (meta.topic, meta.partition)
            self.acked[part] = max(self.acked.get(part, 0), meta.offset + 1)
        self.consumer.commit(next_offsets)
        self.committed.update(next_offsets)
        self.counts["consumed"] += len(messages)
        elapsed = time.perf_counter() - start
        self.metrics.process_seconds.labels(self.actor).observe(elapsed)
        per_record = self.metrics.record_seconds.labels(self.actor)
        for _ in messages:
            per_record.observe(elapsed / len(messages))
        return len(messages)

    def _decode_fresh(self, message: Message, futures: list[Future], polled: set[str]) -> list[Any]:
        """The message's records not seen before; a dead letter (into `futures`) if undecodable."""
        try:
            records = self.decoder(message)
        except (KafkaError, FatalError):
            raise
        except Exception as exc:  # noqa: BLE001 - any bad input becomes a dead letter
            futures.append(self._dead_letter(message, f"decode: {describe(exc)}"))
            return []
        fresh = []
        for record in records:
            key = self.dedup_key(record)
            if key and (key in polled or self.dedup.seen(key)):
                self.counts["duplicates"] += 1
                self.metrics.duplicates.labels(self.actor, message.topic).inc()
            else:
                polled.add(key)
                fresh.append(record)
        return fresh

    def _handle_all(self, pending: list[tuple[Message, list[Any]]]) -> list[Future]:
        if self.batched and len(pending) > 1:
            records = [r for _, rs in pending for r in rs]
            try:
                outputs = self.handle(records)
            except (KafkaError, FatalError):
                raise
            except Exception as exc:  # noqa: BLE001 - find the culprit message by message
                log.warning("%s: batch of %d failed (%s); handling message by message", self.actor, len(pending), exc)
            else:
                self._remember(records)
                return [self._send(o) for o in outputs]
        return [f for message, records in pending for f in self._handle_one(message, records)]

    def _handle_one(self, message: Message, fresh: list[Any]) -> list[Future]:
        try:
            outputs = self.handle(fresh)
        except (KafkaError, FatalError):
            raise
        except Exception as exc:  # noqa: BLE001 - a record that breaks processing
            log.warning(
                "%s: dead-lettering %s/%d@%d: %s",
                self.actor,
                message.topic,
                message.partition,
                message.offset,
                describe(exc),
            )
            return [self._dead_letter(message, f"process: {describe(exc)}")]
        self._remember(fresh)
        return [self._send(o) for o in outputs]

    def _remember(self, records: list[Any]) -> None:
        for record in records:
            key = self.dedup_key(record)
            if key:
                self.dedup.add(key)

    def _send(self, output: Output) -> Future:
        self.counts["produced"] += len(output.records)
        self.metrics.produced.labels(self.actor, output.topic).inc(len(output.records))
        return self.producer.send_records(output.topic, output.records, key=output.key)

    def _dead_letter(self, message: Message, error: str) -> Future:
        self.counts["dead_letters"] += 1
        self.metrics.dead_letters.labels(self.actor, message.topic).inc()
        record = dead_letter(message, actor=self.actor, error=error)
        return self.producer.send_records(DLQ.name, [record], key=message.key)

    def snapshot(self) -> dict[str, Any]:
        """What this processor has consumed, produced and dropped (for `longtide status`)."""
        return {
            **self.counts,
            "committed": {f"{t}/{p}": o for (t, p), o in sorted(self.committed.items())},
        }
