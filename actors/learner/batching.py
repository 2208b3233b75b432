"""Supervised examples: the prompt's ids and the trained target (answer, then EOS)."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def answer_example(tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """A supervised example: the prompt's ids, and the trained target (the answer, then EOS)."""
    target = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"], [*target, tokenizer.eos_token_id]
