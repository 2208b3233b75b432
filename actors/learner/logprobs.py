"""Log-probs and entropy of the trained tokens, computed in chunks: no [B, L, V] table.

The model's decoder gives hidden states [B, L, H]; only the positions that predict a trained
token (a response or answer token) go through the output head, `chunk_tokens` rows at a
time, each chunk under activation checkpointing so its [chunk, V] logits are recomputed in
the backward pass instead of kept. Peak memory for the head is then a few chunk × V tables
whatever the sequence length: with a 152K vocabulary and 512-row chunks, 0.3 GB each, instead
of 18.5 GiB for the [1, L, V] fp32 table of one 32K-token sequence (bench/learner_memory.py).

Log-probs are those of the sampling distribution (`actors.sampling`), so they compare
directly with the rollout engines' behaviour log-probs. Entropy is that of the same
distribution, computed without gradient (a diagnostic and AEPO's signal).

`HeadKernel.LIGER` (GPU): liger-kernel's fused linear + cross-entropy gives the log-probs
instead, never holding more than its own chunk of logits and computing the head's gradient
in the same pass. It knows no nucleus, so it needs top_p = 1 (the temperature is applied by
scaling the hidden states: logits / T = (h / T) · Wᵀ for a head without bias), it reads the
head's weight directly (so not under ZeRO-3, whose hooks gather it only when the head is
called), and entropy still goes through the chunked path without gradient.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from actors.learner.config import HeadKernel
from actors.sampling import SamplingSpec, nucleus_mask, sampling_logprobs


def _chunk_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,  # [C, H]
    targets: torch.Tensor,  # [C]
    spec: SamplingSpec,
) -> torch.Tensor:  # [C]
    return sampling_logprobs(head(hidden), spec).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def _chunk_entropy(head: torch.nn.Module, hidden: torch.Tensor, spec: SamplingSpec) -> torch.Tensor:  # [C]
    """H = logsumexp(z) − Σ softmax(z) · z over the sampling distribution's scaled logits z,
    with two [C, V] tensors alive at most (z and p)."""
    z = head(hidden).float()
    if spec.temperature != 1.0:
        z.div_(spec.temperature)
    if spec.top_p < 1.0:
        z.masked_fill_(~nucleus_mask(z, spec.top_p), float("-inf"))
    lse = torch.logsumexp(z, dim=-1, keepdim=True)  # [C, 1]
    p = (z - lse).exp_()  # [C, V], 0 outside the nucleus
    if spec.top_p < 1.0:
        z.masked_fill_(p == 0, 0.0)  # 0 · (−inf) would be NaN; these terms are 0
    return lse.squeeze(-1) - torch.bmm(p.unsqueeze(1), z.unsqueeze(2)).view(-1)


def _liger_logprobs(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, spec: SamplingSpec
) -> torch.Tensor:
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    if spec.top_p < 1.0:
        raise ValueError("the liger head kernel has no nucleus: it needs top_p = 1")
    weight = head.weight
    scaled = (hidden / spec.temperature).to(weight.dtype)
    bias = getattr(head, "bias", None)
    if bias is not None:
        bias = bias / spec.temperature
    loss = LigerFusedLinearCrossEntropyFunction.apply(scaled, weight, targets, bias, None, -100, 0.0, 0.0, "none")[0]
    return -loss.float()


def target_logprobs(
    hidden: torch.Tensor,  # [B, L, H] final hidden states (after the last norm)
    head: torch.nn.Module,  # the output head: logits = head(hidden), called as a module (ZeRO-3 hooks)
    input_ids: torch.Tensor,  # [B, L]
    target_mask: torch.Tensor,  # [B, L] 1 where input_ids[t] is a trained token (t ≥ 1)
    spec: SamplingSpec,
    chunk_tokens: int,  # `learner.logprob_chunk_tokens`
    with_entropy: bool = True,
    min_chunks: int = 0,
    kernel: HeadKernel = HeadKernel.CHUNKED,
) -> tuple[torch.Tensor, torch.Tensor]:  # logp [B, L] (0 off target), entropy [B, L] (0 off target)
    """log π(input_ids[t] | prefix) and the entropy at t, for every target position t.

    `min_chunks` pads with empty chunks so every data-parallel rank calls the head equally
    often (under ZeRO-3 each call gathers the head's parameters: a collective)."""
    rows, cols = target_mask[:, 1:].nonzero(as_tuple=True)  # [N]: position cols+1 is a target
    predict = hidden[rows, cols]  # [N, H]: hidden at t-1 predicts token t
    targets = input_ids[rows, cols + 1]  # [N]
    pieces, entropies = [], []
    starts = list(range(0, predict.shape[0], chunk_tokens))
    starts += [predict.shape[0]] * (min_chunks - len(starts))  # empty chunks
    if kernel is HeadKernel.LIGER and predict.shape[0]:
        pieces.append(_liger_logprobs(head, predict, targets, spec))
    for start in starts:
        h, y = predict[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        if kernel is HeadKernel.CHUNKED and torch.is_grad_enabled() and h.requires_grad:
            pieces.append(checkpoint(_chunk_logprobs, head, h, y, spec, use_reentrant=False))
        elif kernel is HeadKernel.CHUNKED:
            pieces.append(_chunk_logprobs(head, h, y, spec))
        if with_entropy:
            entropies.append(_chunk_entropy(head, h.detach(), spec))
    flat = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)
    logp = torch.zeros(input_ids.shape, dtype=torch.float32, device=hidden.device)
    logp = logp.index_put((rows, cols + 1), flat)
    entropy = torch.zeros_like(logp, requires_grad=False)
    if with_entropy and entropies:
        entropy[rows, cols + 1] = torch.cat(entropies)
    return logp, entropy


def full_logprobs(
    logits: torch.Tensor,  # [B, L, V], logits[:, t] predicts token t+1
    input_ids: torch.Tensor,  # [B, L]
    spec: SamplingSpec,
) -> tuple[torch.Tensor, torch.Tensor]:  # [B, L] log-probs and entropies; position 0 is 0
    """The unchunked reference computation (tests and the memory bench's baseline)."""
    logp_all = sampling_logprobs(logits[:, :-1], spec)  # [B, L-1, V]
    picked = logp_all.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    p = logp_all.exp()
    entropy = -(p * logp_all.masked_fill(p == 0, 0.0)).sum(-1)
    pad = torch.nn.functional.pad
    return pad(picked, (1, 0)), pad(entropy.detach(), (1, 0))
