"""AEPO (QwenLong-L1.5 §4.3): entropy control through negative-advantage samples. Pure functions.

Batch entropy H(π, B) is the mean over the batch's sequences of each sequence's mean token
entropy, from the learner's own forward pass (chunked, `actors/learner/logprobs.py`). Modes:
- `BATCH` (the paper's): while H is above `h_high`, every negative-advantage sample is left
  out of the batch (training on positives only, which lowers entropy); once H falls below
  `h_low`, negatives come back. Between the two the state holds (hysteresis), so the switch
  does not chatter. The state is decided on the previous RL step's H, measured in that step's
  own forward before its update, so it costs no extra pass (the first step trains on all).
- `TOKEN`: negative-advantage tokens whose entropy exceeds `tau_token` are left out.
- `SEQUENCE`: negative-advantage sequences whose mean token entropy exceeds `tau_sequence`.
Left-out tokens of `TOKEN` and `SEQUENCE` still count in the loss's denominator (as clipped
tokens do); samples left out by `BATCH` are not in the batch at all.
"""

from __future__ import annotations

import torch

from actors.learner.config import AepoConfig, AepoMode


def next_masking(masking: bool, entropy: float, h_low: float, h_high: float) -> bool:
    """The batch mode's state after measuring `entropy`: on above h_high, off below h_low,
    unchanged in between (and on NaN: no measurement)."""
    if entropy > h_high:
        return True
    if entropy < h_low:
        return False
    return masking


def entropy_clip_mask(
    entropy: torch.Tensor,  # [B, T] per-token entropy (0 off target)
    mask: torch.Tensor,  # [B, T] target mask
    advantages: torch.Tensor,  # [B]
    config: AepoConfig,
) -> torch.Tensor:  # [B, T] the mask with the clipped tokens zeroed
    """TOKEN and SEQUENCE modes: the target mask without the negative-advantage tokens (or
    sequences) whose entropy is above the threshold; other modes return `mask` unchanged."""
    negative = (advantages < 0).unsqueeze(-1)  # [B, 1]
    if config.mode is AepoMode.TOKEN:
        return mask * ~(negative & (entropy > config.tau_token))
    if config.mode is AepoMode.SEQUENCE:
        mean = (entropy * mask).sum(-1) / mask.sum(-1).clamp(min=1e-9)  # [B]
        return mask * ~(negative & (mean > config.tau_sequence).unsqueeze(-1))
    return mask
