"""Supervision: every actor is restarted when its process or its loop dies.

The launcher asks each actor for a snapshot every `poll_s` seconds. An actor whose Ray worker
died (killed, out of memory, segfault) or whose loop raised is logged with the traceback,
counted in `longtide_<kind>_restarts_total{actor}` (served by the launcher's metrics endpoint,
so the count survives the actor) and started again in a fresh process, where it resumes from
its committed offsets (stream actors) or its newest checkpoint (the learner). Learner ranks
are one unit: when one rank dies, all of them restart together.

The embedded broker is watched too: on durable storage a dead broker, or a dead store under
it, is restarted on its ports (`longtide_broker_restarts_total{part="broker"|"store"}`); on
memory storage its log died with it, and the service ends saying so rather than train on an
empty log.

A crash loop is bounded: the `max_restarts`-th death of one actor within `window_s` seconds
ends the service with `CrashLoop`, naming the actor and its last error. An actor that died of
`LogLost` (the broker lost its log) ends the service at once: a restart would take the new,
empty log for a fresh start.
"""

from __future__ import annotations

import collections
import enum
import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter

from streams.embedded import EmbeddedLog

log = logging.getLogger(__name__)

KINDS = ("ingest", "synthesis", "rollout", "reward", "learner", "memory")


class Death(enum.StrEnum):
    """Why an actor was restarted (the `reason` label of its restarts)."""

    DIED = "died"
    """Its process died (killed, out of memory, a segfault) or its loop raised."""
    STALLED = "stalled"
    """It answered, but its loop had not come round for `supervision.stall_s`."""
    UNRESPONSIVE = "unresponsive"
    """It did not answer health checks for `supervision.stall_s`."""
    START_FAILED = "start_failed"
    """Its last restart failed: it has no process to ask."""


RESTARTS = {
    kind: Counter(
        f"longtide_{kind}_restarts",
        f"Restarts of {kind} actors, by why: died, stalled, unresponsive, start_failed.",
        ["actor", "reason"],
    )
    for kind in KINDS
}

RESTART_FAMILIES = tuple(f"longtide_{kind}_restarts" for kind in KINDS)
"""Served by the launcher (the supervisor restarts actors; their own endpoints die with them)."""
BROKER_RESTARTS = Counter(
    "longtide_broker_restarts",
    "Restarts of the embedded broker and of its store (durable storage only).",
    ["part"],
)
for _part in ("broker", "store"):
    BROKER_RESTARTS.labels(_part)


@dataclass(frozen=True)
class SupervisionConfig:
    """How dead actors are restarted."""

    enabled: bool = True
    """Restart actors whose process or loop died; false: an actor's death ends the service."""
    poll_s: float = 2.0
    """Seconds between health checks of every actor."""
    max_restarts: int = 5
    """Deaths of one actor within `window_s` that end the service (a crash loop): the
    `max_restarts`-th death is not restarted, so up to `max_restarts` − 1 restarts happen."""
    window_s: float = 600.0
    """The crash-loop window in seconds."""
    stall_s: float = 600.0
    """An actor whose loop has not come round (or that has not answered a health check) for this
    many seconds is restarted as stalled; it must exceed the longest single step of any actor (a
    learner step, an engine call, a document's extraction). 0 never restarts a stalled actor."""

    def __post_init__(self) -> None:
        if self.poll_s <= 0:
            raise ValueError(f"supervision.poll_s ({self.poll_s}) must be > 0")
        if self.max_restarts < 1:
            raise ValueError(
                f"supervision.max_restarts ({self.max_restarts}) must be >= 1; "
                "set supervision.enabled=false to never restart"
            )
        if self.window_s <= 0:
            raise ValueError(f"supervision.window_s ({self.window_s}) must be > 0")
        if self.stall_s < 0:
            raise ValueError(f"supervision.stall_s ({self.stall_s}) must be >= 0; 0 never restarts a stalled actor")


class CrashLoop(RuntimeError):
    """An actor died too often: the service stops instead of spinning."""


class RestartBudget:
    """Restart times per actor; `allow` says whether one more restart stays under the bound."""

    def __init__(self, max_restarts: int, window_s: float) -> None:
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._times: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def allow(self, name: str, now: float) -> bool:
        """Record a death of `name` at `now`; False once it is the `max_restarts`-th in the window."""
        times = self._times[name]
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return len(times) < self.max_restarts


def death_of(snapshot: dict | None, error: BaseException | None, stall_s: float = 0.0) -> tuple[Death, str] | None:
    """Why an actor must be restarted (the kind of death and its traceback or reason), or None
    when it is healthy.

    `snapshot` is what the actor answered; `error` is what asking it raised instead. An actor
    whose loop ended normally (`done`) is not dead; one whose loop has been stuck in one round
    for more than `stall_s` seconds (0: never) is stalled, and so is one whose polls have taken
    nothing for that long while records waited on partitions it fetches (its consumer stuck on
    a fetch that never completes: seen once in a 30-minute soak).
    """
    if error is not None:
        return Death.DIED, f"{type(error).__name__}: {error}"
    assert snapshot is not None
    if snapshot.get("done"):
        return None
    if not snapshot.get("alive", True):
        return Death.DIED, snapshot.get("error") or "the actor's loop stopped without an error"
    age = snapshot.get("loop_age_s")
    if stall_s and age is not None and age > stall_s:
        return Death.STALLED, (
            f"no progress: its loop has been in one round for {age:.0f} s (supervision.stall_s={stall_s:.0f})"
        )
    starved = snapshot.get("input_starved_s") or 0.0
    if stall_s and starved > stall_s:
        return Death.STALLED, (
            f"no input: {snapshot.get('input_waiting', 0)} records wait on partitions it fetches, and its polls "
            f"have taken none for {starved:.0f} s (supervision.stall_s={stall_s:.0f})"
        )
    return None


def restart_embedded(
    embedded: EmbeddedLog, supervision: SupervisionConfig, storage: str, budget: RestartBudget
) -> list[str]:
    """Restart the dead parts of the embedded log ('store', 'broker'; the names, counted in
    `longtide_broker_restarts_total{part}`) when it is durable. Raises CrashLoop when it is in
    memory (the log is gone with the broker: training on an empty log would silently start over),
    when supervision is off, or past the restart budget."""
    dead = embedded.dead_parts()
    if not dead:
        return []
    logs = {"broker": embedded.broker.log_path, "store": embedded.store.log_path if embedded.store else None}
    reason = "; ".join(f"the embedded {part} exited (see {logs[part]})" for part in dead)
    if not supervision.enabled:
        raise CrashLoop(f"{reason}, and supervision is off")
    if not embedded.durable:
        raise CrashLoop(
            f"{reason}. Its log was in memory (streams.embedded_storage={storage}): every topic and committed offset "
            "is lost, and training on an empty log would silently start over. Stopping the service; use durable "
            "storage or an external Kafka to survive broker restarts"
        )
    for part in dead:
        if not budget.allow(part, time.monotonic()):
            raise CrashLoop(f"{reason}: {budget.max_restarts} times within {budget.window_s:.0f} s")
    log.error("%s; restarting on the same ports and storage", reason)
    restarted = embedded.restart_dead()
    for part in restarted:
        BROKER_RESTARTS.labels(part).inc()
    return restarted
