"""Training rows, token-budgeted micro-batches and their assignment to ranks. Pure functions.

A batch (one optimizer step) is split into micro-batches whose padded size, rows × longest
row, stays within `micro_batch_tokens`. Rows are sorted by length first (length bucketing), so
rows of similar length share a micro-batch and little is padding. Micro-batches are dealt to
data-parallel ranks, longest first, to the rank with the fewest tokens so far; every rank gets
the same number (a rank short of one gets a *filler*: a real micro-batch with weight 0), since
each backward under ZeRO-2/3 is a collective.

Every micro-batch's loss is a sum over its tokens divided by the token count of the whole batch,
so the gradient is DAPO's token-level mean however the batch is split (`tests/test_trainer.py`:
1 × 8 equals 2 × 4 equals 2 ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainRow:
    """One training sequence: prompt then trained tokens (an answer or a sampled response)."""

    ids: tuple[int, ...]
    """Prompt + target token ids."""
    n_prompt: int
    """Tokens of `ids` that are prompt (not trained)."""
    advantage: float = 0.0
    """RL: the sequence's advantage (every token shares it)."""
    behaviour: tuple[float, ...] = ()
    """RL: the behaviour log-prob of each target token (len(ids) − n_prompt of them)."""
    trained: bool = True
    """False: only measured (its entropy counts in the batch entropy), not trained on."""

    @property
    def n_targets(self) -> int:
        return len(self.ids) - self.n_prompt


@dataclass(frozen=True)
class MicroBatch:
    rows: tuple[int, ...]
    """Indices into the batch's rows."""
    weight: float = 1.0
    """0 for a filler: it runs forward and backward (collectives stay in step) but adds nothing."""


def plan_micro_batches(lengths: Sequence[int], token_budget: int, ranks: int = 1) -> list[list[MicroBatch]]:
    """Per rank, its micro-batches (same count on every rank)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:  # descending length: the first row of a micro-batch is its longest
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    while len(batches) < ranks and any(len(b) > 1 for b in batches):  # give every rank real work
        widest = max(range(len(batches)), key=lambda b: len(batches[b]))
        half = len(batches[widest]) // 2
        batches.append(batches[widest][half:])
        batches[widest] = batches[widest][:half]
    per_rank: list[list[MicroBatch]] = [[] for _ in range(ranks)]
    load = [0] * ranks
    for rows in sorted(batches, key=lambda b: -len(b) * lengths[b[0]]):
        rank = min(range(ranks), key=lambda r: (len(per_rank[r]), load[r]))
        per_rank[rank].append(MicroBatch(tuple(sorted(rows))))
        load[rank] += len(rows) * lengths[rows[0]]
    most = max(len(p) for p in per_rank)
    for plan in per_rank:
        plan.extend(MicroBatch(per_rank[0][0].rows, weight=0.0) for _ in range(most - len(plan)))
    return per_rank


@dataclass(frozen=True)
class TokenBatch:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    target_mask: torch.Tensor  # [B, L] 1.0 where the token is trained
    behaviour_logprobs: torch.Tensor  # [B, L] behaviour log-prob at target positions, else 0
    advantages: torch.Tensor  # [B]
    trained: torch.Tensor  # [B] 1.0 for rows trained on, 0.0 for rows only measured


def pad_rows(rows: Sequence[TrainRow], pad_id: int, weight: float = 1.0) -> TokenBatch:
    """Right-padded tensors for `rows`; `weight` scales the target mask (0 for a filler)."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    tmask = torch.zeros((len(rows), width), dtype=torch.float32)
    blogp = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, row in enumerate(rows):
        n = len(row.ids)
        ids[i, :n] = torch.tensor(row.ids)
        attn[i, :n] = 1
        tmask[i, row.n_prompt : n] = weight
        if row.behaviour:
            blogp[i, row.n_prompt : n] = torch.tensor(row.behaviour, dtype=torch.float32)
    advantages = torch.tensor([r.advantage for r in rows], dtype=torch.float32)
    trained = torch.tensor([float(r.trained) for r in rows])
    return TokenBatch(ids, attn, tmask, blogp, advantages, trained)
