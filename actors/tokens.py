"""Counting policy tokens: every budget (ingest's `n_tokens`, synthesis's ±2% contexts, memory
chunks) is in the configured policy's tokens. Counting needs only the tokenizer, so the actors
that count without running a model (ingest, synthesis) load the fast tokenizer's
`tokenizer.json` with `tokenizers` alone: no torch or transformers in their processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer


class TokenCounter:
    """Tokens of texts under the policy's tokenizer, no special tokens: a transformers tokenizer,
    or a `tokenizers.Tokenizer` (the same fast tokenizer without transformers around it)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._raw = isinstance(tokenizer, Tokenizer)
        if self._raw:  # transformers turns these off for an unpadded, untruncated call
            tokenizer.no_truncation()
            tokenizer.no_padding()

    def __call__(self, text: str) -> int:
        if self._raw:
            return len(self.tokenizer.encode(text, add_special_tokens=False).ids)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def many(self, texts: list[str]) -> list[int]:
        """The counts of `texts` in one batched call (a call's overhead outweighs a short text)."""
        if not texts:
            return []
        if self._raw:
            return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def load_token_counter(model_path: str | Path) -> TokenCounter:
    """The policy's token counter: from its `tokenizer.json` when it has one (no torch), else
    through transformers (a slow tokenizer, or a hub id)."""
    found = Path(model_path) / "tokenizer.json"
    if found.exists():
        return TokenCounter(Tokenizer.from_file(str(found)))
    from transformers import AutoTokenizer  # only where needed

    return TokenCounter(AutoTokenizer.from_pretrained(str(model_path)))
