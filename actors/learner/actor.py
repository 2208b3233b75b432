"""Learner: SFT warm-up on gold answers from `tasks`, then GRPO on `scored`; publishes `policy`.

Phases:
1. Evaluate the starting policy on held-out worlds.
2. SFT warm-up: `sft_steps` steps of cross-entropy on (prompt, gold answer) from `tasks`.
3. Evaluate, publish version 0: rollout actors start generating.
4. RL: gather complete groups from `scored`; drop (and count) groups more than
   `max_staleness` versions old; one decoupled-PPO step on `groups_per_step` groups; publish
   the next version; commit the offsets trained through. Evaluate every `eval_every` steps.
`rl_steps = 0` keeps training for as long as the service runs.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from prometheus_client import Counter, Gauge, Histogram

from actors.generation import TransformersEngine
from actors.learner.batching import answer_example, pad_batch
from actors.learner.evaluation import evaluate, heldout_tasks
from actors.learner.grpo import (
    AdvantageNorm,
    decoupled_ppo_loss,
    group_advantages,
    informative_groups,
    token_logprobs,
)
from actors.modeling import load_policy
from actors.tasks import TaskType, render_prompt
from actors.weights import Transport, WeightPublisher
from schemas import PolicyVersion, ScoredRollout, Task
from streams.blobs import ClaimCheck
from streams.kafka import Consumer, Message, Producer, StreamsConfig
from streams.metrics import stream_metrics
from streams.processor import DedupWindow, arrow_decoder, dead_letter, describe
from streams.topics import DLQ, POLICY, SCORED, TASKS

VERSION = Gauge("longtide_learner_policy_version", "Latest published policy version.", ["actor"])
STEPS = Counter("longtide_learner_steps", "Optimizer steps (SFT and RL).", ["actor", "phase"])
SAMPLES = Counter("longtide_learner_samples_trained", "Rollouts trained on.", ["actor", "task_type"])
STALE = Counter("longtide_learner_stale_dropped", "Rollouts dropped as staler than max_staleness.", ["actor"])
STALENESS = Histogram(
    "longtide_learner_staleness_versions",
    "Versions between behaviour and learner policy.",
    ["actor"],
    buckets=(0, 1, 2, 4, 8, 16),
)
LOSS = Gauge("longtide_learner_loss", "Last training loss.", ["actor", "phase"])
REWARD = Gauge("longtide_learner_reward_mean", "Mean reward of the last batch.", ["actor", "task_type"])
HELDOUT = Gauge("longtide_learner_heldout_accuracy", "Held-out greedy accuracy.", ["actor", "task_type"])


@dataclass(frozen=True)
class LearnerConfig:
    """Training settings (defaults fit the tiny CPU demo; see ops/configs for the paper's)."""

    lr: float = 3e-4
    """RL AdamW learning rate, constant (the paper uses 2e-6 on large models). Measured on the
    untrained tiny model's SFT checkpoint: 1e-3 lowered held-out accuracy, 1e-4 left it flat;
    from the committed base, 3e-4 gives +0.19 over 500 steps (README, "Measured")."""
    sft_lr: float = 1e-3
    """SFT warm-up AdamW learning rate."""
    sft_steps: int = 50
    """SFT warm-up steps on gold answers before RL (the prompt format and the end of an answer);
    0 skips the warm-up."""
    sft_batch: int = 64
    """Examples per SFT step."""
    rl_steps: int = 500
    """RL steps before the learner stops; 0 trains for as long as the service runs."""
    groups_per_step: int = 16
    """Prompts (GRPO groups) per RL step."""
    max_staleness: int = 1
    """η: rollouts more than η versions behind are dropped; 0 is synchronous RL."""
    clip_low: float = 0.2
    """PPO clip ε_low."""
    clip_high: float = 0.28
    """PPO clip ε_high (DAPO clip-higher)."""
    behaviour_weight_cap: float = 5.0
    """Cap on the decoupled-PPO weight π_prox / π_behav."""
    advantage_norm: AdvantageNorm = AdvantageNorm.GROUP
    """How group-centred rewards are scaled."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    eval_every: int = 100
    """Held-out evaluation period in RL steps (and at each phase boundary)."""
    heldout_tasks: int = 512
    """Held-out tasks per evaluation."""
    heldout_seed: int = 0
    """Seed of the held-out worlds."""
    weights_transport: Transport = Transport.RAY
    """How rollout actors fetch weights: the Ray object store, or files (no Ray)."""
    weights_keep: int = 4
    """Versions kept for fetching."""

    def __post_init__(self) -> None:
        if self.max_staleness < 0:
            raise ValueError(f"learner.max_staleness ({self.max_staleness}) must be >= 0")
        if self.groups_per_step < 1:
            raise ValueError(f"learner.groups_per_step ({self.groups_per_step}) must be >= 1")
        if self.weights_keep < self.max_staleness + 2:
            raise ValueError(
                f"learner.weights_keep ({self.weights_keep}) must be >= max_staleness + 2 "
                f"({self.max_staleness + 2}) so rollout actors can fetch every usable version"
            )
        for name in ("lr", "sft_lr"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"learner.{name} ({getattr(self, name)}) must lie in (0, 1)")


@dataclass(frozen=True)
class HeldoutSpec:
    """What held-out evaluation composes (wired from the synthesis and rollout configs)."""

    task_types: tuple[TaskType, ...]
    context_tokens: int
    entities_per_world: int
    max_new_tokens: int


class Learner:
    def __init__(
        self,
        *,
        name: str,
        config: LearnerConfig,
        streams: StreamsConfig,
        model_path: str,
        claim: ClaimCheck,
        run_dir: Path,
        temperature: float,
        heldout: HeldoutSpec,
    ) -> None:
        self.name = name
        self.config = config
        self.streams = streams
        self.claim = claim
        self.temperature = temperature
        self.model, self.tokenizer = load_policy(model_path)
        self.pad = self.tokenizer.pad_token_id
        self.optimizer = self._adamw(config.sft_lr)
        self.publisher = WeightPublisher(
            config.weights_transport, actor_name=name, directory=run_dir / "weights", keep=config.weights_keep
        )
        self.producer = Producer(streams, client_id=name)
        self.heldout = heldout_tasks(
            n=config.heldout_tasks,
            seed=config.heldout_seed,
            context_tokens=heldout.context_tokens,
            task_types=heldout.task_types,
            entities_per_world=heldout.entities_per_world,
        )
        self.max_new_tokens = heldout.max_new_tokens
        self.version = -1
        self.phase = "starting"
        self.rl_step = 0
        self.groups_consumed = 0
        self.samples_trained = 0
        self.stale_dropped = 0
        self.staleness_hist: collections.Counter[int] = collections.Counter()
        self.history: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}
        self.rl_started: float | None = None
        self.done = False

    # -- evaluation and publishing ---------------------------------------------------------
    def evaluate(self, label: str) -> dict[str, float]:
        self.model.eval()
        scores = evaluate(
            TransformersEngine(self.model, self.tokenizer), self.tokenizer, self.heldout, self.max_new_tokens
        )
        self.model.train()
        for task_type, acc in scores.items():
            HELDOUT.labels(self.name, task_type).set(acc)
        self.history.append({"label": label, "version": self.version, "rl_step": self.rl_step, **scores})
        return scores

    def publish(self, metrics: dict[str, float]) -> PolicyVersion:
        self.version += 1
        record = PolicyVersion(
            version=self.version,
            step=self.rl_step,
            weights_ref=self.publisher.publish(self.version, self.model),
            groups_consumed=self.groups_consumed,
            metrics=tuple(sorted(metrics.items())),
        )
        self.producer.send_records(POLICY.name, [record]).get(timeout=30)
        VERSION.labels(self.name).set(self.version)
        return record

    def weights(self, version: int) -> Any:
        return self.publisher.weights(version)

    def _dead_letter(self, message: Message, exc: Exception) -> None:
        stream_metrics("learner").dead_letters.labels(self.name, message.topic).inc()
        record = dead_letter(message, actor=self.name, error=f"decode: {describe(exc)}")
        self.producer.send_records(DLQ.name, [record], key=message.key).get(timeout=30)

    # -- SFT warm-up ---------------------------------------------------------------------------
    def sft(self, stop: threading.Event) -> None:
        self.phase = "sft"
        consumer = Consumer(
            self.streams,
            group_id=f"{self.name}-sft",
            topics=[TASKS.name],
            client_id=f"{self.name}-sft",
            assign_all=True,
            max_poll_records=500,
        )
        decode = arrow_decoder(Task)
        examples: list[tuple[list[int], list[int]]] = []
        generator = torch.Generator().manual_seed(0)
        step = 0
        while step < self.config.sft_steps and not stop.is_set():
            for message in consumer.poll(100 if len(examples) >= self.config.sft_batch else 500):
                try:
                    tasks = decode(message)
                except Exception as exc:  # noqa: BLE001 - bad input becomes a dead letter
                    self._dead_letter(message, exc)
                    continue
                for task in tasks:
                    prompt = render_prompt(self.claim.get_text(task.context, task.context_ref), task.question)
                    examples.append(answer_example(self.tokenizer, prompt, task.answer))
            if len(examples) < self.config.sft_batch:
                continue
            pick = torch.randint(len(examples), (self.config.sft_batch,), generator=generator).tolist()
            batch = pad_batch([examples[i][0] for i in pick], [examples[i][1] for i in pick], self.pad)
            logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            logp = token_logprobs(logits, batch.input_ids, 1.0)
            loss = -(logp * batch.target_mask).sum() / batch.target_mask.sum()
            self._optimize(loss)
            step += 1
            STEPS.labels(self.name, "sft").inc()
            LOSS.labels(self.name, "sft").set(float(loss))
        consumer.close()

    def _adamw(self, lr: float) -> torch.optim.AdamW:
        return torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)

    def _optimize(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()

    # -- RL -------------------------------------------------------------------------------------
    def rl_update(self, groups: list[list[ScoredRollout]]) -> dict[str, float]:
        """One decoupled-PPO step on complete groups; returns batch metrics."""
        rollouts = [r for g in groups for r in g]
        task_names = sorted({r.task_type for r in rollouts})
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
        group_index = torch.tensor([i for i, g in enumerate(groups) for _ in g])
        task_index = torch.tensor([task_names.index(r.task_type) for r in rollouts])
        adv = group_advantages(rewards, group_index, task_index, self.config.advantage_norm)
        keep = informative_groups(rewards, group_index)
        metrics = {"reward_mean": float(rewards.mean()), "informative_fraction": float(keep.float().mean())}
        for name in task_names:
            mean = float(rewards[task_index == task_names.index(name)].mean())
            metrics[f"reward_{name}"] = mean
            REWARD.labels(self.name, name).set(mean)
        if keep.any():
            batch = pad_batch(
                [self.claim.get_ids(r.prompt_ids, r.prompt_ref) for r in rollouts],
                [r.response_ids for r in rollouts],
                self.pad,
                behaviour=[r.behaviour_logprobs for r in rollouts],
            )
            logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            logp = token_logprobs(logits, batch.input_ids, self.temperature)
            mask = batch.target_mask * keep.float().unsqueeze(-1)
            loss, stats = decoupled_ppo_loss(
                logp,
                logp.detach(),
                batch.behaviour_logprobs,
                adv,
                mask,
                self.config.clip_low,
                self.config.clip_high,
                self.config.behaviour_weight_cap,
            )
            self._optimize(loss)
            LOSS.labels(self.name, "rl").set(float(loss))
            metrics |= {"loss": float(loss), **stats}
        for r in rollouts:
            SAMPLES.labels(self.name, r.task_type).inc()
        return metrics

    def _fresh(self, group: list[ScoredRollout]) -> bool:
        """False (and counted as consumed and dropped) when the group is staler than η now."""
        if self.version - min(r.policy_version for r in group) <= self.config.max_staleness:
            return True
        self.groups_consumed += 1
        self.stale_dropped += len(group)
        STALE.labels(self.name).inc(len(group))
        return False

    def _record_staleness(self, batch: list[list[ScoredRollout]]) -> None:
        self.groups_consumed += len(batch)
        for group in batch:
            staleness = self.version - min(r.policy_version for r in group)
            self.staleness_hist[staleness] += len(group)
            STALENESS.labels(self.name).observe(staleness)

    def _take_group(self, message: Message, decode: Any, dedup: DedupWindow) -> list[ScoredRollout] | None:
        """A message's group, or None (dead-lettered, duplicate or incomplete)."""
        try:
            group = [r for r in decode(message) if not dedup.seen(r.rollout_id)]
            if group and len(group) != group[0].group_size:
                raise ValueError(f"group {group[0].group_id}: {len(group)} rollouts, group_size {group[0].group_size}")
        except Exception as exc:  # noqa: BLE001 - bad input becomes a dead letter
            self._dead_letter(message, exc)
            return None
        for r in group:
            dedup.add(r.rollout_id)
        return group or None

    def rl(self, stop: threading.Event) -> None:
        self.phase = "rl"
        self.rl_started = time.monotonic()
        self.optimizer = self._adamw(self.config.lr)  # fresh moments: RL gradients differ in scale
        consumer = Consumer(
            self.streams,
            group_id=self.name,
            topics=[SCORED.name],
            client_id=self.name,
            assign_all=True,
            max_poll_records=500,
        )
        decode = arrow_decoder(ScoredRollout)
        dedup = DedupWindow(self.streams.dedup_window)
        seen_through: dict[tuple[str, int], int] = {}
        ready: list[tuple[tuple[str, int], int, list[ScoredRollout]]] = []  # (partition, offset, group)
        while not stop.is_set() and not (self.config.rl_steps and self.rl_step >= self.config.rl_steps):
            for message in consumer.poll(200):
                part = (message.topic, message.partition)
                seen_through[part] = message.offset + 1
                group = self._take_group(message, decode, dedup)
                if group is not None:
                    ready.append((part, message.offset, group))
            ready = [item for item in ready if self._fresh(item[2])]
            if len(ready) < self.config.groups_per_step:
                continue
            taken, ready = ready[: self.config.groups_per_step], ready[self.config.groups_per_step :]
            batch = [group for _, _, group in taken]
            self._record_staleness(batch)
            metrics = self.rl_update(batch)
            self.rl_step += 1
            self.samples_trained += sum(len(g) for g in batch)
            STEPS.labels(self.name, "rl").inc()
            if self.rl_step % self.config.eval_every == 0:
                metrics |= {f"heldout_{k}": v for k, v in self.evaluate(f"rl step {self.rl_step}").items()}
            self.publish(metrics)
            self.last_metrics = metrics
            consumer.commit(self._trained_through(seen_through, ready))
        consumer.close()

    @staticmethod
    def _trained_through(
        seen: dict[tuple[str, int], int], waiting: list[tuple[tuple[str, int], int, Any]]
    ) -> dict[tuple[str, int], int]:
        """Per partition, the offset before which every group was trained on or dropped."""
        out = dict(seen)
        for part, offset, _ in waiting:
            out[part] = min(out[part], offset)
        return out

    def run(self, stop: threading.Event) -> None:
        torch.set_num_threads(1)
        self.model.train()
        self.evaluate("start")
        if self.config.sft_steps:
            self.sft(stop)
        metrics = {f"heldout_{k}": v for k, v in self.evaluate("after sft").items()}
        self.publish(metrics)
        self.rl(stop)
        if self.rl_step and self.rl_step % self.config.eval_every:
            self.evaluate(f"rl step {self.rl_step}")
        self.phase = "done"
        self.done = True

    def snapshot(self) -> dict[str, Any]:
        return {
            "actor": self.name,
            "phase": self.phase,
            "policy_version": self.version,
            "rl_step": self.rl_step,
            "groups_consumed": self.groups_consumed,
            "samples_trained": self.samples_trained,
            "stale_dropped": self.stale_dropped,
            "staleness_histogram": dict(sorted(self.staleness_hist.items())),
            "samples_per_second": self.samples_trained / (time.monotonic() - self.rl_started)
            if self.rl_started
            else 0.0,
            "history": list(self.history),
            "last_metrics": dict(self.last_metrics),
            "done": self.done,
        }

    def close(self) -> None:
        self.producer.close()
