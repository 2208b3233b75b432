"""Metrics every stream processor exports, named longtide_<actor>_<what>_<unit>.

Labels are bounded: actor (the instance name, e.g. rollout-0), topic, partition.
Collectors live in the process-wide prometheus_client registry, one set per actor kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class StreamMetrics:
    consumed: Counter
    produced: Counter
    lag: Gauge
    dead_letters: Counter
    duplicates: Counter
    retries: Counter
    process_seconds: Histogram
    record_seconds: Histogram

    def polled(self, actor: str, messages: Iterable[Any], lag: dict[tuple[str, int], int]) -> None:
        """One poll's records read (per topic and partition) and the consumer's lag after it."""
        for message in messages:
            self.consumed.labels(actor, message.topic, str(message.partition)).inc()
        for (topic, partition), behind in lag.items():
            self.lag.labels(actor, topic, str(partition)).set(behind)


@cache
def stream_metrics(kind: str) -> StreamMetrics:
    """The stream metrics of actor kind `kind` (created once per process)."""
    p = f"longtide_{kind}"
    return StreamMetrics(
        consumed=Counter(f"{p}_records_consumed", "Records read from Kafka.", ["actor", "topic", "partition"]),
        produced=Counter(f"{p}_records_produced", "Records produced and acknowledged.", ["actor", "topic"]),
        lag=Gauge(
            f"{p}_consumer_lag_records",
            "Records behind the partition's high watermark.",
            ["actor", "topic", "partition"],
        ),
        dead_letters=Counter(f"{p}_dead_letters", "Records sent to the dead-letter topic.", ["actor", "topic"]),
        duplicates=Counter(f"{p}_duplicates_dropped", "Records dropped as already seen (same id).", ["actor", "topic"]),
        retries=Counter(
            f"{p}_transient_retries",
            "Handler calls tried again after a transient error (a timeout, S3, out of memory).",
            ["actor", "topic"],
        ),
        process_seconds=Histogram(f"{p}_process_seconds", "Time to process one polled batch.", ["actor"]),
        record_seconds=Histogram(
            f"{p}_record_seconds",
            "Processing time per record: its polled batch's time (decode, handle, acknowledged output, "
            "commit) divided by the batch's records, observed once per record.",
            ["actor"],
            buckets=(0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
        ),
    )


@cache
def _phase_seconds(kind: str) -> Counter:
    return Counter(
        f"longtide_{kind}_phase_seconds",
        "Wall time of the actor's loop by phase (poll: reading input, waiting for it included; "
        "decode, handle, encode, produce, commit; and the actor's own: generate, sync, gate, train, ...).",
        ["actor", "phase"],
    )


class Phases:
    """Where an actor's loop spends its time: `longtide_<kind>_phase_seconds_total{actor,phase}`
    (bench/step_profile.py reads them). A phase may run inside another (`generate` inside
    `handle`): the reader subtracts it.

        phases = Phases("rollout", "rollout-0")
        with phases("generate"):
            ...
    """

    def __init__(self, kind: str, actor: str) -> None:
        self._counter = _phase_seconds(kind)
        self.actor = actor

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._counter.labels(self.actor, phase).inc(time.perf_counter() - start)
