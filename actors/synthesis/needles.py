"""Needle and multi-needle retrieval (RULER's NIAH family) over real documents.

A needle is one sentence, "One of the special magic numbers for amber-falcon is: 4821937.",
placed between the context's documents (never inside one) at a controlled depth. `needle`
asks for one key's number; `multi_needle` asks for 2–4 keys at once, listed in the order
asked, with as many decoy needles for other keys scattered about. Keys are adjective–noun
pairs, numbers 7 digits, both drawn from the task's seeded stream.

The independent solver reads every needle back out of the finished context with a regular
expression and must find exactly one number per asked key, equal to the gold one; a number
or key that occurs in the haystack documents themselves makes the task ambiguous, and it is
not published.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from actors.synthesis.context import SEPARATOR, assemble_parts, counter, on_target, place
from actors.synthesis.corpus import Corpus
from actors.synthesis.table_tasks import MadeTask, Skipped
from actors.tasks import ComposedTask, TaskType
from schemas import AnswerKind

ADJECTIVES = (
    "amber", "brisk", "copper", "dusky", "eager", "fallow", "gilded", "hollow", "ivory", "jaunty",
    "knotted", "lunar", "misty", "nimble", "ochre", "pale", "quiet", "russet", "silver", "tidal",
)  # fmt: skip
NOUNS = (
    "falcon", "harbor", "lantern", "meadow", "otter", "pylon", "quarry", "ridge", "sparrow", "thicket",
    "umber", "valley", "willow", "yarrow", "zephyr", "beacon", "cinder", "delta", "ember", "fjord",
)  # fmt: skip
NEEDLE = "One of the special magic numbers for {key} is: {value}."
_NEEDLE = re.compile(r"One of the special magic numbers for ([a-z]+-[a-z]+) is: (\d{7})\.")


def needle_text(key: str, value: str) -> str:
    return NEEDLE.format(key=key, value=value)


def read_needles(context: str) -> dict[str, list[str]]:
    """The solver: every key's numbers, as the context states them."""
    found: dict[str, list[str]] = {}
    for key, value in _NEEDLE.findall(context):
        found.setdefault(key, []).append(value)
    return found


def _keys(rng: random.Random, n: int) -> list[str]:
    pairs = rng.sample(range(len(ADJECTIVES) * len(NOUNS)), n)
    return [f"{ADJECTIVES[p // len(NOUNS)]}-{NOUNS[p % len(NOUNS)]}" for p in pairs]


def question_for(keys: Sequence[str]) -> str:
    if len(keys) == 1:
        return f"What is the special magic number for {keys[0]}"
    listed = ", ".join(keys[:-1]) + f" and {keys[-1]}"
    return f"What are the special magic numbers for {listed}? List them in that order, separated by commas"


def needle_task(
    corpus: Corpus,
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
    asked: int = 1,
) -> MadeTask | Skipped:
    """`asked` = 1: a needle task, its needle at `depth`; more: a multi-needle task, the first
    needle at `depth` and the others (and as many decoys) at depths drawn from the stream."""
    keys = _keys(rng, 2 * asked if asked > 1 else 1)
    values = [str(rng.randrange(1_000_000, 10_000_000)) for _ in keys]
    needles = [needle_text(k, v) for k, v in zip(keys, values, strict=True)]
    depths = [depth] + [rng.random() for _ in needles[1:]]
    fillers = corpus.fillers(rng, set())
    count = counter(count_tokens)
    sized = [(n, count(n)) for n in needles]
    needle_tokens = sum(n for _, n in sized) + len(needles) * count(SEPARATOR)
    made = assemble_parts([], corpus.sized_texts(fillers), context_tokens - needle_tokens, count, depth)
    if made is None:
        return Skipped.NO_CONTEXT
    haystack = made.text()
    if any(k in haystack or v in haystack for k, v in zip(keys, values, strict=True)):
        return Skipped.UNVERIFIED  # the documents themselves would answer or confuse
    finished = on_target(count, place(made.sized(), sized, depths), context_tokens)
    if finished is None:
        return Skipped.NO_CONTEXT
    context, tokens = finished
    stated = read_needles(context)
    if any(stated.get(k) != [v] for k, v in zip(keys[:asked], values, strict=False)):
        return Skipped.UNVERIFIED
    answer = ", ".join(values[:asked])
    task_type = TaskType.NEEDLE if asked == 1 else TaskType.MULTI_NEEDLE
    composed = ComposedTask(task_type, context, question_for(keys[:asked]), answer, (), hops=asked)
    kind = AnswerKind.TEXT if asked == 1 else AnswerKind.LIST
    return MadeTask(composed, (), None, "", float(asked), kind, tokens, tuple(needles[:asked]))
