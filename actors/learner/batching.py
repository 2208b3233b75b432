"""Padding token sequences into training tensors (right padding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase


def answer_example(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """A supervised example: the prompt's ids, and the trained target (the answer, then EOS)."""
    target = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"], [*target, tokenizer.eos_token_id]


@dataclass(frozen=True)
class TokenBatch:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    target_mask: torch.Tensor  # [B, L] 1 where the token is a trained target (answer/response)
    behaviour_logprobs: torch.Tensor  # [B, L] behaviour log-prob at target positions, else 0


def pad_batch(
    prompts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    pad_id: int,
    behaviour: Sequence[Sequence[float]] | None = None,
) -> TokenBatch:
    """prompt + target per row; targets are the positions trained on."""
    width = max(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
    rows = len(prompts)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attn = torch.zeros((rows, width), dtype=torch.long)
    tmask = torch.zeros((rows, width), dtype=torch.float32)
    blogp = torch.zeros((rows, width), dtype=torch.float32)
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        n_p, n = len(p), len(p) + len(t)
        ids[i, :n] = torch.tensor(list(p) + list(t))
        attn[i, :n] = 1
        tmask[i, n_p:n] = 1.0
        if behaviour is not None:
            blogp[i, n_p:n] = torch.tensor(behaviour[i], dtype=torch.float32)
    return TokenBatch(ids, attn, tmask, blogp)
