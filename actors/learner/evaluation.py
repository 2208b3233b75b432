"""Held-out evaluation: greedy answers to tasks from worlds the training stream never shows.

Training documents come from worlds seeded in [0, 10^6); held-out worlds are seeded from
`HELDOUT_SEED_BASE` up, so every held-out question needs reading its own context.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from actors.generation import Engine
from actors.tasks import COMPOSERS, ComposedTask, TaskType, render_prompt
from actors.verifiers import exact_match, extract_answer
from actors.world import make_world

HELDOUT_SEED_BASE = 1_000_000


def heldout_tasks(
    *,
    n: int,
    seed: int,
    context_tokens: int,
    task_types: Sequence[TaskType],
    entities_per_world: int,
    count_tokens: Callable[[str], int],
) -> list[ComposedTask]:
    """`n` tasks, task types in turn, one fresh held-out world each (budgets in policy tokens)."""
    rng = random.Random(seed)
    task_types = [t for t in task_types if t in COMPOSERS]  # table tasks: no held-out worlds yet
    tasks: list[ComposedTask] = []
    while task_types and len(tasks) < n:
        world = make_world(HELDOUT_SEED_BASE + seed * 100_000 + len(tasks), entities_per_world)
        composed = COMPOSERS[task_types[len(tasks) % len(task_types)]](world.facts, rng, context_tokens, count_tokens)
        if composed is not None:
            tasks.append(composed)
    return tasks


def evaluate(engine: Engine, tokenize: object, tasks: Sequence[ComposedTask], max_new_tokens: int) -> dict[str, float]:
    """Greedy exact-match accuracy per task type and over all ('all')."""
    if not tasks:
        return {}  # no held-out task types (the store's are not evaluated yet)
    prompts = [tokenize(render_prompt(t.context, t.question))["input_ids"] for t in tasks]
    samples = engine.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    hits: dict[str, list[float]] = defaultdict(list)
    for task, [sample] in zip(tasks, samples, strict=True):
        score = exact_match(extract_answer(sample.text), task.answer)
        hits[task.task_type.value].append(score)
        hits["all"].append(score)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}
