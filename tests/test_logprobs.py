"""The sampling distribution (temperature, nucleus) and the learner's chunked log-probs."""

from __future__ import annotations

import math

import pytest
import torch

from actors.learner.logprobs import full_logprobs, target_logprobs
from actors.sampling import SamplingSpec, nucleus_mask, sampling_logprobs


def test_temperature_by_hand() -> None:
    # logits [0, ln 3] at T = 0.5 -> [0, 2 ln 3] -> softmax = [1/10, 9/10]
    logp = sampling_logprobs(torch.tensor([0.0, math.log(3)]), SamplingSpec(0.5, 1.0))
    torch.testing.assert_close(logp, torch.tensor([math.log(0.1), math.log(0.9)]))


def test_nucleus_by_hand() -> None:
    # probs [.5, .3, .15, .05]; ascending [.05, .15, .3, .5], cumulative [.05, .2, .5, 1]
    # top_p .8: drop cumulative <= .2 -> drop .05 and .15; keep .5, .3 -> .625, .375
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert nucleus_mask(logits, 0.8).tolist() == [True, True, False, False]
    logp = sampling_logprobs(logits, SamplingSpec(1.0, 0.8))
    torch.testing.assert_close(logp[:2], torch.tensor([0.625, 0.375]).log())
    assert logp[2:].tolist() == [-math.inf, -math.inf]
    # top_p .81: drop cumulative <= .19 -> only .05 goes; keep .5, .3, .15 (sum .95)
    assert nucleus_mask(logits, 0.81).tolist() == [True, True, True, False]
    # a tiny top_p still keeps the most likely token
    assert nucleus_mask(logits, 1e-6).tolist() == [True, False, False, False]


def _head_and_hidden(vocab: int = 50, width: int = 8, rows: int = 3, length: int = 7):
    torch.manual_seed(0)
    head = torch.nn.Linear(width, vocab, bias=False)
    hidden = torch.randn(rows, length, width, requires_grad=True)
    ids = torch.randint(vocab, (rows, length))
    mask = torch.zeros(rows, length)
    mask[0, 3:] = 1  # row 0: prompt of 3, response of 4
    mask[1, 1:5] = 1  # row 1: prompt of 1, response of 4, then padding
    mask[2, 6:] = 1  # row 2: one response token
    return head, hidden, ids, mask


@pytest.mark.parametrize("top_p", [1.0, 0.9])
@pytest.mark.parametrize("chunk", [1, 4, 1024])
def test_chunked_equals_full(top_p: float, chunk: int) -> None:
    head, hidden, ids, mask = _head_and_hidden()
    spec = SamplingSpec(0.7, top_p)
    ref_logp, ref_ent = full_logprobs(head(hidden), ids, spec)
    logp, ent = target_logprobs(hidden, head, ids, mask, spec, chunk_tokens=chunk)
    on = mask.bool()
    torch.testing.assert_close(logp[on], ref_logp[on], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[on], ref_ent[on], atol=1e-5, rtol=0)
    assert logp[~on].abs().sum() == 0 and ent[~on].abs().sum() == 0
    # gradients of a masked sum agree too (the chunks are recomputed in backward)
    finite = on & ref_logp.isfinite()
    (g_ref,) = torch.autograd.grad(ref_logp[finite].sum(), hidden)
    (g,) = torch.autograd.grad(logp[finite].sum(), hidden)
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=0)


def test_entropy_of_a_uniform_distribution_is_log_v() -> None:
    head = torch.nn.Linear(2, 4, bias=False)
    torch.nn.init.zeros_(head.weight)  # logits all 0 -> uniform over 4 tokens -> H = ln 4
    hidden = torch.randn(1, 2, 2)
    _, ent = target_logprobs(
        hidden, head, torch.tensor([[0, 1]]), torch.tensor([[0.0, 1.0]]), SamplingSpec(1.0, 1.0), chunk_tokens=512
    )
    assert math.isclose(float(ent[0, 1]), math.log(4), rel_tol=1e-6)
