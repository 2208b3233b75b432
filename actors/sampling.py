"""The behaviour policy's definition, shared by every rollout engine and the learner.

A rollout samples token a from the *sampling distribution* of the policy: the logits divided by
the temperature, restricted to the top-p nucleus, renormalised. Its behaviour log-prob is
log π_sample(a) under that distribution, and the learner recomputes exactly the same quantity
for π_prox and π_θ, so the decoupled-PPO weight π_prox / π_behav is 1 for an on-policy sample.

The nucleus follows vLLM's rule (`apply_top_k_top_p_pytorch`, also HF's `TopPLogitsWarper`):
sort ascending, drop every token whose cumulative probability is ≤ 1 − top_p, always keep
the most likely token. vLLM returns these log-probs with `logprobs_mode="processed_logprobs"`
(the default raw mode ignores the temperature); `tests/test_vllm_engine.py` checks them
against `sampling_logprobs` of a transformers forward, with top_p = 1 and top_p < 1.

Departure: with top_p < 1 the sampled token can fall outside the nucleus of a later policy;
its log-prob is then −inf and the learner leaves such tokens out (counted), since their
importance weight is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingSpec:
    """How rollouts sample, hence the distribution behaviour log-probs refer to."""

    temperature: float
    top_p: float

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature ({self.temperature}) must be > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p ({self.top_p}) must lie in (0, 1]")


def nucleus_mask(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """[..., V] bool, True for tokens in the top-p nucleus of softmax(`scaled`) (vLLM's rule)."""
    if top_p >= 1.0:
        return torch.ones_like(scaled, dtype=torch.bool)
    sorted_logits, order = scaled.sort(dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= 1.0 - top_p
    drop_sorted[..., -1] = False  # the most likely token always stays
    return ~torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)


def sampling_logprobs(logits: torch.Tensor, spec: SamplingSpec) -> torch.Tensor:
    """[..., V] log-probs of the sampling distribution (−inf outside the nucleus), in fp32."""
    scaled = logits.float()
    if spec.temperature != 1.0:
        scaled = scaled / spec.temperature
    if spec.top_p < 1.0:
        scaled = scaled.masked_fill(~nucleus_mask(scaled, spec.top_p), float("-inf"))
    return torch.log_softmax(scaled, dim=-1)
