"""The shared shape of the record-at-a-time actors (ingest, synthesis, rollout, reward).

Each consumes one topic in a consumer group through a `StreamProcessor` and implements
`handle(records) -> outputs`; this base owns the Kafka plumbing, the loop and the snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as WorkPending
from typing import Any, ClassVar, TypeVar

from schemas import record_id
from streams.backpressure import Backpressure
from streams.kafka import Consumer, Message, Producer, StreamsConfig
from streams.processor import Decoder, Output, StreamProcessor
from streams.topics import consumer_group

T = TypeVar("T")


class ProcessorActor:
    KIND: ClassVar[str]
    """Actor kind: the metric prefix (longtide_<KIND>_...) and consumer group suffix."""

    name: str
    processor: StreamProcessor
    kept_alive: int = 0
    """Pieces of work that outlasted `keep_alive`'s patience (the consumer held meanwhile)."""
    _worker: ThreadPoolExecutor | None = None
    backpressure: Backpressure | None = None
    """Set by an actor whose output's readers may fall behind: its input pauses meanwhile."""

    def _connect(
        self,
        *,
        name: str,
        streams: StreamsConfig,
        topic: str,
        decoder: Decoder,
        dedup_key: Callable[[Any], str] = record_id,
        batched: bool = False,
        extra_topics: Sequence[str] = (),
        position: Mapping[int, int] | None = None,
        on_dead_letter: Callable[[Message], None] | None = None,
        transient_retries: int | None = None,
    ) -> None:
        """`extra_topics`: further topics in the same group and loop (`decoder` sees each
        message's topic); `position`: the actor keeps its own position in `topic` (partition ->
        the next offset to read, 0 for a partition not named), which its durable state, not the
        group's commits, says: it reads every partition (one instance, no rebalancing) from
        there; `on_dead_letter`: told of each message dead-lettered (such an actor records it
        as passed); `transient_retries`: instead of `streams.transient_retries` (0 for a
        `handle` that must not run twice on the same records)."""
        self.name = name
        consumer = Consumer(
            streams,
            group_id=consumer_group(self.KIND),
            topics=[topic, *extra_topics],
            client_id=name,
            assign_all=position is not None,
        )
        self.processor = StreamProcessor(
            actor=name,
            kind=self.KIND,
            consumer=consumer,
            producer=Producer(streams, client_id=name),
            decoder=decoder,
            handle=self.handle,
            dedup_window=streams.dedup_window,
            dedup_key=dedup_key,
            batched=batched,
            journal_dir=streams.journal_dir or None,
            poison_deaths=streams.poison_deaths,
            transient_retries=streams.transient_retries if transient_retries is None else transient_retries,
            max_message_bytes=streams.max_message_bytes,
            on_dead_letter=on_dead_letter,
        )
        if position is not None:  # after the processor: the actor's own position is the floor, not the journal's
            consumer.seek({(t, p): position.get(p, 0) for t, p in consumer.assigned() if t == topic})

    def handle(self, records: list[Any]) -> Sequence[Output]:
        raise NotImplementedError

    def keep_alive(self, work: Callable[[], T], patience_s: float = 1.0) -> T:
        """`work()`, run in a worker thread while this one keeps the consumer's group membership
        alive: work inside `handle` that could outlast `streams.max_poll_interval_ms` (a 10 MB
        document's extraction, a slow LLM endpoint) would otherwise get the actor dropped from
        its group and its commit refused. After `patience_s` the consumer polls with every
        partition paused (nothing is taken), then resumes."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-work")
        future = self._worker.submit(work)
        try:
            return future.result(timeout=patience_s)
        except WorkPending:
            if future.done():  # the work itself raised a TimeoutError (the same class on 3.11)
                raise
            self.kept_alive += 1
        try:
            while True:
                self.processor.consumer.hold(timeout_ms=100)
                try:
                    return future.result(timeout=0.2)
                except WorkPending:
                    if future.done():
                        raise
                    continue
        finally:
            self.processor.consumer.resume()

    def _pace(self, streams: StreamsConfig, *, source: str, downstream: str, reader_kind: str, bound: int) -> None:
        """Pause `source` while the `reader_kind` actors lag more than `bound` records on
        `downstream` (0: never)."""
        if bound:
            self.backpressure = Backpressure(
                streams,
                actor=self.name,
                kind=self.KIND,
                source=source,
                downstream=downstream,
                groups=(consumer_group(reader_kind),),
                bound=bound,
            )

    def step(self, **options: Any) -> int:
        """One round of the processor, after pausing or resuming the input for backpressure."""
        if self.backpressure is not None:
            self.backpressure.apply(self.processor.consumer)
        return self.processor.step(**options)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()

    def snapshot(self) -> dict[str, Any]:
        paced = (
            {"paused": self.backpressure.paused, "downstream_lag": self.backpressure.lag} if self.backpressure else {}
        )
        return {"actor": self.name, **self.processor.snapshot(), "kept_alive": self.kept_alive, **paced}

    def close(self) -> None:
        if self.backpressure is not None:
            self.backpressure.close()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        self.processor.consumer.close()
        self.processor.producer.close()
        self.processor.close()
