"""Memory agent: time per context token and accuracy at 1×, 4×, 16× and 64× the window.

The window is one chunk (`--chunk-tokens`, the context a reading turn shows). The bench first
warms the committed tiny base up on gold memory traces (`--sft-steps`, the learner's SFT
warm-up in miniature: random turns of perfect readers over memory_kv tasks of 2–8 chunks), then
reads held-out memory_kv tasks at each length greedily, all tasks of a length in one batched
turn loop, and prints seconds per context token, accuracy, and the ratio of the time per token
at 64× to that at 4× (a memory agent's cost is linear in the context: the ratio should be ~1).

    .venv/bin/python bench/memory_agent.py [--sft-steps 800] [--tasks 48] [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.generation import TransformersEngine  # noqa: E402
from actors.learner.evaluation import evaluate, heldout_tasks  # noqa: E402
from actors.memory_agent import MemoryAgentConfig, split_chunks  # noqa: E402
from actors.modeling import load_policy, token_counter  # noqa: E402
from actors.tasks import TaskType  # noqa: E402
from ops.pretrain import memory_warm_up  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ops/models/tiny-base")
    parser.add_argument("--sft-steps", type=int, default=800, help="warm-up steps on gold traces (0: none)")
    parser.add_argument("--tasks", type=int, default=48, help="held-out tasks per context length")
    parser.add_argument("--windows", default="1,4,16,64", help="context lengths, in windows")
    parser.add_argument("--chunk-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    agent = MemoryAgentConfig(chunk_tokens=args.chunk_tokens)
    model, tokenizer = load_policy(args.model)
    start = time.perf_counter()
    memory_warm_up(model, tokenizer, agent, args.sft_steps, args.seed)
    print(f"warm-up: {args.sft_steps} SFT steps on gold memory traces in {time.perf_counter() - start:.0f} s")
    engine = TransformersEngine(model, tokenizer)
    count = token_counter(tokenizer)
    windows = [int(w) for w in args.windows.split(",")]
    per_token: dict[int, float] = {}
    print(f"{'context':>10} {'tokens':>8} {'chunks':>7} {'s/ctx token':>12} {'accuracy':>9}")
    for w in windows:
        tasks = heldout_tasks(
            n=args.tasks,
            seed=args.seed,
            context_tokens=args.chunk_tokens,
            task_types=(TaskType.MEMORY_KV,),
            entities_per_world=8,
            count_tokens=count,
            memory_windows=(w,),
            chunk_tokens=args.chunk_tokens,
        )
        tokens = sum(count(t.task.context) for t in tasks)
        chunks = sum(len(split_chunks(t.task.context, args.chunk_tokens, count)) for t in tasks)
        start = time.perf_counter()
        with torch.no_grad():
            accuracy = evaluate(engine, tokenizer, tasks, 4, agent)["all"]
        per_token[w] = (time.perf_counter() - start) / tokens
        print(f"{w:>9}× {tokens // len(tasks):>8} {chunks // len(tasks):>7} {per_token[w]:>12.2e} {accuracy:>9.3f}")
    if 4 in per_token and 64 in per_token:
        print(f"time per context token, 64× ÷ 4×: {per_token[64] / per_token[4]:.2f}")


if __name__ == "__main__":
    main()
