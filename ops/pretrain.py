"""Pre-training the tiny base model past the retrieval plateau, by script (`longtide build-model`).

A tiny model trained only on the demo's task mix stops at the attribute-type shortcut: it
answers "bako color ?" with *some* color from the context (about 0.64 at 32 tokens) and stays
there. Measured on 2 CPU cores (3 layers, d=128): 8,000 steps of kv retrieval, kv plus
two-hop, or kv with every fact asked about all stayed on that plateau.

What breaks it is taking the shortcut away. A *recall* example holds n facts that all share
one relation ("bako color teal . kelo color gold ."), then asks about each of them. Every
candidate answer has the right type, so the loss only falls if the model binds each subject
to its object. The committed base (`make base-model`: n in 2..3, 5,000 steps, 22 minutes on
one CPU thread) sat on the plateau until step 1,250 (recall of 4 facts: 0.49) and was past it
at step 1,500 (0.97). It generalises to 8 facts, which it never saw: 0.98 at step 3,000, drifting
to 0.91 by step 5,000. The curve is saved in `pretrain.json` beside the weights.
`task_fraction` mixes in ordinary tasks; the committed base uses none, so the demo's SFT
warm-up is what teaches it the task prompt and the end of an answer.

World seeds come from `PRETRAIN_SEED_BASE` up. They are disjoint from the demo feed's
[0, 10^6) and from held-out evaluation's (`evaluation.HELDOUT_SEED_BASE`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from actors.memory_agent import MemoryAgentConfig, gold_turns, split_chunks
from actors.modeling import build_tiny_model, build_tokenizer, load_policy, save_policy, token_counter
from actors.prompts import Prompter, PromptFormat
from actors.settings import TinyModelConfig
from actors.tasks import COMPOSERS, TaskType, compose_memory_kv, render_prompt
from actors.world import ATTRIBUTE_VALUES, RELATIONS, Fact, make_world

PRETRAIN_SEED_BASE = 2_000_000_000
IGNORE = -100


@dataclass(frozen=True)
class PretrainConfig:
    """The base model's pre-training recipe."""

    steps: int = 5000
    """Optimizer steps."""
    batch: int = 64
    """Examples per step."""
    lr: float = 1e-3
    """AdamW learning rate after a linear warm-up."""
    warmup: int = 200
    """Warm-up steps."""
    recall_max_facts: int = 3
    """Recall examples hold 2..this many same-relation facts."""
    task_fraction: float = 0.0
    """Fraction of each batch that is ordinary tasks (`task_types` at `task_contexts`)."""
    task_types: tuple[TaskType, ...] = (TaskType.KV_RETRIEVAL,)
    """Task types mixed in."""
    task_contexts: tuple[int, ...] = (8, 16, 24, 32)
    """Context lengths (tokens) of the mixed-in tasks."""
    entities_per_world: int = 8
    """Entities per pre-training world."""
    eval_every: int = 250
    """Steps between curve points."""
    seed: int = 0
    """Data seed (the model's initialisation seed is the model config's)."""
    threads: int = 0
    """torch CPU threads; 0 leaves torch's default."""

    def __post_init__(self) -> None:
        if not 2 <= self.recall_max_facts <= self.entities_per_world:
            raise ValueError(
                f"recall_max_facts ({self.recall_max_facts}) must lie in [2, entities_per_world "
                f"({self.entities_per_world})]"
            )
        if not 0 <= self.task_fraction <= 1:
            raise ValueError(f"task_fraction ({self.task_fraction}) must lie in [0, 1]")


@dataclass
class Example:
    """Token ids and labels (IGNORE where nothing is trained)."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def add(self, ids: Sequence[int], trained: bool) -> None:
        self.ids += ids
        self.labels += list(ids) if trained else [IGNORE] * len(ids)


Encode = Callable[[str], list[int]]


def recall_example(facts: Sequence[Fact], rng: random.Random, n: int, encode: Encode) -> Example:
    """n facts sharing one relation, then a question about each, answers trained.

    'kelo color gold . bako color teal . question : bako color ? answer : teal question : ...'
    """
    by_relation = {r: [f for f in facts if f.relation == r] for r in (*ATTRIBUTE_VALUES, *RELATIONS)}
    relations = [r for r, same in by_relation.items() if len(same) >= n]
    if not relations:
        raise ValueError(f"recall of {n} facts: no relation has {n} facts here")
    shown = rng.sample(by_relation[rng.choice(relations)], n)
    example = Example()
    example.add(encode(" ".join(f.sentence() for f in shown)), trained=False)
    for fact in rng.sample(shown, n):
        example.add(encode(f" question : {fact.subject} {fact.relation} ? answer :"), trained=False)
        example.add(encode(f" {fact.object}"), trained=True)
    return example


def task_example(
    facts: Sequence[Fact],
    rng: random.Random,
    task_type: TaskType,
    context_tokens: int,
    tokenizer: PreTrainedTokenizerBase,
) -> Example | None:
    """An ordinary task, encoded as the learner's SFT encodes it; None if none fits."""
    composed = COMPOSERS[task_type](facts, rng, context_tokens)
    if composed is None:
        return None
    prompt, target = Prompter(tokenizer, PromptFormat.RAW).example(
        render_prompt(composed.context, composed.question), composed.answer
    )
    example = Example()
    example.add(prompt, trained=False)
    example.add(target, trained=True)
    return example


