"""Rewards to advantages, over one batch of GRPO groups. Pure functions over tensors.

A batch holds trajectories (one reward each) of several groups (one prompt, G samples) of
several task types. Arithmetic is in float64, and a group whose rewards are all equal gets an
advantage of exactly zero and counts as uninformative: with float32 segment means, eight
rewards of 0.9 leave a residue of ~1e-8 that a 1e-6 std then blows up into a signal.
"""

from __future__ import annotations

import torch

from actors.learner.config import AdvantageNorm


def _segment_mean(values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Mean of `values` [N] within each segment id [N], broadcast back to [N]."""
    n = int(segments.max()) + 1
    sums = torch.zeros(n, dtype=values.dtype).index_add_(0, segments, values)
    counts = torch.zeros(n, dtype=values.dtype).index_add_(0, segments, torch.ones_like(values))
    return (sums / counts)[segments]


def _segment_std(values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Population std of `values` within each segment, broadcast back to [N]."""
    mean = _segment_mean(values, segments)
    return _segment_mean((values - mean) ** 2, segments).sqrt()


def informative_groups(rewards: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """[N] bool: the sample's group has at least two different rewards (compared exactly)."""
    n = int(group_index.max()) + 1
    high = torch.full((n,), -torch.inf, dtype=rewards.dtype).scatter_reduce(0, group_index, rewards, "amax")
    low = torch.full((n,), torch.inf, dtype=rewards.dtype).scatter_reduce(0, group_index, rewards, "amin")
    return (high > low)[group_index]


def group_advantages(
    rewards: torch.Tensor,  # [N]
    group_index: torch.Tensor,  # [N] int64, 0..groups-1
    task_index: torch.Tensor,  # [N] int64, 0..task types-1
    norm: AdvantageNorm,
    eps: float = 1e-6,
) -> torch.Tensor:  # [N] float32
    r = rewards.double()
    centered = torch.where(informative_groups(r, group_index), r - _segment_mean(r, group_index), 0.0)
    if norm is AdvantageNorm.GROUP_MEAN:
        return centered.float()
    scale = _segment_std(r, group_index) if norm is AdvantageNorm.GROUP else _segment_std(r, task_index)
    return (centered / (scale + eps)).float()


def overlong_penalty(length: int, max_tokens: int, buffer: int, penalty: float) -> float:
    """DAPO's soft overlong punishment, added to the reward of a response of `length` tokens:
    0 up to max_tokens − buffer, then falling linearly to −penalty at max_tokens (and below
    it past max_tokens). buffer = 0: no penalty."""
    if buffer <= 0 or length <= max_tokens - buffer:
        return 0.0
    return -penalty * min(length - (max_tokens - buffer), buffer) / buffer
