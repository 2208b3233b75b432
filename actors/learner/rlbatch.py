"""From scored groups to one RL step's training rows and updates. Pure functions.

A batch is G trajectories per group; a trajectory is one rollout (full context) or every turn
of a memory-agent reading, all carrying the final turn's reward. Here the rewards are shaped
(DAPO's overlong penalty on the final response), turned into advantages over trajectories, and
every turn of a trajectory becomes a training row with its trajectory's advantage. AEPO's batch
mode leaves negative-advantage trajectories out; `plan_updates` splits the rows into
`ppo_epochs` × `minibatches` optimizer steps, whole groups at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from actors.learner.advantages import group_advantages, informative_groups, overlong_penalty
from actors.learner.config import AdvantageNorm
from actors.learner.microbatch import TrainRow
from actors.tasks import MEMORY_TASK_TYPES, TaskType
from schemas import ScoredRollout


@dataclass(frozen=True)
class Trajectory:
    group: int
    """Index of its group in the batch."""
    task_type: str
    reward: float
    """The verifier's reward, [0, 1]."""
    final_length: int
    """Response tokens of the final turn (the answer)."""
    cap: int
    """The final turn's response cap (max_new_tokens, or the memory agent's answer_tokens)."""


@dataclass(frozen=True)
class Shaping:
    advantage_norm: AdvantageNorm = AdvantageNorm.GROUP
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0


@dataclass(frozen=True)
class Advantages:
    advantage: list[float]
    """Per trajectory."""
    informative: list[bool]
    """Per trajectory: its group's rewards differ."""
    shaped: list[float]
    """Per trajectory: the reward after the overlong penalty."""


def trajectory_advantages(trajectories: Sequence[Trajectory], shaping: Shaping) -> Advantages:
    shaped = [
        t.reward + overlong_penalty(t.final_length, t.cap, shaping.overlong_buffer, shaping.overlong_penalty)
        for t in trajectories
    ]
    types = sorted({t.task_type for t in trajectories})
    rewards = torch.tensor(shaped, dtype=torch.float64)
    group_index = torch.tensor([t.group for t in trajectories])
    task_index = torch.tensor([types.index(t.task_type) for t in trajectories])
    adv = group_advantages(rewards, group_index, task_index, shaping.advantage_norm)
    keep = informative_groups(rewards, group_index)
    return Advantages(adv.tolist(), keep.tolist(), shaped)


def train_rows(
    groups: list[list[ScoredRollout]],
    found: Advantages,
    aepo_masking: bool,
    prompt_of: Callable[[ScoredRollout], Sequence[int]],
) -> tuple[list[TrainRow], list[int], int]:
    """Every turn of an informative trajectory as a row with its trajectory's advantage (`found`
    is per final turn, in batch order); the group index of each row; the trajectories AEPO
    masked. While masking, negatives are measured (the batch entropy) but not trained on."""
    finals = [(i, r.sample_index) for i, g in enumerate(groups) for r in g if r.final]
    trajectory = {key: k for k, key in enumerate(finals)}
    rows, row_groups, masked = [], [], 0
    for i, group in enumerate(groups):
        for r in group:
            k = trajectory[(i, r.sample_index)]
            if not found.informative[k]:  # no signal: left out of the token count
                continue
            trained = not (aepo_masking and found.advantage[k] < 0)
            masked += r.final and not trained
            prompt = prompt_of(r)
            rows.append(
                TrainRow((*prompt, *r.response_ids), len(prompt), found.advantage[k], r.behaviour_logprobs, trained)
            )
            row_groups.append(i)
    return rows, row_groups, masked


def plan_updates(
    row_groups: Sequence[int], ppo_epochs: int, minibatches: int, generator: torch.Generator
) -> list[list[int]] | None:
    """Row indices of each optimizer step: every epoch shuffles the groups present and splits
    them into `minibatches` near-equal parts (a group's rows stay together). None for a single
    step over every row (1 × 1)."""
    if ppo_epochs * minibatches == 1:
        return None
    groups = sorted(set(row_groups))
    updates: list[list[int]] = []
    for _ in range(ppo_epochs):
        order = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
        for part in range(minibatches):
            chosen = set(order[part * len(order) // minibatches : (part + 1) * len(order) // minibatches])
            rows = [i for i, g in enumerate(row_groups) if g in chosen]
            if rows:
                updates.append(rows)
    return updates


def rollout_kind(task_type: str) -> str:
    """'memory' for the task types the memory agent reads chunk by chunk, else 'full'."""
    return "memory" if task_type in MEMORY_TASK_TYPES else "full"


def pass_rate(group: list[ScoredRollout]) -> float:
    """The share of the group's trajectories that were rewarded (mean final reward)."""
    finals = [r.reward for r in group if r.final]
    return sum(finals) / len(finals)


def trajectories(group: list[ScoredRollout]) -> int:
    """Samples of a group: its trajectories' last turns (a full-context rollout is one turn)."""
    return sum(r.final for r in group)


def check_group(group: list[ScoredRollout], run_id: str, version: int) -> None:
    """What a schema cannot check: a whole group, of a known task type, from a version
    the learner (of run `run_id`, at `version`) has published (raises ValueError naming the problem)."""
    head = group[0]
    turns = {r.sample_index: r.turns for r in group}
    if sorted(turns) != list(range(head.group_size)):
        raise ValueError(
            f"group {head.group_id}: samples {sorted(turns)[:8]} are not 0..{head.group_size - 1} (group_size)"
        )
    seen = sorted((r.sample_index, r.turn_index) for r in group)
    if seen != [(i, t) for i in range(head.group_size) for t in range(turns[i])] or len(set(turns.values())) > 1:
        raise ValueError(f"group {head.group_id}: trajectories incomplete or of different lengths ({len(group)} rows)")
    if head.task_type not in set(TaskType):
        raise ValueError(f"group {head.group_id}: unknown task_type {head.task_type!r}")
    newest = max(r.policy_version for r in group)
    if head.run_id == run_id and newest > version:
        raise ValueError(f"group {head.group_id}: policy_version {newest} is newer than the learner's {version}")
