"""The learner on the real model (SmolLM2-135M-Instruct, `make real-model`), on CPU: tokens/s in
bf16 against fp32 side by side, and peak memory at long contexts.

    .venv/bin/python bench/real_learner.py                        # 8 × 1,024 tokens; 4K and 16K peaks
    .venv/bin/python bench/real_learner.py --rows 4 --tokens 512 --steps 2 --peaks 4096

Each measurement runs the learner's own `TorchTrainer` RL step (GRPO rows: a prompt, then 48
response tokens with an advantage and behaviour log-probs) in a fresh process with 2 threads:
- throughput: `--steps` timed steps after one warm-up step, fp32 then bf16 (autocast with fp32
  master weights, `learner.precision=bf16`; this CPU's AMX runs bf16 matrix products), the
  ratio printed last;
- peak: one step on one sequence of each `--peaks` length, bf16 with activation checkpointing
  (what a long-context config sets), as the process's peak RSS (model, optimizer included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REAL_MODEL = Path(__file__).resolve().parents[1] / ".longtide" / "models" / "smollm2-135m-instruct"
RESPONSE = 48


def run_steps(model_dir: str, precision: str, rows: int, tokens: int, steps: int, checkpointing: bool) -> dict:
    """In this process: one warm-up step, then `steps` timed RL steps; tokens/s and peak RSS."""
    import resource
    import time

    import torch
    from transformers import AutoModelForCausalLM

    from actors.learner.config import LearnerConfig, Precision
    from actors.learner.microbatch import TrainRow
    from actors.learner.trainer import Phase, TorchTrainer
    from actors.sampling import SamplingSpec

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    vocab = model.config.vocab_size
    settings = LearnerConfig(
        micro_batch_tokens=max(tokens * rows, 16384),
        precision=Precision(precision),
        activation_checkpointing=checkpointing,
    ).step_settings()
    trainer = TorchTrainer(model, lr=1e-6, settings=settings, spec=SamplingSpec(1.0, 1.0), pad_id=0)
    generator = torch.Generator().manual_seed(1)
    batch = [
        TrainRow(
            tuple(torch.randint(3, vocab, (tokens,), generator=generator).tolist()),
            tokens - RESPONSE,
            advantage=1.0 if i % 2 else -1.0,
            behaviour=tuple([-3.0] * RESPONSE),
        )
        for i in range(rows)
    ]
    trainer.step(batch, Phase.RL)  # warm-up: allocations, oneDNN kernels
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step(batch, Phase.RL)
    seconds = (time.perf_counter() - started) / max(steps, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"tokens_per_s": rows * tokens / seconds if steps else 0.0, "step_s": seconds, "peak_gib": peak}


def measure(model_dir: Path, precision: str, rows: int, tokens: int, steps: int, checkpointing: bool) -> dict:
    code = (
        "import json; from bench.real_learner import run_steps; "
        f"print(json.dumps(run_steps({str(model_dir)!r}, {precision!r}, {rows}, {tokens}, {steps}, {checkpointing})))"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REAL_MODEL)
    parser.add_argument("--rows", type=int, default=8, help="sequences per step (a GRPO group)")
    parser.add_argument("--tokens", type=int, default=1024, help="tokens per sequence, 48 of them response")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--peaks", type=int, nargs="*", default=[4096, 16384])
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        sys.exit(f"{args.model}: no model; run `make real-model` first")
    print(f"{args.model.name}: TorchTrainer RL steps, {args.rows} × {args.tokens} tokens, 2 threads")
    fp32 = measure(args.model, "fp32", args.rows, args.tokens, args.steps, False)
    bf16 = measure(args.model, "bf16", args.rows, args.tokens, args.steps, False)
    for name, got in (("fp32", fp32), ("bf16", bf16)):
        if "error" in got:
            print(f"  {name}: failed: {got['error']}")
        else:
            print(
                f"  {name}: {got['tokens_per_s']:7.0f} tokens/s  ({got['step_s']:.1f} s/step, peak {got['peak_gib']:.2f} GiB)"
            )
    for tokens in args.peaks:
        got = measure(args.model, "bf16", 1, tokens, 0, True)
        shown = f"failed: {got['error']}" if "error" in got else f"peak {got['peak_gib']:.2f} GiB"
        print(f"  one {tokens:>6}-token sequence, bf16, activation checkpointing: {shown}")
    if "error" not in fp32 and "error" not in bf16:
        print(f"learner tokens/s bf16 / fp32 = {bf16['tokens_per_s'] / fp32['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
