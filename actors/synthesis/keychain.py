"""KeyChain (LoongRL): the real question hidden at the end of a chain of UUID keys.

Pure. A chain is `length` keys k1 → k2 → … → kL, written as lines "k_i: k_{i+1}", the last
line "kL: <question>". The real chain ends in the task's question; decoy chains (by default
4 × context/1024 of them, LoongRL's density) end in other questions over the same material,
so a model that stops following early, or follows the wrong chain, answers the wrong
question. Only the real chain's head key is given. The lines are scattered between the
context's documents in a seeded order; every chain's lines keep their order of appearance
shuffled too, so the chain must be followed by key, not by position.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


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


def _key(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_chains(question: str, decoys: Sequence[str], rng: random.Random, chains: int, length: int = 4) -> KeyChain:
    """One real chain ending in `question` and `chains` − 1 decoy chains, each ending in one of
    `decoys` (cycled), of `length` keys each."""
    if length < 1 or chains < 1:
        raise ValueError(f"a key chain needs length >= 1 and chains >= 1, got {length} and {chains}")
    if chains > 1 and not decoys:
        raise ValueError("decoy chains need decoy questions")
    lines: list[str] = []
    for c in range(chains):
        keys = [_key(rng) for _ in range(length)]
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
