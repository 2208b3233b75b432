"""Task-balanced sampling (QwenLong-L1.5 §4): which waiting groups form the next batch. Pure.

Every batch draws equal counts per task type (the configured types; the remainder of
`groups_per_step` ÷ types goes to the types whose oldest group waited longest), oldest first,
from the groups waiting on `scored` (a buffer bounded by the staleness gate). A type with
fewer groups waiting than its share has run dry:
- `DryPolicy.FILL`: the batch forms as soon as `groups_per_step` groups wait, the dry types'
  slots filled with the oldest groups of the others (counted);
- `DryPolicy.WAIT`: the batch waits for every type's share, until `buffer_groups` wait (or no
  more can come: the learner is stalled), then fills (counted).
With `difficulty_bins`, each type's share alternates between its hard groups (pass rate below
one half) and the rest, oldest first within each bin, so neither dominates.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class DryPolicy(enum.StrEnum):
    FILL = "fill"
    WAIT = "wait"


@dataclass(frozen=True)
class SamplerConfig:
    """Batch composition (section `learner.sampler`)."""

    task_balanced: bool = False
    """Equal counts per task type in every batch; off: the oldest groups, whatever their type."""
    when_dry: DryPolicy = DryPolicy.FILL
    """fill (from other types at once) or wait (for every type's share, up to buffer_groups)."""
    buffer_groups: int = 32
    """wait: the most groups held back while waiting for a dry type; must not exceed
    (learner.max_staleness + 1) × learner.groups_per_step, all the gate lets out at once."""
    difficulty_bins: bool = False
    """Within a type, alternate hard (pass rate < 1/2) and easy groups."""


@dataclass(frozen=True)
class Pick:
    indices: list[int]
    """Into the waiting groups."""
    filled: int
    """Slots given to another type because a type ran dry."""


def shares(types: Sequence[str], size: int, oldest_first: Sequence[str]) -> dict[str, int]:
    """Each type's share of `size`: equal, the remainder to the types earliest in `oldest_first`
    (types by the age of their oldest waiting group; types with none waiting come last)."""
    base, extra = divmod(size, len(types))
    order = [t for t in oldest_first if t in types] + [t for t in types if t not in oldest_first]
    return {t: base + (1 if order.index(t) < extra else 0) for t in types}


def _in_bins(candidates: list[int], hard: Sequence[bool], bins: bool) -> list[int]:
    if not bins:
        return candidates
    hards = [i for i in candidates if hard[i]]
    easies = [i for i in candidates if not hard[i]]
    out = []
    for k in range(max(len(hards), len(easies))):
        out += [b[k] for b in (hards, easies) if k < len(b)]
    return out


def balanced_pick(
    waiting_types: Sequence[str],
    hard: Sequence[bool],
    types: Sequence[str],
    size: int,
    config: SamplerConfig,
    stalled: bool = False,
) -> Pick | None:
    """The next batch from the waiting groups (in arrival order: their task types, and whether
    each is hard), or None to wait for more."""
    if len(waiting_types) < size:
        return None
    by_type = {
        t: _in_bins([i for i, w in enumerate(waiting_types) if w == t], hard, config.difficulty_bins) for t in types
    }
    want = shares(types, size, list(dict.fromkeys(waiting_types)))
    dry = any(len(by_type[t]) < want[t] for t in types)
    if dry and config.when_dry is DryPolicy.WAIT and len(waiting_types) < config.buffer_groups and not stalled:
        return None
    picked = [i for t in types for i in by_type[t][: want[t]]]
    filled = size - len(picked)
    if filled:
        taken = set(picked)
        picked += [i for i in range(len(waiting_types)) if i not in taken][:filled]
    return Pick(sorted(picked), filled)
