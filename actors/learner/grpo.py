"""GRPO advantages and the decoupled-PPO token-level loss. Pure functions over tensors.

Departures from the papers, and why:
- No KL term (β = 0), as in DAPO and QwenLong-L1.5.
- π_prox (AReaL's proximal policy) is the learner's parameters before this update. The
  learner makes one optimizer step per batch, so π_prox equals the detached current
  log-probs (from the same forward, micro-batch by micro-batch) and costs no extra pass;
  the ratio u_t = π_θ / π_prox is 1 in value and carries the PPO gradient. The behaviour weight π_prox / π_behav corrects stale samples
  and is capped at `behaviour_weight_cap` (AReaL leaves the cap open).
- Groups whose rewards are all equal carry no signal; their tokens are left out of the
  token count (DAPO's dynamic sampling, applied after the fact instead of by resampling).
"""

from __future__ import annotations

import enum

import torch


class AdvantageNorm(enum.StrEnum):
    GROUP = "group"
    """GRPO: (r − group mean) / group std."""
    TASK_BATCH = "task_batch"
    """QwenLong-L1.5: (r − group mean) / std of all rewards of the same task type in the batch."""


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


def group_advantages(
    rewards: torch.Tensor,  # [N]
    group_index: torch.Tensor,  # [N] int64, 0..groups-1
    task_index: torch.Tensor,  # [N] int64, 0..task types-1
    norm: AdvantageNorm,
    eps: float = 1e-6,
) -> torch.Tensor:  # [N]
    centered = rewards - _segment_mean(rewards, group_index)
    scale = _segment_std(rewards, group_index) if norm is AdvantageNorm.GROUP else _segment_std(rewards, task_index)
    return centered / (scale + eps)


def informative_groups(rewards: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """[N] bool: the sample's group has at least two different rewards."""
    return _segment_std(rewards, group_index) > 0


def decoupled_ppo_loss(
    logp: torch.Tensor,  # [B, T] current policy, with grad
    prox_logp: torch.Tensor,  # [B, T] proximal policy (no grad)
    behav_logp: torch.Tensor,  # [B, T] behaviour policy that sampled the tokens
    advantages: torch.Tensor,  # [B]
    mask: torch.Tensor,  # [B, T] 1 on response tokens that count (0 on prompt, padding, fillers)
    clip_low: float,
    clip_high: float,
    behaviour_weight_cap: float,
    tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Σ_t w_t · −min(u_t A, clip(u_t, 1−ε_low, 1+ε_high) A) / tokens (DAPO token-level mean).

    u_t = π_θ / π_prox, w_t = min(π_prox / π_behav, cap), detached. `tokens` is the token count
    of the whole batch (every micro-batch and rank), so micro-batch losses add up to the batch's
    mean; None divides by this call's own count. Tokens outside π_prox's top-p nucleus (log-prob
    −inf) have weight 0 and are left out. Returns the loss and per-call *sums* (`ppo_stats`
    turns sums from many calls into means).
    """
    valid = mask * torch.isfinite(prox_logp)  # [B, T]
    outside = float((mask - valid).sum())
    logp = torch.where(valid > 0, logp, torch.zeros_like(logp))
    prox_logp = torch.where(valid > 0, prox_logp, torch.zeros_like(prox_logp))
    behav_logp = torch.where(valid > 0, behav_logp, torch.zeros_like(behav_logp))
    adv = advantages.unsqueeze(-1)  # [B, 1]
    ratio = torch.exp(logp - prox_logp)  # [B, T]
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    weight = torch.exp(prox_logp - behav_logp).clamp(max=behaviour_weight_cap).detach()
    own = float(valid.sum())
    loss = -(weight * surrogate * valid).sum() / (tokens if tokens is not None else max(own, 1.0))
    with torch.no_grad():
        stats = {
            "tokens": own,
            "behaviour_weight_sum": float((weight * valid).sum()),
            "clipped_tokens": float((((ratio - clipped).abs() > 0).float() * valid).sum()),
            "outside_nucleus_tokens": outside,
        }
    return loss, stats


def ppo_stats(sums: dict[str, float]) -> dict[str, float]:
    """Means from summed `decoupled_ppo_loss` stats."""
    tokens = max(sums.get("tokens", 0.0), 1.0)
    return {
        "behaviour_weight_mean": sums.get("behaviour_weight_sum", 0.0) / tokens,
        "clip_fraction": sums.get("clipped_tokens", 0.0) / tokens,
        "outside_nucleus_tokens": sums.get("outside_nucleus_tokens", 0.0),
    }


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, tokens: float) -> torch.Tensor:
    """−Σ log p(target) / tokens: cross-entropy, a token-level mean over the whole batch."""
    return -(logp * mask).sum() / tokens
