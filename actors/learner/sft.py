"""The SFT warm-up: cross-entropy on (prompt, gold answer) pairs read from `tasks`.

Examples accumulate as tasks arrive; each step trains on `batch` of them drawn with a fixed
seed, so a warm-up is replayable. A memory-agent task gives one example per turn: a perfect
reader's turns, with gold memories built from the task's evidence spans.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from actors.learner.microbatch import TrainRow
from actors.memory_agent import MemoryAgentConfig, gold_turns, split_chunks
from actors.prompts import Prompter
from actors.tasks import MEMORY_TASK_TYPES
from schemas import Task
from streams.kafka import Message
from streams.reader import CheckpointedReader


def sft_pairs(
    task: Task, context: str, agent: MemoryAgentConfig, count_tokens: Callable[[str], int], prompter: Prompter
) -> list[tuple[str, str, bool]]:
    """(prompt, target, whether the target is an answer) of a task: its question and answer, or
    for a memory-agent task a perfect reader's every turn (gold memories from the task's
    evidence, then the answer)."""
    if task.task_type not in MEMORY_TASK_TYPES:
        return [(prompter.question(context, task.question, task.answer_kind), task.answer, True)]
    chunks = split_chunks(context, agent.chunk_tokens, count_tokens)
    if not task.evidence:  # gold memories come from the evidence: none would teach forgetting
        raise ValueError(f"memory task {task.task_id}: no evidence spans to build gold memories from")
    turns = gold_turns(agent, task.question, chunks, task.evidence, task.answer)
    return [(prompt, target, k == len(turns) - 1) for k, (prompt, target) in enumerate(turns)]


def warm_up(
    reader: CheckpointedReader,
    *,
    steps: int,
    batch: int,
    prompter: Prompter,
    pairs: Callable[[Message], list[tuple[str, str, bool]]],
    train: Callable[[list[TrainRow]], object],
    dead_letter: Callable[[Message, Exception], None],
    stop: threading.Event,
) -> None:
    """`steps` SFT steps of `batch` examples; `pairs` turns a message into (prompt, target,
    is an answer) triples and may raise, which dead-letters the message."""
    examples: list[TrainRow] = []
    generator = torch.Generator().manual_seed(0)
    step = 0
    while step < steps and not stop.is_set():
        for message in reader.poll(100 if len(examples) >= batch else 500):
            try:
                found = pairs(message)
            except Exception as exc:  # noqa: BLE001 - bad input becomes a dead letter
                dead_letter(message, exc)
                continue
            for prompt, target_text, is_answer in found:
                prompt_ids, target = prompter.example(prompt, target_text, answer=is_answer)
                examples.append(TrainRow(tuple(prompt_ids) + tuple(target), len(prompt_ids)))
        if len(examples) < batch:
            continue
        pick = torch.randint(len(examples), (batch,), generator=generator).tolist()
        train([examples[i] for i in pick])
        step += 1
