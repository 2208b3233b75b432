"""Policy models: a tiny Qwen2-style model and word-level tokenizer built locally, or any HF path.

Nothing is downloaded: `build_tiny_policy` trains a `tokenizers` WordLevel tokenizer on the
synthetic world's lexicon and initialises a few-layer `Qwen2ForCausalLM` from a config. Both
are saved with `save_pretrained`, so every engine loads them through the same
`AutoTokenizer` / `AutoModelForCausalLM` path it would use for a real checkpoint.
"""

from __future__ import annotations

import json
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

from actors.settings import TinyModelConfig, check_dtype
from actors.tokens import TokenCounter
from actors.world import LEXICON

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


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


def token_counter(tokenizer: PreTrainedTokenizerBase) -> TokenCounter:
    """The counter of a loaded transformers tokenizer (an engine's, the learner's)."""
    return TokenCounter(tokenizer)


def torch_dtype(name: str) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' (`DTYPE_NAMES`) -> the torch dtype, with an error naming the choices."""
    return getattr(torch, check_dtype(name))


def load_policy(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local directory or a hub id."""
    tokenizer = load_policy_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
    return model, tokenizer
