"""The checkpointed reader: the Kafka loop of an actor that keeps its own durable state.

`StreamProcessor` commits after each poll's outputs are acknowledged: right for an actor whose
effect is what it produces. The learner's effect is its weights: a group read from `scored`
may wait several steps before it is trained on, and what it trained is durable only once a
checkpoint is. So this reader
- starts from the actor's saved position (`start`: a checkpoint's offsets), not from the
  group's committed offsets, which may lag behind it or run ahead of a lost checkpoint;
- tracks, per partition, the offset after the last message it handed out (`handed`);
- gives the position a restart must read from, less the messages the actor still holds
  (`position(waiting)`: the earliest held offset per partition), for the actor to save in
  its checkpoint;
- commits that position only when the actor says its state is durable (`durable`), so the
  group's committed offsets (what `longtide status` shows as lag) never claim more than a
  restart would keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from streams.kafka import Consumer, Message, Partition, StreamsConfig
from streams.metrics import stream_metrics


class CheckpointedReader:
    """Reads `topics` (every partition) for `actor`; see the module docstring."""

    def __init__(
        self,
        config: StreamsConfig,
        *,
        actor: str,
        kind: str,
        group_id: str,
        topics: Iterable[str],
        start: Mapping[Partition, int] | None = None,
        max_poll_records: int = 500,
    ) -> None:
        """`start`: where to read each partition from (a partition not named: from the group's
        committed offset, or from the beginning without one)."""
        self.actor = actor
        self.consumer = Consumer(
            config,
            group_id=group_id,
            topics=list(topics),
            client_id=group_id,
            assign_all=True,
            max_poll_records=max_poll_records,
        )
        self.metrics = stream_metrics(kind)
        self.handed: dict[Partition, int] = dict(start or {})
        """Per partition, the offset after the last message handed out (or the start)."""
        if start:
            self.consumer.seek(dict(start))

    def poll(self, timeout_ms: int = 200, keep: Callable[[Message], bool] | None = None) -> list[Message]:
        """The next messages, in offset order per partition; those `keep` refuses are neither
        handed out nor counted as read (a replay's range ends before them)."""
        messages = self.consumer.poll(timeout_ms)
        self.metrics.polled(self.actor, messages, self.consumer.lag())
        out = [m for m in messages if keep is None or keep(m)]
        for message in out:
            self.handed[(message.topic, message.partition)] = message.offset + 1
        return out

    def position(self, waiting: Iterable[tuple[Partition, int]] = ()) -> dict[Partition, int]:
        """Where a restart must read from: per partition, after every message handed out,
        except that a message the actor still holds (`waiting`: its partition and offset) is
        read again."""
        out = dict(self.handed)
        for part, offset in waiting:
            out[part] = min(out.get(part, offset), offset)
        return out

    def durable(self, offsets: Mapping[Partition, int]) -> None:
        """The actor's state covering `offsets` (a `position`) is durable: commit them."""
        if offsets:
            self.consumer.commit(dict(offsets))

    def close(self) -> None:
        self.consumer.close()