def collate(examples: Sequence[Example], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, labels and attention mask."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        labels[i, : len(e.ids)] = torch.tensor(e.labels)
        mask[i, : len(e.ids)] = 1
    return ids, labels, mask


class Pretrainer:
    """Draws batches from fresh pre-training worlds and trains the model on them."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: PretrainConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.rng = random.Random(config.seed)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / max(1, config.warmup))
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _world_facts(self, rng: random.Random, base: int) -> tuple[Fact, ...]:
        return make_world(base + rng.randrange(10**8), self.config.entities_per_world).facts

    def example(self, rng: random.Random, base: int = PRETRAIN_SEED_BASE) -> Example:
        config = self.config
        while True:
            facts = self._world_facts(rng, base)
            if rng.random() >= config.task_fraction:
                return recall_example(facts, rng, rng.randint(2, config.recall_max_facts), self.encode)
            task_type = rng.choice(config.task_types)
            made = task_example(facts, rng, task_type, rng.choice(config.task_contexts), self.tokenizer)
            if made is not None:
                return made

    def step(self) -> float:
        ids, labels, mask = collate(
            [self.example(self.rng) for _ in range(self.config.batch)], self.tokenizer.pad_token_id
        )
        loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        return float(loss.detach())

    @torch.no_grad()
    def recall_accuracy(self, n: int, examples: int = 256) -> float:
        """Greedy per-answer accuracy on recall examples of n facts from unseen worlds."""
        rng = random.Random(12_345 + n)
        batch = [
            recall_example(self._world_facts(rng, PRETRAIN_SEED_BASE - 10**8), rng, n, self.encode)
            for _ in range(examples)
        ]
        ids, labels, mask = collate(batch, self.tokenizer.pad_token_id)
        was_training = self.model.training
        self.model.eval()
        predicted = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
        self.model.train(was_training)
        target = labels[:, 1:]
        trained = target != IGNORE
        return float(((predicted == target) & trained).sum() / trained.sum())

    def run(self, log: Callable[[dict], None] = lambda point: None) -> list[dict]:
        """Train `steps` steps; returns the curve (recall accuracy at n = 2, 4, 8 and loss)."""
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.model.train()
        curve: list[dict] = []
        start = time.monotonic()
        loss: float | None = None
        for step in range(self.config.steps + 1):
            if step % self.config.eval_every == 0 or step == self.config.steps:
                point = {
                    "step": step,
                    "seconds": round(time.monotonic() - start, 1),
                    "loss": None if loss is None else round(loss, 4),
                }
                point |= {f"recall_{n}": round(self.recall_accuracy(n), 3) for n in (2, 4, 8)}
                curve.append(point)
                log(point)
            if step < self.config.steps:
                loss = self.step()
        return curve


MEMORY_SEED_BASE = 3_000_000_000
"""Worlds of the memory warm-up (disjoint from the demo feed, held-out and pre-training worlds)."""


def memory_turn(
    tokenizer: PreTrainedTokenizerBase, agent: MemoryAgentConfig, rng: random.Random, contexts: Sequence[int]
) -> Example:
    """One random turn of a perfect reader over a fresh memory_kv task (its gold memory, or
    for the last turn its answer, trained)."""
    count = token_counter(tokenizer)
    world = make_world(MEMORY_SEED_BASE + rng.randrange(10**8), 8)
    others = [f for _ in range(2) for f in make_world(MEMORY_SEED_BASE + rng.randrange(10**8), 8).facts]
    task = compose_memory_kv(world.facts, rng, rng.choice(contexts), count, others)
    chunks = split_chunks(task.context, agent.chunk_tokens, count)
    evidence = [f.sentence() for f in task.evidence]
    turns = gold_turns(agent, task.question, chunks, evidence, task.answer)
    k = rng.randrange(len(turns))
    prompt_ids, target_ids = Prompter(tokenizer, PromptFormat.RAW).example(*turns[k], answer=k == len(turns) - 1)
    example = Example()
    example.add(prompt_ids, trained=False)
    example.add(target_ids, trained=True)
    return example


def memory_warm_up(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    agent: MemoryAgentConfig,
    steps: int,
    seed: int = 0,
    contexts: Sequence[int] = (64, 128, 256),
) -> None:
    """SFT on random turns of perfect readers (batch 64, AdamW 1e-3, as the learner's SFT): the
    memory agent's warm-up outside the service (`bench/memory_agent.py`, `make memory-model`)."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        ids, labels, mask = collate(
            [memory_turn(tokenizer, agent, rng, contexts) for _ in range(64)], tokenizer.pad_token_id
        )
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()


def write_card(path: Path, config: PretrainConfig, curve: list[dict]) -> None:
    """pretrain.json next to the weights: the recipe and the measured curve."""
    recipe = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    (path / "pretrain.json").write_text(json.dumps({"recipe": recipe, "curve": curve}, indent=1) + "\n")


def build_base(
    path: str | Path,
    model_config: TinyModelConfig,
    config: PretrainConfig,
    log: Callable[[dict], None] = lambda point: None,
) -> Path:
    """Build the tiny tokenizer and model, pre-train `config.steps` steps, save under `path`."""
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, model_config)
    curve = Pretrainer(model, tokenizer, config).run(log) if config.steps else []
    path = save_policy(path, model, tokenizer)
    write_card(path, config, curve)
    return path


def build_memory_model(base: str, path: str | Path, steps: int, seed: int, threads: int) -> Path:
    """A memory agent: `base` warmed up on perfect readers' traces (`memory_warm_up`), saved to
    `path` with its recipe card (memory_warm_up.json)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, tokenizer = load_policy(base)
    start = time.monotonic()
    memory_warm_up(model, tokenizer, MemoryAgentConfig(), steps, seed)
    saved = save_policy(path, model, tokenizer)
    recipe = {"base": base, "memory_steps": steps, "seed": seed, "threads": threads}
    card = {"recipe": recipe, "seconds": round(time.monotonic() - start, 1)}
    (saved / "memory_warm_up.json").write_text(json.dumps(card, indent=1) + "\n")
    return saved
