"""Which waiting groups the next RL step trains on: a replay follows its recorded schedule;
live, the task-balanced sampler (`learner.sampler`) or the oldest groups (of one rollout kind,
with `batch_by_rollout_kind`). Past `stall_seconds` without a new group, a smaller or mixed
batch may go."""

from __future__ import annotations

import time
from collections.abc import Set
from typing import Any

from actors.learner.config import LearnerConfig
from actors.learner.metrics import SAMPLER_FILLED
from actors.learner.replay import ReplayRange, next_batch
from actors.learner.rlbatch import pass_rate, rollout_kind
from actors.learner.sampler import balanced_pick
from schemas import ScoredRollout


class BatchPicker:
    """Picks batches for the learner `name`; its counts (`filled`, `scheduled`, `unscheduled`)
    are the run's (a checkpoint keeps `filled`)."""

    def __init__(self, name: str, config: LearnerConfig, task_types: list[str], replay: ReplayRange | None) -> None:
        self.name = name
        self.config = config
        self.task_types = task_types
        self.schedule = replay.schedule if replay is not None else None
        self.listed = replay.listed if replay is not None else frozenset()
        self.filled = 0
        """Slots the sampler filled from another type than its share's."""
        self.scheduled = 0
        """Position in the replay's schedule: groups trained or passed over."""
        self.unscheduled = 0
        """Replay: groups read that the schedule does not list (the recorded learner dropped them)."""
        self.last_arrival = time.monotonic()
        """When the last group was taken (`learner.stall_seconds`)."""

    def arrived(self) -> None:
        self.last_arrival = time.monotonic()

    def scheduled_only(self, ready: list[Any]) -> list[Any]:
        """Replay in recorded order: drop (count) groups the schedule does not list (items of
        `ready` hold their group third)."""
        if self.schedule is None:
            return ready
        kept = [item for item in ready if item[2][0].group_id in self.listed]
        self.unscheduled += len(ready) - len(kept)
        return kept

    def pick(self, waiting: list[list[ScoredRollout]], replay_dropped: Set[str]) -> list[int] | None:
        """Indices into `waiting` (groups in arrival order) of the next batch; None to wait."""
        stalled = time.monotonic() - self.last_arrival > self.config.stall_seconds
        if self.schedule is None and self.config.sampler.task_balanced:
            found = balanced_pick(
                [g[0].task_type for g in waiting],
                [pass_rate(g) < 0.5 for g in waiting],
                self.task_types,
                self.config.groups_per_step,
                self.config.sampler,
                stalled,
            )
            if found is None:
                return None
            self.filled += found.filled
            SAMPLER_FILLED.labels(self.name).inc(found.filled)
            self.scheduled += len(found.indices)
            return found.indices
        picked = next_batch(
            [g[0].group_id for g in waiting],
            self.config.groups_per_step,
            self.schedule,
            self.scheduled,
            replay_dropped,
            [rollout_kind(g[0].task_type) for g in waiting] if self.config.batch_by_rollout_kind else None,
            stalled=stalled,
        )
        if picked is None:
            return None
        indices, self.scheduled = picked
        return indices
