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

import enum
from dataclasses import dataclass

import torch


class AepoMode(enum.StrEnum):
    OFF = "off"
    BATCH = "batch"
    TOKEN = "token"
    SEQUENCE = "sequence"


@dataclass(frozen=True)
class AepoConfig:
    """Adaptive entropy control (section `learner.aepo`). Entropies are in nats, of the
    sampling distribution (temperature and top-p applied)."""

    mode: AepoMode = AepoMode.OFF
    """off, batch (the paper's hysteresis on batch entropy), token or sequence (entropy clips)."""
    h_low: float = 0.35
    """batch: negatives come back once the batch entropy falls below this."""
    h_high: float = 0.65
    """batch: negatives are masked once the batch entropy rises above this. The defaults are
    measured on the `world` demo (tiny model, temperature 1): batch entropy 0.70 on average
    over the first 50 RL steps, 0.43 over steps 300–400, single batches from 0.17 to 1.07. The
    paper does not publish its thresholds."""
    tau_token: float = 1.0
    """token: negative-advantage tokens above this entropy are left out."""
    tau_sequence: float = 0.65
    """sequence: negative-advantage sequences above this mean entropy are left out."""

    def __post_init__(self) -> None:
        if not 0 <= self.h_low < self.h_high:
            raise ValueError(
                f"learner.aepo.h_low ({self.h_low}) must be >= 0 and below learner.aepo.h_high ({self.h_high}): "
                "the band between them is the hysteresis; e.g. h_low=0.35 h_high=0.65"
            )
        if self.tau_token <= 0 or self.tau_sequence <= 0:
            raise ValueError(
                f"learner.aepo.tau_token ({self.tau_token}) and tau_sequence ({self.tau_sequence}) must be > 0"
            )


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
