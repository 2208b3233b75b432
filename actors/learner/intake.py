"""What the learner does with each group it reads from `scored`, and the counts it keeps.

A group is, in this order: dead-lettered (it does not decode, its prompt's blob is gone, or it is
malformed), skipped (another
run's, counted), de-duplicated (rollout ids seen before), dropped as uninformative (dynamic
sampling: all its trajectories got the same shaped reward), dropped as stale (more than η
versions older than the learner, checked again while it waits), or trained on. Every group
of this run that is dead-lettered, dropped or trained counts as consumed: `groups_consumed` is what the rollout gate
releases new groups against. The ids of what happened since the newest checkpoint make its
ledger line (`ledger.py`).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.learner import ledger
from actors.learner.checkpoint import LearnerState
from actors.learner.metrics import DUPLICATE_GROUPS, INGEST_TO_TRAIN, OTHER_RUN, STALE, STALENESS, UNINFORMATIVE
from actors.learner.rlbatch import check_group, trajectories
from schemas import ScoredRollout
from streams.kafka import Message
from streams.processor import PASS_THROUGH, DedupWindow
from streams.transient import retrying

Group = list[ScoredRollout]


def with_prompts(group: Group, get_ids: Callable[[Sequence[int], str], list[int]], retries: int) -> Group:
    """The group with each prompt kept in the blob store read now (one read per blob, shared by
    the group's rollouts), so that reading it happens inside the intake's dead-letter guard: a
    blob that is gone dead-letters its group (before, the step that needed it raised, and every
    restart after it). A transient store error is tried `retries` more times first."""
    prompts: dict[str, tuple[int, ...]] = {}
    out = []
    for r in group:
        if r.prompt_ref:
            if r.prompt_ref not in prompts:
                prompts[r.prompt_ref] = tuple(retrying(lambda ref=r.prompt_ref: get_ids((), ref), attempts=retries))
            r = dataclasses.replace(r, prompt_ids=prompts[r.prompt_ref], prompt_ref="")
        out.append(r)
    return out


@dataclass
class Since:
    """Ids of what happened to groups since the newest checkpoint (its ledger line)."""

    trained: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    stale_groups: list[str] = field(default_factory=list)
    uninformative: list[str] = field(default_factory=list)


class Intake:
    def __init__(
        self,
        name: str,
        *,
        max_staleness: int,
        dynamic_sampling: bool,
        run_id: str,
        source_run_id: str,
        dedup_window: int,
        informative: Callable[[Group], bool],
        dead_letter: Callable[[Message, Exception], None],
        prepare: Callable[[Group], Group] = lambda group: group,
    ) -> None:
        """`informative`: whether a group's trajectories have a nonzero advantage;
        `dead_letter`: where a group that cannot be used goes, with its reason."""
        self.name = name
        self.max_staleness = max_staleness
        self.dynamic_sampling = dynamic_sampling
        self.run_id, self.source_run_id = run_id, source_run_id
        self._informative = informative
        self._dead_letter = dead_letter
        self._prepare = prepare
        """Applied to each fresh group of this run inside the dead-letter guard (`with_prompts`)."""
        self.dedup = DedupWindow(dedup_window)
        self.groups_consumed = 0
        self.stale_dropped = 0
        self.uninformative_dropped = 0
        self.other_run_skipped = 0
        self.duplicate_groups = 0
        self.staleness_hist: collections.Counter[int] = collections.Counter()
        self.replay_dropped: set[str] = set()
        """Replay: group ids the stale check dropped (the schedule passes over them)."""
        self.since = Since()

    def take(self, message: Message, decode: Any, version: int, read_before: bool = False) -> Group | None:
        """A message's group, or None (dead-lettered, another run's, duplicate, incomplete or
        uninformative). `read_before`: this message was read before the last restart.

        A group whose every rollout was seen, in a message not read before, is a copy: a
        rollout actor that died between sending a group and committing its task sends it again
        (or a reward actor its scoring). The `rollouts` message it came from holds a gate slot
        like any other, so the copy counts as consumed (it is not trained again). A reward actor
        that died before committing re-scores what it had polled, and those copies count too:
        up to one poll of groups more are let out, which the staleness check still bounds,
        where not counting a rollout's copy would hold a slot forever. (Counting exactly needs
        the source `rollouts` offset on scored records.)"""
        group = None
        try:
            group = decode(message)
            if group and group[0].run_id != self.source_run_id:  # another run's group on a reused broker
                OTHER_RUN.labels(self.name).inc(trajectories(group))  # (ids are content hashes: a run
                self.other_run_skipped += trajectories(group)  # that fed the same corpus has the same ones)
                return None
            fresh = [r for r in group if not self.dedup.seen(r.rollout_id)]
            if group and not fresh and not read_before:
                self.groups_consumed += 1
                self.duplicate_groups += 1
                DUPLICATE_GROUPS.labels(self.name).inc()
                return None
            group = fresh
            if group:
                group = self._prepare(group)
                check_group(group, self.run_id, version)
        except PASS_THROUGH:  # the learner's trouble (a store still failing), not the group's
            raise
        except Exception as exc:  # noqa: BLE001 - bad input becomes a dead letter
            self._dead_letter(message, exc)
            if group and group[0].run_id == self.source_run_id:  # a group of ours the gate let out:
                self.groups_consumed += 1  # consumed, or its slot would stay taken forever
                for r in group:  # (and a copy of it delivered again is a duplicate, not counted twice)
                    self.dedup.add(r.rollout_id)
            return None
        for r in group:
            self.dedup.add(r.rollout_id)
        if not group or not self._keep_informative(group):
            return None
        return group

    def _keep_informative(self, group: Group) -> bool:
        """Dynamic sampling (`learner.dynamic_sampling`): a group whose trajectories all got the
        same (shaped) reward carries no signal; it is dropped and counted as consumed before any
        batch is formed, so the batch fills from the next groups."""
        if not self.dynamic_sampling or self._informative(group):
            return True
        finals = trajectories(group)
        self.groups_consumed += 1
        self.uninformative_dropped += finals
        self.since.uninformative += [r.rollout_id for r in group]
        UNINFORMATIVE.labels(self.name, group[0].task_type).inc(finals)
        return False

    def fresh(self, group: Group, version: int, replaying: bool) -> bool:
        """False (and counted as consumed and dropped) when the group is staler than η now."""
        if version - min(r.policy_version for r in group) <= self.max_staleness:
            return True
        self.groups_consumed += 1
        self.stale_dropped += trajectories(group)
        self.since.stale += [r.rollout_id for r in group]
        self.since.stale_groups.append(group[0].group_id)
        if replaying:
            self.replay_dropped.add(group[0].group_id)
        STALE.labels(self.name).inc(trajectories(group))
        return False

    def trained(self, batch: list[Group], version: int) -> None:
        """`batch` goes to a training step at `version`: its staleness and ids are recorded."""
        self.groups_consumed += len(batch)
        now = time.time()
        for group in batch:
            if group[0].ingested_at:  # a task made when its document arrived (not a re-publication)
                INGEST_TO_TRAIN.labels(self.name).observe(max(0.0, now - group[0].ingested_at / 1000))
            staleness = version - min(r.policy_version for r in group)
            self.staleness_hist[staleness] += trajectories(group)
            STALENESS.labels(self.name).observe(staleness)
        self.since.trained += [r.rollout_id for g in batch for r in g]
        self.since.groups += [g[0].group_id for g in batch]

    def write_ledger(self, path: Path, at: ledger.Key, since: ledger.Key | None) -> None:
        """Append what happened since the last checkpoint (`since`) up to `at`, then forget it."""
        s = self.since
        ledger.append(
            path,
            at=at,
            since=since,
            trained=s.trained,
            stale=s.stale,
            groups=s.groups,
            stale_groups=s.stale_groups,
            uninformative=s.uninformative,
        )
        self.since = Since()

    def seen_ids(self, waiting: frozenset[str]) -> list[str]:
        """The dedup window without `waiting` (read, not yet trained: read again after a restart)."""
        return [i for i in self.dedup.ids() if i not in waiting]

    def restore(self, saved: LearnerState) -> None:
        self.groups_consumed = saved.groups_consumed
        self.stale_dropped = saved.stale_dropped
        self.uninformative_dropped = saved.uninformative_dropped
        self.staleness_hist = collections.Counter(saved.staleness_hist)
        for rollout_id in saved.seen_ids:
            self.dedup.add(rollout_id)
