"""The shared shape of the record-at-a-time actors (ingest, synthesis, rollout, reward).

Each consumes one topic in a consumer group through a `StreamProcessor` and implements
`handle(records) -> outputs`; this base owns the Kafka plumbing, the loop and the snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from schemas import record_id
from streams.kafka import Consumer, Producer, StreamsConfig
from streams.processor import Decoder, Output, StreamProcessor


class ProcessorActor:
    KIND: ClassVar[str]
    """Actor kind: the metric prefix (longtide_<KIND>_...) and consumer group suffix."""

    name: str
    processor: StreamProcessor

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
        assign_all: bool = False,
    ) -> None:
        """`extra_topics`: further topics in the same group and loop (`decoder` sees each
        message's topic); `assign_all`: read every partition (one instance; no rebalancing),
        so the actor can seek to offsets of its own."""
        self.name = name
        self.processor = StreamProcessor(
            actor=name,
            kind=self.KIND,
            consumer=Consumer(
                streams,
                group_id=f"longtide-{self.KIND}",
                topics=[topic, *extra_topics],
                client_id=name,
                assign_all=assign_all,
            ),
            producer=Producer(streams, client_id=name),
            decoder=decoder,
            handle=self.handle,
            dedup_window=streams.dedup_window,
            dedup_key=dedup_key,
            batched=batched,
        )

    def handle(self, records: list[Any]) -> Sequence[Output]:
        raise NotImplementedError

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.processor.step()

    def snapshot(self) -> dict[str, Any]:
        return {"actor": self.name, **self.processor.snapshot()}

    def close(self) -> None:
        self.processor.consumer.close()
        self.processor.producer.close()
