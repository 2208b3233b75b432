"""Replay: a fresh learner trained on a recorded range of `scored`, generating nothing.

A `ReplayRange` bounds what the learner reads (`start` to `end`, per partition) and, with a
`schedule`, fixes the order: the group ids a recorded learner trained, in its order (from its
ledger). Live, a learner takes groups in arrival order, which interleaves partitions as the
broker happens to deliver them; following the recorded order is what makes a replay with the
same config and seed reproduce the recorded trajectory. Without a schedule, groups are taken in
the order they are read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence, Set
from dataclasses import dataclass

Partition = tuple[str, int]


@dataclass(frozen=True)
class ReplayRange:
    start: dict[Partition, int]
    """Offset to start reading each partition at (absent: its beginning)."""
    end: dict[Partition, int]
    """Offset each partition is read up to, exclusive; the replay ends once every partition
    got there and no further batch can be formed."""
    schedule: tuple[str, ...] | None = None
    """Group ids in the recorded training order; None takes groups as they are read."""

    @functools.cached_property
    def listed(self) -> frozenset[str]:
        return frozenset(self.schedule or ())

    def covers(self, part: Partition, offset: int) -> bool:
        return offset < self.end.get(part, 0)

    def read_through(self, seen: dict[Partition, int]) -> bool:
        """Every partition read up to its end."""
        return all(seen.get(p, self.start.get(p, 0)) >= end for p, end in self.end.items())


def next_batch(
    ready: Sequence[str],
    size: int,
    schedule: Sequence[str] | None,
    position: int,
    dropped: Set[str] = frozenset(),
    kinds: Sequence[str] | None = None,
    stalled: bool = False,
) -> tuple[list[int], int] | None:
    """The next batch: indices into `ready` (group ids waiting, in arrival order) and the new
    schedule position; None to wait for more groups.

    Without a schedule: the first `size` waiting groups; with `kinds` (each waiting group's
    rollout kind), the first `size` of one kind, the kind of the oldest group first, so that no
    batch mixes kinds. If no kind has `size` while at least `size` groups wait and the learner
    is `stalled` (it dropped stale groups since its last version, which the rollout gate learns
    of only from the next version, so more groups may never come), every waiting group of the
    fullest kind: a smaller batch, never a mixed one. With a schedule: its next `size` ids from `position` that are not
    `dropped` (as stale, by this replay), in schedule order, once all of them have arrived; the
    last batch may be shorter."""
    if schedule is None and kinds is not None:
        by_kind = {kind: [i for i, k in enumerate(kinds) if k == kind] for kind in dict.fromkeys(kinds)}
        for same in by_kind.values():  # kinds in order of their oldest waiting group
            if len(same) >= size:
                return same[:size], position + size
        if not stalled or len(ready) < size:
            return None
        fullest = max(by_kind.values(), key=len)
        return fullest, position + len(fullest)
    if schedule is None:
        return (list(range(size)), position + size) if len(ready) >= size else None
    wanted: list[str] = []
    end = position
    while end < len(schedule) and len(wanted) < size:
        if schedule[end] not in dropped:
            wanted.append(schedule[end])
        end += 1
    where = {group: i for i, group in enumerate(ready)}
    if not wanted or not all(group in where for group in wanted):
        return None
    return [where[group] for group in wanted], end
