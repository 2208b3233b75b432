"""Learner throughput on one GPU: Longtide's trainer step vs a plain transformers forward/backward.

    .venv/bin/python bench/learner_gpu.py                       # 4K, 8K, 16K, 32K tokens
    .venv/bin/python bench/learner_gpu.py --lengths 4096 --steps 5

A Qwen2.5-0.5B-shaped model (hidden 896, 24 layers, 14 heads / 2 KV heads, 151,936 vocabulary)
with random weights trains on one sequence per step, every position after a 256-token prompt a
response token. Side by side in the same run, same model, same sequences:
- plain: `model(input_ids).logits` (the [1, L, V] table), log-softmax, token-mean loss,
  backward, AdamW; fp32 weights, as transformers gives them to a user who does nothing else;
- plain-bf16: the same under bf16 autocast, so the ratio against it shows what Longtide adds
  beyond mixed precision (the acceptance ratio is taken against this one);
- longtide: `TorchTrainer.step` with bf16 autocast (fp32 master weights), chunked log-probs and
  entropy, activation checkpointing from 16K tokens.
Prints tokens/s, peak GPU memory, MFU (6 · parameters · tokens + causal attention FLOPs over
the GPU's dense bf16 peak) and the ratio longtide / plain; "OOM" where a side does not fit.
Needs CUDA; on a machine without it, says so and exits 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from actors.learner.config import LearnerConfig, Precision
from actors.learner.logprobs import full_logprobs
from actors.learner.microbatch import TokenBatch, TrainRow, pad_rows
from actors.learner.trainer import Phase, TorchTrainer
from actors.sampling import SamplingSpec

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
SPEC = SamplingSpec(1.0, 1.0)
PROMPT = 256


def qwen25_05b() -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=151_936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32_768 + 1,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).cuda()


def flops(params: int, layers: int, hidden: int, tokens: int) -> float:
    """Training FLOPs of one sequence: 6·N·L plus causal attention (QK^T and AV, fwd + bwd)."""
    return 6.0 * params * tokens + 6.0 * layers * hidden * tokens * tokens


def rows(tokens: int) -> list[TrainRow]:
    ids = tuple(torch.randint(3, 151_936, (tokens,), generator=torch.Generator().manual_seed(tokens)).tolist())
    return [TrainRow(ids, PROMPT, advantage=1.0, behaviour=tuple([-12.0] * (tokens - PROMPT)))]


def plain_step(model: Qwen2ForCausalLM, optimizer: torch.optim.Optimizer, batch, bf16: bool) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp, _ = full_logprobs(logits, batch.input_ids, SPEC)
    loss = -(logp * batch.target_mask).sum() / batch.target_mask.sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def run(side: str, tokens: int, steps: int) -> tuple[float, float]:
    """(tokens/s, peak GiB) of `steps` timed steps after one warm-up step; (nan, nan) on OOM."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        model = qwen25_05b()
        if side.startswith("plain"):
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
            batch = pad_rows(rows(tokens), pad_id=0)
            batch = TokenBatch(**{k: v.cuda() for k, v in vars(batch).items()})

            def step() -> None:
                plain_step(model, optimizer, batch, bf16=side == "plain-bf16")
        else:
            settings = LearnerConfig(
                micro_batch_tokens=tokens,
                logprob_chunk_tokens=4096,
                precision=Precision.BF16,
                activation_checkpointing=tokens >= 16_384,
            ).step_settings()
            trainer = TorchTrainer(model, lr=1e-5, settings=settings, spec=SPEC, pad_id=0)
            data = rows(tokens)

            def step() -> None:
                trainer.step(data, Phase.RL)

        step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return tokens * steps / elapsed, torch.cuda.max_memory_allocated() / 1024**3
    except torch.OutOfMemoryError:
        return float("nan"), float("nan")
    finally:
        torch.cuda.empty_cache()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="*", default=[4096, 8192, 16_384, 32_768])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/learner_gpu.py needs a CUDA GPU; none is visible here", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), float("nan"))
    probe = qwen25_05b()
    params = sum(p.numel() for p in probe.parameters())
    layers, hidden = probe.config.num_hidden_layers, probe.config.hidden_size
    del probe
    print(f"{name}; Qwen2.5-0.5B-shaped, {params / 1e6:.0f}M parameters; dense bf16 peak {peak} TFLOPS")
    for tokens in args.lengths:
        out = {}
        for side in ("plain", "plain-bf16", "longtide"):
            rate, mem = run(side, tokens, args.steps)
            mfu = rate / tokens * flops(params, layers, hidden, tokens) / (peak * 1e12)
            out[side] = rate
            shown = "OOM" if rate != rate else f"{rate:9.0f} tok/s  {mem:5.1f} GiB  MFU {100 * mfu:4.1f}%"
            print(f"  {tokens:>6} tokens  {side:<10} {shown}", flush=True)
        print(
            f"  {tokens:>6} tokens  longtide / plain-bf16 = {out['longtide'] / out['plain-bf16']:.2f}x"
            f"  (/ plain fp32 = {out['longtide'] / out['plain']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
