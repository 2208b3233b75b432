"""On a CUDA GPU: the learner's step in bf16 and the vLLM engine (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from actors.learner.config import PolicyObjective, Precision, StepSettings
from actors.learner.logprobs import full_logprobs, target_logprobs
from actors.learner.trainer import Phase
from actors.modeling import load_policy
from actors.sampling import SamplingSpec
from ops.config import BASE_MODEL
from tests.trainer_helpers import GradientRecorder, rl_rows

pytestmark = pytest.mark.gpu


def test_chunked_logprobs_on_gpu_match_fp32() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 151_936, bias=False).cuda()
    hidden = torch.randn(2, 300, 64, device="cuda")
    ids = torch.randint(151_936, (2, 300), device="cuda")
    mask = torch.zeros(2, 300, device="cuda")
    mask[:, 100:] = 1
    spec = SamplingSpec(0.7, 0.95)
    ref, _ = full_logprobs(head(hidden), ids, spec)
    got, _ = target_logprobs(hidden, head, ids, mask, spec, chunk_tokens=64)
    on = mask.bool() & ref.isfinite()
    assert float((got[on] - ref[on]).abs().max()) < 1e-4


def test_bf16_step_splits_like_one_micro_batch() -> None:
    def gradient(budget: int) -> dict[str, torch.Tensor]:
        model, tokenizer = load_policy(BASE_MODEL, device="cuda")
        settings = StepSettings(budget, 16, 1.0, PolicyObjective(), Precision.BF16, True)
        trainer = GradientRecorder(model, lr=1e-4, settings=settings, spec=SamplingSpec(0.7, 1.0), pad_id=0)
        trainer.step(rl_rows(len(tokenizer)), Phase.RL)
        return trainer.gradient

    whole, split = gradient(10_000), gradient(72)
    worst = max(float((whole[k] - split[k]).abs().max()) for k in whole)
    assert worst < 1e-3, worst  # bf16 autocast: rounding depends on the micro-batch shapes


def test_vllm_engine_on_gpu_matches_a_transformers_forward() -> None:
    from actors.settings import VLLMSettings
    from actors.vllm_engine import VLLMEngine
    from tests.engine_helpers import kv_prompts, max_diff

    model, tokenizer = load_policy(BASE_MODEL, device="cuda")
    engine = VLLMEngine(str(BASE_MODEL), tokenizer, VLLMSettings(gpu_memory_utilization=0.3), dtype="float32")
    try:
        prompts = kv_prompts(tokenizer)
        groups = engine.generate(prompts, n=4, temperature=0.7, top_p=1.0, max_new_tokens=6)
        assert max_diff(model.cpu(), prompts, groups, SamplingSpec(0.7, 1.0)) < 1e-3
    finally:
        engine.close()


def test_liger_head_kernel_matches_the_chunked_head() -> None:
    """Log-probs and their gradients through liger's fused linear cross-entropy equal the
    chunked path's (top_p = 1, temperature applied by scaling the hidden states)."""
    from actors.learner.config import HeadKernel

    torch.manual_seed(0)
    head = torch.nn.Linear(64, 151_936, bias=False).cuda()
    ids = torch.randint(151_936, (2, 300), device="cuda")
    mask = torch.zeros(2, 300, device="cuda")
    mask[:, 100:] = 1
    spec = SamplingSpec(0.7, 1.0)
    advantages = torch.randn(2, 300, device="cuda")
    results = {}
    for kernel in (HeadKernel.CHUNKED, HeadKernel.LIGER):
        hidden = torch.randn(2, 300, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        hidden.requires_grad_(True)
        head.zero_grad()
        logp, entropy = target_logprobs(hidden, head, ids, mask, spec, chunk_tokens=64, kernel=kernel)
        (logp * advantages * mask).sum().backward()  # per-token weights, as the PPO loss has
        results[kernel] = (logp.detach(), entropy, hidden.grad.clone(), head.weight.grad.clone())
    for a, b in zip(results[HeadKernel.CHUNKED], results[HeadKernel.LIGER], strict=True):
        assert float((a - b).abs().max()) < 1e-3 * max(1.0, float(a.abs().max()))


def _qwen_sized(path: Path) -> Path:
    """A random-weight model of Qwen2.5-0.5B's shape (24 layers, hidden 896, 151,936 vocabulary)."""
    from bench.rollout import build_random_qwen2

    return build_random_qwen2(path, layers=24, hidden=896, vocab=151_936)


@pytest.mark.parametrize("which", ["smollm2", "qwen-0.5b-shaped"])
def test_vllm_cuda_takes_new_weights_over_nccl(which: str, tmp_path: Path) -> None:
    """The learner's publisher on CUDA sends a changed policy over the collective path (NCCL);
    vLLM on CUDA loads it in place, and its behaviour log-probs then match the changed model."""
    from actors.settings import Transport, VLLMSettings
    from actors.vllm_engine import VLLMEngine
    from actors.weights import WeightPublisher
    from tests.engine_helpers import REAL_MODEL, max_diff

    path = REAL_MODEL if which == "smollm2" else _qwen_sized(tmp_path / "qwen")
    model, tokenizer = load_policy(path, device="cuda")
    engine = VLLMEngine(str(path), tokenizer, VLLMSettings(gpu_memory_utilization=0.3), dtype="float32")
    publisher = WeightPublisher(
        Transport.COLLECTIVE, directory=tmp_path / "w", keep=4, dtype=None, actor="gpu-check", device="cuda"
    )
    try:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.01)
        ref = publisher.publish(1, model.state_dict())
        assert ref.startswith("nccl://"), ref
        engine.load_published(ref)
        prompts = [tokenizer("The capital of Sweden is Stockholm. The capital of Sweden is")["input_ids"]] * 2
        groups = engine.generate(prompts, n=4, temperature=0.7, top_p=1.0, max_new_tokens=8)
        assert max_diff(model.cpu(), prompts, groups, SamplingSpec(0.7, 1.0)) < 2e-3
    finally:
        publisher.close()
        engine.close()
