"""Policy-gradient objectives over sampled tokens. Pure functions over tensors.

Every choice is a config field (`learner.*`), and every loss is a *sum* over the tokens it is
given, each token scaled by `scale` ([B], per row) so that micro-batch and rank losses add up to
the batch's loss however the batch is split:
- `PolicyLoss.DAPO` (token level): every token of the update weighs 1 / (tokens in the update);
- `PolicyLoss.GRPO` (sequence level): row i's tokens weigh 1 / (len_i · rows in the update),
  the mean over rows of each row's token mean.

The surrogate (RECIPE.md §5):
- `Correction.DECOUPLED` (AReaL): Σ_t w_t · −min(u_t A, clip(u_t, 1−ε_low, 1+ε_high) A),
  u_t = π_θ / π_prox, w_t = π_prox / π_behav (detached), capped at `behaviour_weight_cap`
  (`BehaviourWeight.CAP`), or tokens whose weight exceeds it left out (`BehaviourWeight.MASK`).
  π_prox is the learner's parameters before this batch's first update.
- `Correction.NAIVE`: PPO with the behaviour policy as the old one: u_t = π_θ / π_behav, no
  weight. AReaL's ablation: quality collapses with staleness.
- KL to a reference policy (k3 estimator, β = `kl_coef`; 0 leaves it out as DAPO does).
- Tokens outside π_prox's top-p nucleus (log-prob −inf) are left out (weight 0), and out of
  `tokens`, `rows` and the row lengths too (the trainer counts them first, `kept_tokens`).
"""

from __future__ import annotations

import torch

from actors.learner.config import BehaviourWeight, Correction, PolicyLoss, PolicyObjective


def row_scale(lengths: torch.Tensor, loss: PolicyLoss, tokens: float, rows: float) -> torch.Tensor:
    """[B] per-token weight of each row: 1/tokens (DAPO) or 1/(len_i · rows) (GRPO), where
    `tokens` and `rows` count the whole update (every micro-batch and rank)."""
    if loss is PolicyLoss.DAPO:
        return torch.full(lengths.shape, 1.0 / max(tokens, 1.0))
    return 1.0 / (lengths.clamp(min=1).float() * max(rows, 1.0))


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π_θ ‖ π_ref) estimate k3 = e^(ref − logp) − (ref − logp) − 1 (≥ 0)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def policy_loss(
    logp: torch.Tensor,  # [B, T] current policy, with grad
    prox_logp: torch.Tensor,  # [B, T] proximal policy (no grad)
    behav_logp: torch.Tensor,  # [B, T] behaviour policy that sampled the tokens
    advantages: torch.Tensor,  # [B]
    mask: torch.Tensor,  # [B, T] 1 on tokens that count (0 on prompt, padding, fillers, AEPO-masked)
    scale: torch.Tensor,  # [B] per-token weight of each row (`row_scale`)
    objective: PolicyObjective,
    ref_logp: torch.Tensor | None = None,  # [B, T] reference policy, when kl_coef > 0
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss (a sum over tokens, scaled) and per-call *sums* (`policy_stats` makes means;
    `tokens` counts the tokens in the loss, `clipped_tokens` those whose clipped term was the
    one taken)."""
    valid = mask * torch.isfinite(prox_logp) * torch.isfinite(behav_logp)  # [B, T]
    outside = float((mask - valid).sum())

    def zeroed(t: torch.Tensor) -> torch.Tensor:
        return torch.where(valid > 0, t, torch.zeros_like(t))

    logp, prox_logp, behav_logp = zeroed(logp), zeroed(prox_logp), zeroed(behav_logp)
    adv = advantages.unsqueeze(-1)  # [B, 1]
    old = prox_logp if objective.correction is Correction.DECOUPLED else behav_logp
    ratio = torch.exp(logp - old)  # [B, T]
    clipped = ratio.clamp(1.0 - objective.clip_low, 1.0 + objective.clip_high)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    weight = torch.ones_like(ratio)
    if objective.correction is Correction.DECOUPLED:
        weight = torch.exp(prox_logp - behav_logp).detach()
        if objective.behaviour_weight is BehaviourWeight.CAP:
            weight = weight.clamp(max=objective.behaviour_weight_cap)
        else:
            weight = torch.where(weight > objective.behaviour_weight_cap, torch.zeros_like(weight), weight)
    per_token = scale.unsqueeze(-1) * valid  # [B, T]
    loss = -(weight * surrogate * per_token).sum()
    kl_sum = 0.0
    if objective.kl_coef > 0:
        if ref_logp is None:
            raise ValueError("policy_loss: kl_coef > 0 needs the reference policy's log-probs")
        # a token outside either policy's top-p nucleus (log-prob −inf) has no finite k3: left out
        both = valid * torch.isfinite(ref_logp) * torch.isfinite(logp)
        kl = kl_k3(torch.where(both > 0, logp, 0.0), torch.where(both > 0, ref_logp, 0.0))
        loss = loss + objective.kl_coef * (kl * scale.unsqueeze(-1) * both).sum()
        kl_sum = float((kl.detach() * both).sum())
    with torch.no_grad():
        stats = {
            "tokens": float(valid.sum()),
            "behaviour_weight_sum": float((weight * valid).sum()),
            "weight_masked_tokens": float(((weight == 0) * valid).sum()),
            "clipped_tokens": float(((clipped * adv < ratio * adv).float() * valid).sum()),
            "outside_nucleus_tokens": outside,
            "kl_sum": kl_sum,
        }
    return loss, stats


def policy_stats(sums: dict[str, float]) -> dict[str, float]:
    """Means from summed `policy_loss` stats."""
    tokens = max(sums.get("tokens", 0.0), 1.0)
    return {
        "behaviour_weight_mean": sums.get("behaviour_weight_sum", 0.0) / tokens,
        "weight_masked_fraction": sums.get("weight_masked_tokens", 0.0) / tokens,
        "clip_fraction": sums.get("clipped_tokens", 0.0) / tokens,
        "kl": sums.get("kl_sum", 0.0) / tokens,
        "outside_nucleus_tokens": sums.get("outside_nucleus_tokens", 0.0),
    }


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, tokens: float) -> torch.Tensor:
    """−Σ log p(target) / tokens: cross-entropy, a token-level mean over the whole batch."""
    return -(logp * mask).sum() / tokens
