"""Held-out evaluation: greedy answers to tasks the training stream never shows.

World tasks: training documents come from worlds seeded in [0, 10^6); held-out worlds are
seeded from `HELDOUT_SEED_BASE` up, so every held-out question needs reading its own context.
Store tasks (needle, multi_hop, table_numeric, ...) come composed from held-out documents
(`ops.heldout`, `synthesis.heldout_fraction`), labelled by type and context length
("needle@1024"). Every reply is scored as the reward actor scores it (`verifiers.verify`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from actors.generation import Engine
from actors.memory_agent import Job, MemoryAgentConfig, read_chunked, split_chunks
from actors.modeling import token_counter
from actors.prompts import Prompter
from actors.tasks import COMPOSERS, MEMORY_TASK_TYPES, ComposedTask, TaskType
from actors.verifiers import Rule, verify
from actors.world import make_world
from schemas import AnswerKind

HELDOUT_SEED_BASE = 1_000_000


@dataclass(frozen=True)
class Heldout:
    """A held-out task and the name its accuracy is reported under."""

    label: str
    """The task type; a memory-agent task's "memory_kv@4x" (its context in windows); a store
    task's "needle@1024" (its context in tokens)."""
    task: ComposedTask
    answer_kind: AnswerKind = AnswerKind.TEXT
    """How the reply is verified (a store task's numbers, options and lists)."""


def heldout_tasks(
    *,
    n: int,
    seed: int,
    context_tokens: int,
    task_types: Sequence[TaskType],
    entities_per_world: int,
    count_tokens: Callable[[str], int],
    memory_windows: Sequence[int] = (),
    chunk_tokens: int = 0,
) -> list[Heldout]:
    """`n` tasks, task types in turn, one fresh held-out world each (budgets in policy tokens).
    A memory-agent type takes `memory_windows` in turn: contexts of that many × `chunk_tokens`,
    padded with the facts of other held-out worlds."""
    rng = random.Random(seed)
    task_types = [t for t in task_types if t in COMPOSERS]  # table tasks: no held-out worlds yet
    if not memory_windows:
        task_types = [t for t in task_types if t not in MEMORY_TASK_TYPES]
    tasks: list[Heldout] = []
    memory_made = 0
    while task_types and len(tasks) < n:
        base = HELDOUT_SEED_BASE + seed * 100_000 + len(tasks)
        world = make_world(base, entities_per_world)
        task_type = task_types[len(tasks) % len(task_types)]
        if task_type in MEMORY_TASK_TYPES:
            windows = memory_windows[memory_made % len(memory_windows)]
            target = windows * chunk_tokens
            others = [
                f
                for k in range(1, 2 + target // (4 * len(world.facts)))
                for f in make_world(base + 50_000 + k * 1_000, entities_per_world).facts
            ]
            composed = COMPOSERS[task_type](world.facts, rng, target, count_tokens, others)
            label = f"{task_type.value}@{windows}x"
        else:
            composed = COMPOSERS[task_type](world.facts, rng, context_tokens, count_tokens)
            label = task_type.value
        if composed is not None:
            tasks.append(Heldout(label, composed))
            memory_made += task_type in MEMORY_TASK_TYPES
    return tasks


def evaluate(
    engine: Engine,
    prompter: Prompter,
    tasks: Sequence[Heldout],
    max_new_tokens: int,
    memory_agent: MemoryAgentConfig | None = None,
    rule: Rule = Rule.EXACT,
) -> dict[str, float]:
    """Greedy accuracy per label and over all ('all')."""
    scores = score_heldout(engine, prompter, tasks, max_new_tokens, memory_agent, rule)
    return {k: sum(v) / len(v) for k, v in scores.items()}


def score_heldout(
    engine: Engine,
    prompter: Prompter,
    tasks: Sequence[Heldout],
    max_new_tokens: int,
    memory_agent: MemoryAgentConfig | None = None,
    rule: Rule = Rule.EXACT,
) -> dict[str, list[float]]:
    """Every greedy reply's reward per label and over all ('all'), labels in order; memory-agent
    tasks are read chunk by chunk, as the rollout actor reads them."""
    if not tasks:
        return {}
    answers: dict[int, str] = {}
    full = [i for i, t in enumerate(tasks) if t.task.task_type not in MEMORY_TASK_TYPES]
    if full:
        asked = [tasks[i] for i in full]  # as rollouts ask: the instruction says what kind of answer
        prompts = [prompter.ids(prompter.question(h.task.context, h.task.question, h.answer_kind)) for h in asked]
        samples = engine.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
        answers |= {i: sample.text for i, [sample] in zip(full, samples, strict=True)}
    memory = [i for i, t in enumerate(tasks) if t.task.task_type in MEMORY_TASK_TYPES]
    if memory:
        config = memory_agent or MemoryAgentConfig()
        count = token_counter(engine.tokenizer)
        jobs = [
            Job(tasks[i].task.question, tuple(split_chunks(tasks[i].task.context, config.chunk_tokens, count)))
            for i in memory
        ]
        read = read_chunked(engine, jobs, config, n=1, temperature=0.0, top_p=1.0, prompter=prompter)
        answers |= {i: trajectory[-1].sample.text for i, [trajectory] in zip(memory, read, strict=True)}
    hits: dict[str, list[float]] = defaultdict(list)
    for i, held in enumerate(tasks):
        task = held.task
        score = verify(answers[i], task.answer, task.question, held.answer_kind, rule).reward
        hits[held.label].append(score)
        hits["all"].append(score)
    return dict(sorted(hits.items()))
