"""The topic registry: every topic Longtide uses, its record type and default partition count.

The counts here are the defaults; `streams.partitions` overrides them per topic name, except
for the topics marked `ordered`, which always have one partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas import DeadLetter, Document, MemoryUpdate, PolicyVersion, Rollout, ScoredRollout, Task


def consumer_group(kind: str) -> str:
    """The consumer group of the actors of `kind` (every instance shares it)."""
    return f"longtide-{kind}"


@dataclass(frozen=True)
class Topic:
    name: str
    record_type: type | None
    """Arrow record type carried; None for the ingress topic, which also takes JSON."""
    partitions: int
    """Default partition count (`streams.partitions` may override it unless `ordered`)."""
    ordered: bool = False
    """Readers rely on the order of its records across the whole topic, so it keeps one
    partition whatever the config says (policy announcements; dead letters, read in order)."""


DOCS_RAW = Topic("docs.raw", None, 2)
DOCS = Topic("docs", Document, 2)
TASKS = Topic("tasks", Task, 2)
ROLLOUTS = Topic("rollouts", Rollout, 2)
SCORED = Topic("scored", ScoredRollout, 2)
POLICY = Topic("policy", PolicyVersion, 1, ordered=True)
MEMORY = Topic("memory", MemoryUpdate, 2)
DLQ = Topic("dlq", DeadLetter, 1, ordered=True)

ALL_TOPICS: tuple[Topic, ...] = (DOCS_RAW, DOCS, TASKS, ROLLOUTS, SCORED, POLICY, MEMORY, DLQ)


def topic_named(name: str) -> Topic:
    for topic in ALL_TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}; known: {[t.name for t in ALL_TOPICS]}")


def partition_counts(overrides: Mapping[str, int], topics: tuple[Topic, ...] = ALL_TOPICS) -> dict[str, int]:
    """Partition count of every topic: the registry's, replaced by `overrides` (topic name ->
    count). Raises ValueError naming the entry for an unknown topic, a count below 1, or a
    count other than 1 for an `ordered` topic."""
    known = {t.name: t for t in topics}
    for name, count in overrides.items():
        if name not in known:
            raise ValueError(f"streams.partitions has unknown topic {name!r}; known: {sorted(known)}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"streams.partitions[{name!r}] ({count!r}) must be an integer >= 1")
        if known[name].ordered and count != 1:
            raise ValueError(
                f"streams.partitions[{name!r}] ({count}) must be 1: readers of {name!r} rely on the order "
                "of its records; remove the entry"
            )
    return {t.name: overrides.get(t.name, t.partitions) for t in topics}


MIN_RETENTION_MS = 60_000


def retention_settings(
    retention_ms: Mapping[str, int], topics: tuple[Topic, ...] = ALL_TOPICS
) -> dict[str, dict[str, str]]:
    """Topic name -> the topic configs `retention.ms` gives it at creation. Raises ValueError
    naming the entry for an unknown topic or a value that is neither -1 (keep forever) nor at
    least a minute."""
    known = {t.name for t in topics}
    out = {}
    for name, ms in retention_ms.items():
        if name not in known:
            raise ValueError(f"streams.retention_ms has unknown topic {name!r}; known: {sorted(known)}")
        if not isinstance(ms, int) or (ms != -1 and ms < MIN_RETENTION_MS):
            raise ValueError(
                f"streams.retention_ms[{name!r}] ({ms!r}) must be -1 (keep forever) or >= {MIN_RETENTION_MS} ms"
            )
        out[name] = {"retention.ms": str(ms)}
    return out
