"""Policy models: a tiny Qwen2-style model and word-level tokenizer built locally, or any HF path.

Nothing is downloaded: `build_tiny_policy` trains a `tokenizers` WordLevel tokenizer on the
synthetic world's lexicon and initialises a few-layer `Qwen2ForCausalLM` from a config. Both
are saved with `save_pretrained`, so every engine loads them through the same
`AutoTokenizer` / `AutoModelForCausalLM` path it would use for a real checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from actors.world import LEXICON

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the locally built policy (Qwen2 architecture, trained from scratch)."""

    hidden_size: int = 128
    """Width of the residual stream."""
    num_layers: int = 3
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (query); key/value heads are half as many (grouped-query attention)."""
    intermediate_size: int = 512
    """Width of each MLP."""
    max_positions: int = 512
    """Longest sequence (prompt + response) the model accepts."""
    seed: int = 0
    """Initialisation seed."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                f"({self.num_heads}); pick e.g. num_heads=4 for hidden_size=128"
            )
        if self.num_heads % 2:
            raise ValueError(f"num_heads ({self.num_heads}) must be even (GQA uses half)")


def build_tokenizer(words: tuple[str, ...] = LEXICON) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (split on whitespace), trained with `tokenizers`."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, EOS, UNK], min_frequency=1)
    tok.train_from_iterator([" ".join(words)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig) -> Qwen2ForCausalLM:
    """A freshly initialised Qwen2 causal LM sized by `config` for `tokenizer`'s vocabulary."""
    torch.manual_seed(config.seed)
    hf_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads // 2,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return Qwen2ForCausalLM(hf_config)


def build_tiny_policy(path: str | Path, config: TinyModelConfig | None = None) -> Path:
    """Build tokenizer + tiny model and save both under `path`; return the path."""
    tokenizer = build_tokenizer()
    return save_policy(path, build_tiny_model(tokenizer, config or TinyModelConfig()), tokenizer)


def save_policy(path: str | Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Path:
    """Save model and tokenizer under `path` (created) for `load_policy`; return the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved at `path`.

    A generic tokenizers-backed tokenizer (like the tiny word-level one) is loaded as such:
    `AutoTokenizer` would pick the model type's class (Qwen2Tokenizer) and re-tokenize with
    that class's byte-level pipeline, which silently breaks a word-level vocabulary.
    """
    config = Path(path) / "tokenizer_config.json"
    if config.is_file() and json.loads(config.read_text()).get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES:
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


def load_policy_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The policy's tokenizer, with a pad token (EOS when it has none)."""
    tokenizer = load_tokenizer(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class TokenCounter:
    """Tokens of texts under the policy's tokenizer (no special tokens): every budget in tokens."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def many(self, texts: list[str]) -> list[int]:
        """The counts of `texts` in one batched call (a call's overhead outweighs a short text)."""
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []


def token_counter(tokenizer: PreTrainedTokenizerBase) -> TokenCounter:
    return TokenCounter(tokenizer)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' -> the torch dtype, with an error naming the choices."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} must be one of {', '.join(DTYPES)}")
    return DTYPES[name]


def load_policy(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub id."""
    tokenizer = load_policy_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
    return model, tokenizer
