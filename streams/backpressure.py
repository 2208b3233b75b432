"""Backpressure: a producer of a topic pauses its own input while the topic's readers lag.

    pressure = Backpressure(streams, actor="synthesis-0", kind="synthesis", source="docs",
                            downstream="tasks", groups=("longtide-rollout",), bound=4096)
    while running:
        pressure.apply(consumer)      # pauses `source` above the bound, resumes at half of it
        processor.step()

The lag is what the downstream consumer groups have not committed yet: per partition of
`downstream`, its end offset minus the group's committed offset, summed over partitions, the
largest over the groups. Above `bound` the actor stops fetching its `source` partitions (its
other topics, e.g. synthesis's `scored`, go on, and the consumer stays in its group); at or
below `bound // 2` it fetches again. Documents and tasks wait in the log, which is where a
service that runs for weeks should keep them, instead of in topics that grow without end.

Counted in `longtide_<kind>_backpressure_pauses_total`, shown in
`longtide_<kind>_backpressure_paused` (1 while paused) and `longtide_<kind>_downstream_lag_records`.
On the embedded broker the end offsets can undercount the last produce batch
(README, "Known limits"), so the lag may read low by up to one batch.
"""

from __future__ import annotations

import logging
import time
from functools import cache

from prometheus_client import Counter, Gauge

from streams.kafka import Consumer, StreamsConfig
from streams.logs import OffsetReader

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0
"""How often the lag is asked for (end offsets and each group's committed offsets, on one open
consumer and one open admin connection): pausing reacts within this time."""


@cache
def _metrics(kind: str) -> tuple[Gauge, Counter, Gauge]:
    p = f"longtide_{kind}"
    return (
        Gauge(f"{p}_backpressure_paused", "1 while the actor's input is paused because its readers lag.", ["actor"]),
        Counter(f"{p}_backpressure_pauses", "Times the actor paused its input because its readers lagged.", ["actor"]),
        Gauge(
            f"{p}_downstream_lag_records",
            "Records of the actor's output topic its readers have not committed (the largest over groups).",
            ["actor"],
        ),
    )


def lag_of(ends: dict[int, int], committed: dict[int, int]) -> int:
    """Records behind: per partition, end minus committed (nothing committed: all of it)."""
    return sum(max(0, end - committed.get(partition, 0)) for partition, end in ends.items())


def should_pause(paused: bool, lag: int, bound: int) -> bool:
    """Pause above `bound`; once paused, stay paused until the lag is down to `bound // 2`."""
    return lag > bound // 2 if paused else lag > bound


class Backpressure:
    def __init__(
        self,
        streams: StreamsConfig,
        *,
        actor: str,
        kind: str,
        source: str,
        downstream: str,
        groups: tuple[str, ...],
        bound: int,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.streams = streams
        self.actor = actor
        self.source = source
        self.downstream = downstream
        self.groups = groups
        self.bound = bound
        self.check_every_s = check_every_s
        self.paused = False
        self.pauses = 0
        self.lag = 0
        self._checked = float("-inf")
        self._reader: OffsetReader | None = None
        self._paused_gauge, self._pauses_counter, self._lag_gauge = _metrics(kind)
        self._paused_gauge.labels(actor).set(0)
        self._pauses_counter.labels(actor)

    def downstream_lag(self) -> int:
        if self._reader is None:
            self._reader = OffsetReader(self.streams, client_id=f"{self.actor}-backpressure")
        ends = self._reader.end_offsets(self.downstream)
        lags = []
        for group in self.groups:
            committed = {p: o for (t, p), o in self._reader.committed(group).items() if t == self.downstream}
            lags.append(lag_of(ends, committed))
        return max(lags, default=0)

    def apply(self, consumer: Consumer) -> bool:
        """Check the lag (at most every `check_every_s`), pause or resume the source partitions;
        whether the source is paused now. A paused source is paused again on every call: a
        rebalance or a `keep_alive` resumes partitions."""
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            try:
                self.lag = self.downstream_lag()
            except Exception as exc:  # noqa: BLE001 - unknown lag: keep the last decision
                self.close()  # and ask on fresh connections next time: a broken one would fail every check
                log.warning(
                    "%s: downstream lag of %s unknown (%s); keeping the input %s",
                    self.actor,
                    self.downstream,
                    exc,
                    "paused" if self.paused else "flowing",
                )
            else:
                self._lag_gauge.labels(self.actor).set(self.lag)
                pause = should_pause(self.paused, self.lag, self.bound)
                if pause and not self.paused:
                    self.pauses += 1
                    self._pauses_counter.labels(self.actor).inc()
                    log.info(
                        "%s: pausing %s: %s is %d records behind (bound %d)",
                        self.actor,
                        self.source,
                        self.downstream,
                        self.lag,
                        self.bound,
                    )
                elif self.paused and not pause:
                    consumer.resume_topic(self.source)
                    log.info("%s: resuming %s: %s lag %d", self.actor, self.source, self.downstream, self.lag)
                self.paused = pause
                self._paused_gauge.labels(self.actor).set(int(pause))
        if self.paused:
            consumer.pause([(t, p) for t, p in consumer.assigned() if t == self.source])
        return self.paused

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
