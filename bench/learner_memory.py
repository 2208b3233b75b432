"""Peak memory of one learner step on one long sequence with a Qwen-sized vocabulary (CPU).

    .venv/bin/python bench/learner_memory.py                 # 32K tokens, 151,936-entry vocabulary
    .venv/bin/python bench/learner_memory.py --tokens 8192

A Qwen2-shaped model with a small hidden size (so the vocabulary dominates) trains one RL step
on one sequence whose every position after a short prompt is a response token: the worst case
for the output head. Each measurement runs in a fresh process and reports its peak RSS
(`ru_maxrss`), the model, optimizer and Python included:
- chunked: the learner's `TorchTrainer` step (chunked log-probs and entropy, activation
  checkpointing), at the full length;
- full table: the same step computing logits for every position at once ([1, L, V] fp32, as a
  plain `model(...).logits` does), at lengths that fit this machine, beside the chunked step at
  the same lengths, so the ratio is measured side by side.
The full table at the full length is only computed on paper: L × V × 4 bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from actors.learner.config import LearnerConfig
from actors.learner.logprobs import full_logprobs
from actors.learner.microbatch import TrainRow, pad_rows
from actors.learner.trainer import Phase, TorchTrainer
from actors.sampling import SamplingSpec

VOCAB = 151_936
SPEC = SamplingSpec(1.0, 1.0)


def model(hidden: int, layers: int) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=65_536,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def row(tokens: int) -> TrainRow:
    ids = tuple(torch.randint(3, VOCAB, (tokens,), generator=torch.Generator().manual_seed(1)).tolist())
    prompt = 16
    return TrainRow(ids, prompt, advantage=1.0, behaviour=tuple([-12.0] * (tokens - prompt)))


def step_chunked(tokens: int, hidden: int, layers: int, chunk: int) -> None:
    settings = LearnerConfig(
        micro_batch_tokens=tokens, logprob_chunk_tokens=chunk, activation_checkpointing=True
    ).step_settings()
    TorchTrainer(model(hidden, layers), lr=1e-4, settings=settings, spec=SPEC, pad_id=0).step([row(tokens)], Phase.RL)


def step_full(tokens: int, hidden: int, layers: int) -> None:
    net = model(hidden, layers)
    net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batch = pad_rows([row(tokens)], pad_id=0)
    logits = net(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # [1, L, V]
    logp, _ = full_logprobs(logits, batch.input_ids, SPEC)
    (-(logp * batch.target_mask).sum() / batch.target_mask.sum()).backward()
    optimizer.step()


def measure(kind: str, tokens: int, hidden: int, layers: int, chunk: int) -> float:
    """Peak RSS in GB of one step in a fresh process."""
    code = (
        "import json, resource, torch; torch.set_num_threads(2); "
        "from bench.learner_memory import step_chunked, step_full; "
        f"step_{kind}({tokens}, {hidden}, {layers}{', ' + str(chunk) if kind == 'chunked' else ''}); "
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return float("nan")
    return json.loads(done.stdout.strip().splitlines()[-1]) / 1024**2  # KiB -> GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32_768)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=LearnerConfig().logprob_chunk_tokens)
    parser.add_argument("--side-by-side", type=int, nargs="*", default=[1024, 4096])
    args = parser.parse_args()
    print(
        f"Qwen2-shaped, hidden {args.hidden}, {args.layers} layers, vocabulary {VOCAB:,}, chunks of "
        f"{args.chunk} tokens; peak RSS of one RL step (process, model and optimizer included)"
    )
    for tokens in args.side_by_side:
        chunked = measure("chunked", tokens, args.hidden, args.layers, args.chunk)
        full = measure("full", tokens, args.hidden, args.layers, args.chunk)
        print(
            f"  {tokens:>6} tokens: chunked {chunked:5.2f} GiB   full table {full:5.2f} GiB   full / chunked = {full / chunked:.1f}x"
        )
    peak = measure("chunked", args.tokens, args.hidden, args.layers, args.chunk)
    table = args.tokens * VOCAB * 4 / 1024**3
    print(
        f"  {args.tokens:>6} tokens: chunked {peak:5.2f} GiB   full table alone would be {table:.1f} GiB (fp32 [1, L, V])"
    )
    print(f"target < 2 GiB at {args.tokens} tokens: {'met' if peak < 2 else 'NOT met'} ({peak:.2f} GiB)")


if __name__ == "__main__":
    main()
