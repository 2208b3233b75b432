"""Rollout engines side by side: vLLM ÷ HF `generate` (Longtide's TransformersEngine) tokens/s.

    .venv/bin/python bench/rollout.py            # CPU: the tiny base and a ~48M random Qwen2
    .venv/bin/python bench/rollout.py --device cuda --large-layers 24 --large-hidden 896

Both engines get the same prompts in one call (many prompts per call, G samples per prompt),
the same sampling settings and the same thread count (vLLM's CPU worker bound to as many
cores); each is warmed up first. vLLM runs compiled (`enforce_eager=False`, as on GPUs); on
the large workload here that measured 163 tok/s against 140 eager (and 95 on one thread). Workloads:
- tiny: the committed tiny base, 64 prompts of ~40 tokens, G = 8, 4 and 64 new tokens;
- large: a random-weight Qwen2 (8 layers, hidden 512, 32K vocabulary ≈ 48M parameters),
  8 prompts of 1,000 tokens, G = 8, 64 new tokens.
- real (`--real`): SmolLM2-135M-Instruct from `make real-model`, needle tasks composed from
  the Factbook corpus through its chat template, 4 prompts of 1,024 and 2 of 4,096 tokens,
  G = 8, 64 new tokens (`.venv/bin/python bench/rollout.py --real --dtype bfloat16`).
Tokens/s counts generated tokens (responses stop at EOS or the limit). Prints one line per
workload and the ratio; > 1 means vLLM is faster.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from actors.generation import Engine, TransformersEngine
from actors.modeling import load_policy, load_policy_tokenizer, save_policy
from actors.settings import VLLMSettings
from actors.tasks import render_prompt
from actors.vllm_engine import VLLMEngine
from actors.world import make_world
from ops.config import BASE_MODEL


def build_random_qwen2(path: Path, *, layers: int, hidden: int, vocab: int, seed: int = 0) -> Path:
    """A random-weight Qwen2 and a word-level tokenizer of `vocab` entries, saved under `path`."""
    words = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {f"w{i}": i + 3 for i in range(vocab - 3)}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return save_policy(path, Qwen2ForCausalLM(config), tokenizer)


def timed(engine: Engine, prompts: list[list[int]], n: int, new: int) -> tuple[float, int]:
    """(seconds, generated tokens) of one call, after a one-prompt warm-up."""
    engine.generate(prompts[:1], n=2, temperature=1.0, top_p=1.0, max_new_tokens=2)
    start = time.perf_counter()
    groups = engine.generate(prompts, n=n, temperature=1.0, top_p=1.0, max_new_tokens=new)
    return time.perf_counter() - start, sum(len(s.token_ids) for g in groups for s in g)


def tiny_prompts(count: int) -> list[list[int]]:
    tokenizer = load_policy_tokenizer(BASE_MODEL)
    rng = random.Random(0)
    prompts = []
    for i in range(count):
        facts = make_world(10_000 + i, 8).facts
        fact = rng.choice(facts)
        context = " ".join(f.sentence() for f in rng.sample(facts, min(6, len(facts))))
        prompts.append(tokenizer(render_prompt(context, f"{fact.subject} {fact.relation}"))["input_ids"])
    return prompts


REAL_MODEL = Path(__file__).resolve().parents[1] / ".longtide" / "models" / "smollm2-135m-instruct"
FACTBOOK = Path(__file__).resolve().parents[1] / "ops" / "corpus-factbook"


def real_prompts(count: int, tokens: int) -> list[list[int]]:
    """Needle tasks of `tokens` tokens from the Factbook corpus, as SmolLM2's chat prompts."""
    from actors.modeling import token_counter
    from actors.prompts import Prompter, PromptFormat
    from actors.synthesis.config import SynthesisConfig
    from actors.tasks import TaskType
    from ops.heldout import read_documents, store_heldout

    tokenizer = load_policy_tokenizer(REAL_MODEL)
    tasks = store_heldout(
        read_documents(str(FACTBOOK)),
        synthesis=SynthesisConfig(),
        task_types=[TaskType.NEEDLE],
        lengths=(tokens,),
        per_cell=count,
        count_tokens=token_counter(tokenizer),
        everything=True,
    )
    prompter = Prompter(tokenizer, PromptFormat.CHAT)
    return [prompter.ids(prompter.question(h.task.context, h.task.question)) for h in tasks]


def compare(
    label: str, path: str, prompts: list[list[int]], n: int, new: int, device: str, dtype: str, bind: str, eager: bool
) -> float:
    model, tokenizer = load_policy(path, dtype=getattr(torch, dtype), device=device)
    hf_s, hf_tokens = timed(TransformersEngine(model, tokenizer), prompts, n, new)
    del model
    settings = VLLMSettings(cpu_kv_cache_gib=2, cpu_threads_bind=bind, enforce_eager=eager)
    vllm = VLLMEngine(path, tokenizer, settings, dtype=dtype)
    try:
        v_s, v_tokens = timed(vllm, prompts, n, new)
    finally:
        vllm.close()
    hf_rate, v_rate = hf_tokens / hf_s, v_tokens / v_s
    ratio = v_rate / hf_rate
    print(
        f"{label:<44} HF {hf_rate:8.1f} tok/s ({hf_tokens} in {hf_s:.1f} s)   "
        f"vLLM {v_rate:8.1f} tok/s ({v_tokens} in {v_s:.1f} s)   vLLM / HF = {ratio:.2f}x",
        flush=True,
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the HF side; vLLM follows its install)")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16, both engines")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the HF side")
    parser.add_argument("--large-layers", type=int, default=8)
    parser.add_argument("--large-hidden", type=int, default=512)
    parser.add_argument("--large-vocab", type=int, default=32_000)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--real", action="store_true", help="only the real model's workloads (make real-model)")
    parser.add_argument("--eager", action="store_true", help="vLLM without torch.compile (starts faster, runs slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bind = f"0-{args.threads - 1}"  # vLLM's CPU worker: the same number of threads, one per core
    ratios = {}
    if args.real:
        for count, tokens in ((4, 1024), (2, 4096)):
            prompts = real_prompts(count, tokens)
            label = f"SmolLM2-135M, {len(prompts)} x ~{len(prompts[0])} tokens, G=8, 64 new"
            ratios[label] = compare(label, str(REAL_MODEL), prompts, 8, 64, args.device, args.dtype, bind, args.eager)
        _print(ratios)
        return
    if not args.skip_tiny:
        prompts = tiny_prompts(64)
        for new in (4, 64):
            label = f"tiny base, 64 x ~{len(prompts[0])} tokens, G=8, {new} new"
            ratios[label] = compare(label, str(BASE_MODEL), prompts, 8, new, args.device, args.dtype, bind, args.eager)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_random_qwen2(
            Path(tmp) / "large", layers=args.large_layers, hidden=args.large_hidden, vocab=args.large_vocab
        )
        params = sum(p.numel() for p in load_policy(path)[0].parameters()) / 1e6
        rng = random.Random(1)
        prompts = [[rng.randrange(3, args.large_vocab) for _ in range(args.prompt_tokens)] for _ in range(8)]
        label = f"random Qwen2 {params:.0f}M, 8 x {args.prompt_tokens} tokens, G=8, 64 new"
        ratios[label] = compare(label, str(path), prompts, 8, 64, args.device, args.dtype, bind, args.eager)
    _print(ratios)


def _print(ratios: dict[str, float]) -> None:
    print("\nvLLM / HF tokens/s:")
    for label, ratio in ratios.items():
        print(f"  {ratio:6.2f}x  {label}")


if __name__ == "__main__":
    main()
