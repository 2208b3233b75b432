"""Engine checks shared by tests: the real model's path, kv prompts for the tiny base, and the
largest gap between an engine's behaviour log-probs and a transformers forward."""

from __future__ import annotations

import torch

from actors.generation import Sample
from actors.learner.logprobs import full_logprobs
from actors.sampling import SamplingSpec
from actors.tasks import render_prompt
from tests.service import REPO

REAL_MODEL = REPO / ".longtide" / "models" / "smollm2-135m-instruct"
"""SmolLM2-135M-Instruct as `make real-model` converts it (`make test` does, before the suite)."""


def kv_prompts(tokenizer) -> list[list[int]]:
    """Four kv-retrieval questions over short contexts, rendered and tokenized by `tokenizer`."""
    contexts = [
        ("bako color teal . kelo color gold . nozu friend kelo .", "bako color"),
        ("dila shape ring . bako color teal .", "dila shape"),
        ("kelo boss nozu . nozu color gold . dila color teal .", "kelo boss color"),
        ("nozu shape cube .", "nozu shape"),
    ]
    return [tokenizer(render_prompt(c, q))["input_ids"] for c, q in contexts]


def max_diff(model, prompts: list[list[int]], groups: list[list[Sample]], spec: SamplingSpec) -> float:
    """Largest |behaviour log-prob − transformers log-prob| over every sampled token."""
    worst = 0.0
    for prompt, group in zip(prompts, groups, strict=True):
        for sample in group:
            ids = torch.tensor([prompt + sample.token_ids])
            with torch.no_grad():
                logp, _ = full_logprobs(model(input_ids=ids).logits, ids, spec)
            expected = logp[0, len(prompt) :]
            worst = max(worst, float((expected - torch.tensor(sample.logprobs)).abs().max()))
    return worst
