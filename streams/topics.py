"""The topic registry: every topic Longtide uses, its record type and partition count."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import DeadLetter, Document, PolicyVersion, Rollout, ScoredRollout, Task


@dataclass(frozen=True)
class Topic:
    name: str
    record_type: type | None
    """Arrow record type carried; None for the ingress topic, which also takes JSON."""
    partitions: int


DOCS_RAW = Topic("docs.raw", None, 2)
DOCS = Topic("docs", Document, 2)
TASKS = Topic("tasks", Task, 2)
ROLLOUTS = Topic("rollouts", Rollout, 2)
SCORED = Topic("scored", ScoredRollout, 2)
POLICY = Topic("policy", PolicyVersion, 1)
DLQ = Topic("dlq", DeadLetter, 1)

ALL_TOPICS: tuple[Topic, ...] = (DOCS_RAW, DOCS, TASKS, ROLLOUTS, SCORED, POLICY, DLQ)


def topic_named(name: str) -> Topic:
    for topic in ALL_TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}; known: {[t.name for t in ALL_TOPICS]}")
