"""KeyChain (LoongRL): the real question hidden at the end of a chain of UUID keys.

Pure. A chain is `length` keys k1 → k2 → … → kL, written as lines "k_i: k_{i+1}", the last
line "kL: <question>". The real chain ends in the task's question; decoy chains (by default
4 × context/1024 of them, LoongRL's density) end in other questions over the same material,
so a model that stops following early, or follows the wrong chain, answers the wrong
question. Only the real chain's head key is given. The lines are scattered between the
context's documents in a seeded order; every chain's lines keep their order of appearance
shuffled too, so the chain must be followed by key, not by position.

Keys are drawn without replacement from a fixed pool of `KEY_POOL` (32,768) random UUIDs, so a line's
token count is the sum of two counts that are cached across tasks (`line_pieces`): a 32K-token
context has 128 chains, 512 lines and about 12K tokens of keys, which would otherwise be
tokenized afresh for every task.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

KEY_POOL = 1 << 15
"""Keys a chain draws from (a 128K-token context uses 2,048); with their two pieces each, within
the join counter's cache (`JoinCounter.cache_limit`)."""


@dataclass(frozen=True)
class KeyChain:
    lines: tuple[str, ...]
    """Every chain's lines, real and decoy, in a shuffled order."""
    real: tuple[str, ...]
    """The real chain's lines, head first (the task's evidence)."""

    @property
    def head(self) -> str:
        """The real chain's first key: the only key the prompt gives."""
        return self.real[0].split(": ", 1)[0]


def default_chains(context_tokens: int) -> int:
    """LoongRL's density: 4 chains per 1024 tokens of context (at least 2: one real, one decoy)."""
    return max(2, 4 * context_tokens // 1024)


@functools.cache
def key_pool() -> tuple[str, ...]:
    """`KEY_POOL` random version-4 UUIDs, the same in every process."""
    rng = random.Random(0x4B455943)
    return tuple(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(KEY_POOL))


def line_pieces(line: str) -> tuple[str, str]:
    """A chain line cut where the space after its key's colon starts a new pre-token: 'k1:' and
    ' k2' (or ' <question>'); its token count is the sum of theirs under the GPT-2, Llama-3 and
    Qwen pre-tokenizers (audited with the context, `actors.synthesis.context.JoinCounter`)."""
    key, rest = line.split(": ", 1)
    return f"{key}:", f" {rest}"


def make_chains(question: str, decoys: Sequence[str], rng: random.Random, chains: int, length: int = 4) -> KeyChain:
    """One real chain ending in `question` and `chains` − 1 decoy chains, each ending in one of
    `decoys` (cycled), of `length` keys each."""
    if length < 1 or chains < 1:
        raise ValueError(f"a key chain needs length >= 1 and chains >= 1, got {length} and {chains}")
    if chains > 1 and not decoys:
        raise ValueError("decoy chains need decoy questions")
    if chains * length > KEY_POOL:
        raise ValueError(f"{chains} chains of {length} keys need more than the {KEY_POOL} keys of the pool")
    pool = key_pool()
    drawn = rng.sample(range(KEY_POOL), chains * length)
    lines: list[str] = []
    for c in range(chains):
        keys = [pool[i] for i in drawn[c * length : (c + 1) * length]]
        end = question if c == 0 else decoys[(c - 1) % len(decoys)]
        lines += [f"{a}: {b}" for a, b in zip(keys, keys[1:], strict=False)] + [f"{keys[-1]}: {end}"]
    real = tuple(lines[:length])
    rng.shuffle(lines)
    return KeyChain(tuple(lines), real)


def follow(lines: Sequence[str], head: str) -> str:
    """The solver: follow the chain from `head` to the text at its end."""
    table = {key.strip(): value.strip() for key, value in (line.split(": ", 1) for line in lines)}
    value, seen = table[head], {head}
    while value in table and value not in seen:
        seen.add(value)
        value = table[value]
    return value


def scatter(documents: Sequence[T], lines: Sequence[T], rng: random.Random) -> list[T]:
    """`lines` inserted between the context's documents (never inside one) at seeded positions."""
    parts = list(documents)
    for line in lines:
        parts.insert(rng.randint(0, len(parts)), line)
    return parts


def keychain_question(head: str) -> str:
    return (
        f"Start at key {head} and follow the chain of keys in the context; it ends in a question. Answer that question"
    )
