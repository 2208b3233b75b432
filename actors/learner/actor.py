"""Learner: SFT warm-up on gold answers from `tasks`, then GRPO on `scored`; publishes `policy`.

Phases:
1. Evaluate the starting policy on held-out worlds.
2. SFT warm-up: `sft_steps` steps of cross-entropy on (prompt, gold answer) from `tasks`.
3. Evaluate, publish version 0: rollout actors start generating.
4. RL: gather complete groups from `scored`; drop (and count) groups more than
   `max_staleness` versions old; one decoupled-PPO step on `groups_per_step` groups; publish
   the next version; commit the offsets trained through. Evaluate every `eval_every` steps.
`rl_steps = 0` keeps training for as long as the service runs.

This class is rank 0. With `learner.backend=deepspeed` and `ranks > 1`, the other ranks run
`RankFollower` loops and every training operation goes to all of them (`ranks.Leader`); only
rank 0 reads Kafka, evaluates, publishes weights and commits offsets.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from prometheus_client import Counter, Gauge, Histogram
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from actors.generation import TransformersEngine
from actors.learner import checkpoint, ledger
from actors.learner.batching import answer_example
from actors.learner.checkpoint import LearnerState
from actors.learner.config import LearnerConfig
from actors.learner.evaluation import evaluate, heldout_tasks
from actors.learner.grpo import group_advantages, informative_groups
from actors.learner.logprobs import HeadKernel
from actors.learner.microbatch import TrainRow
from actors.learner.ranks import Leader, RankGroup
from actors.learner.replay import ReplayRange, next_batch
from actors.learner.trainer import Backend, Objective, TorchTrainer, Trainer
from actors.memory_agent import MemoryAgentConfig, gold_turns, split_chunks
from actors.modeling import load_policy, token_counter
from actors.sampling import SamplingSpec
from actors.tasks import MEMORY_TASK_TYPES, TaskType, render_prompt
from actors.weights import WeightPublisher, newest_of_run
from schemas import PolicyVersion, ScoredRollout, Task
from streams.blobs import ClaimCheck
from streams.kafka import Consumer, Message, Producer, StreamsConfig, read_all
from streams.metrics import stream_metrics
from streams.processor import DedupWindow, arrow_decoder, dead_letter, describe
from streams.topics import DLQ, POLICY, SCORED, TASKS

log = logging.getLogger(__name__)

VERSION = Gauge("longtide_learner_policy_version", "Latest published policy version.", ["actor"])
STEPS = Counter("longtide_learner_steps", "Optimizer steps (SFT and RL).", ["actor", "phase"])
SAMPLES = Counter(
    "longtide_learner_samples_trained",
    "Trajectories trained on (a full-context rollout, or a memory-agent trajectory of many turns).",
    ["actor", "task_type"],
)
STALE = Counter("longtide_learner_stale_dropped", "Trajectories dropped as staler than max_staleness.", ["actor"])
OTHER_RUN = Counter("longtide_learner_other_run_skipped", "Trajectories of another run, skipped.", ["actor"])
STALENESS = Histogram(
    "longtide_learner_staleness_versions",
    "Versions between behaviour and learner policy.",
    ["actor"],
    buckets=(0, 1, 2, 4, 8, 16),
)
LOSS = Gauge("longtide_learner_loss", "Last training loss.", ["actor", "phase"])
REWARD = Gauge("longtide_learner_reward_mean", "Mean reward of the last batch.", ["actor", "task_type"])
HELDOUT = Gauge("longtide_learner_heldout_accuracy", "Held-out greedy accuracy.", ["actor", "task_type"])
STEP_SECONDS = Histogram(
    "longtide_learner_step_seconds",
    "Wall time of one optimizer step (forward, backward, update; all ranks).",
    ["actor", "phase"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TOKENS = Counter("longtide_learner_tokens_trained", "Target tokens trained on.", ["actor", "phase"])
GRAD_NORM = Gauge("longtide_learner_grad_norm", "Gradient norm before clipping, last step.", ["actor", "phase"])
ENTROPY = Gauge("longtide_learner_entropy", "Mean token entropy of the sampling distribution, last RL step.", ["actor"])
CHECKPOINT_SECONDS = Histogram(
    "longtide_learner_checkpoint_seconds",
    "Time to write one checkpoint (model, optimizer, state) and make it durable.",
    ["actor"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CLIP_FRACTION = Gauge("longtide_learner_clip_fraction", "Fraction of tokens whose PPO ratio was clipped.", ["actor"])


def rollout_kind(task_type: str) -> str:
    """'memory' for the task types the memory agent reads chunk by chunk, else 'full'."""
    return "memory" if task_type in MEMORY_TASK_TYPES else "full"


def trajectories(group: list[ScoredRollout]) -> int:
    """Samples of a group: its trajectories' last turns (a full-context rollout is one turn)."""
    return sum(r.final for r in group)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_trainer(
    config: LearnerConfig, model_path: str, spec: SamplingSpec, group: RankGroup | None
) -> tuple[Trainer, PreTrainedTokenizerBase]:
    """This rank's trainer (rank 0 and the followers build theirs the same way)."""
    device = resolve_device(config.device)
    if config.head_kernel is HeadKernel.LIGER and device != "cuda":
        raise ValueError("learner.head_kernel=liger needs CUDA, but no GPU is visible: set learner.head_kernel=chunked")
    model, tokenizer = load_policy(model_path, device=device)
    lr = config.sft_lr if config.sft_steps else config.lr
    common: dict[str, Any] = {
        "lr": lr,
        "settings": config.step_settings(),
        "spec": spec,
        "pad_id": tokenizer.pad_token_id,
        "group": group,
    }
    if config.backend is Backend.DEEPSPEED:
        from actors.learner.ds_trainer import DeepSpeedTrainer

        return DeepSpeedTrainer(model, zero_stage=config.zero_stage, **common), tokenizer
    return TorchTrainer(model, **common), tokenizer


@dataclass(frozen=True)
class HeldoutSpec:
    """What held-out evaluation composes (wired from the synthesis and rollout configs)."""

    task_types: tuple[TaskType, ...]
    context_tokens: int
    entities_per_world: int
    max_new_tokens: int
    memory_agent: MemoryAgentConfig = field(default_factory=MemoryAgentConfig)
    """How memory-agent tasks are read (also the SFT warm-up's gold memory traces)."""
    memory_windows: tuple[int, ...] = ()
    """Held-out memory-agent contexts, in multiples of `memory_agent.chunk_tokens`
    (`learner.heldout_memory_windows`); () evaluates no memory-agent task."""


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
        sampling: SamplingSpec,
        heldout: HeldoutSpec,
        weights_dtype: torch.dtype | None = None,
        group: RankGroup | None = None,
        run_id: str = "",
        replay: ReplayRange | None = None,
        source_run_id: str = "",
    ) -> None:
        """`run_dir` is this run's directory (checkpoints, weight files); `run_id` stamps its
        `policy` records. It trains on `scored` groups of run `source_run_id` (default: its
        own) and skips (counts) other runs'. `replay`: train on that recorded range only."""
        self.name = name
        self.run_id = run_id
        self.source_run_id = source_run_id or run_id
        self.replay = replay
        self.scheduled = 0
        """Position in the replay's schedule: groups trained or passed over."""
        self.unscheduled = 0
        """Replay: groups read that the schedule does not list (the recorded learner dropped them)."""
        self._replay_dropped: set[str] = set()
        self.config = config
        self.streams = streams
        self.claim = claim
        self.model_path = model_path
        trainer, self.tokenizer = build_trainer(config, model_path, sampling, group)
        self.trainer = Leader(trainer, group)
        self._eval_copy: PreTrainedModel | None = None
        self.publisher = WeightPublisher(
            config.weights_transport,
            directory=run_dir / "weights",
            keep=config.weights_keep,
            dtype=weights_dtype,
            actor=name,
            device=str(trainer.device.type),
        )
        self.producer = Producer(streams, client_id=name)
        self.checkpoints = run_dir / "checkpoints"
        self.checkpointed: ledger.Key | None = None
        """(rl_step, groups_consumed) of the newest checkpoint."""
        self.ledger = run_dir / ledger.LEDGER
        self.dedup = DedupWindow(streams.dedup_window)
        self._trained_ids: list[str] = []
        self._stale_ids: list[str] = []
        self._trained_groups: list[str] = []
        self._stale_groups: list[str] = []
        """Rollout ids trained on or dropped since the newest checkpoint (its ledger line)."""
        self.count_tokens = token_counter(self.tokenizer)
        self.heldout = heldout_tasks(
            n=config.heldout_tasks,
            seed=config.heldout_seed,
            context_tokens=heldout.context_tokens,
            task_types=heldout.task_types,
            entities_per_world=heldout.entities_per_world,
            count_tokens=self.count_tokens,
            memory_windows=heldout.memory_windows,
            chunk_tokens=heldout.memory_agent.chunk_tokens,
        )
        self.memory_agent = heldout.memory_agent
        self.max_new_tokens = heldout.max_new_tokens
        self.version = -1
        self.phase = "starting"
        self.rl_step = 0
        self.groups_consumed = 0
        self._announced_consumed = 0
        """`groups_consumed` as the latest version announced it (the rollout gate's view)."""
        self.samples_trained = 0
        self.tokens_trained = 0
        self.stale_dropped = 0
        self.other_run_skipped = 0
        self.staleness_hist: collections.Counter[int] = collections.Counter()
        self.history: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}
        self.rl_started: float | None = None
        self.resumed_from: int | None = None
        """The RL step of the checkpoint this process resumed from (None: started fresh)."""
        self.done = False

    # -- evaluation and publishing ---------------------------------------------------------
    def evaluate(self, label: str, state: dict[str, torch.Tensor]) -> dict[str, float]:
        model = self._eval_model(state)
        engine = TransformersEngine(model, self.tokenizer)
        scores = evaluate(engine, self.tokenizer, self.heldout, self.max_new_tokens, self.memory_agent)
        self.trainer.module.train()
        for task_type, acc in scores.items():
            HELDOUT.labels(self.name, task_type).set(acc)
        self.history.append({"label": label, "version": self.version, "rl_step": self.rl_step, **scores})
        return scores

    def _eval_model(self, state: dict[str, torch.Tensor]) -> PreTrainedModel:
        """The trained module itself; under ZeRO-3 (sharded parameters) a copy holding `state`."""
        if not (self.config.backend is Backend.DEEPSPEED and self.config.zero_stage == 3):
            return self.trainer.module
        if self._eval_copy is None:
            self._eval_copy, _ = load_policy(self.model_path, device=str(next(self.trainer.module.parameters()).device))
        self._eval_copy.load_state_dict(state)
        return self._eval_copy

    def publish(self, metrics: dict[str, float], state: dict[str, torch.Tensor]) -> PolicyVersion:
        """Announce the next version."""
        self.version += 1
        self._announced_consumed = self.groups_consumed
        record = PolicyVersion(
            version=self.version,
            step=self.rl_step,
            weights_ref=self.publisher.publish(self.version, state),
            groups_consumed=self.groups_consumed,
            metrics=tuple(sorted(metrics.items())),
            run_id=self.run_id,
        )
        self.producer.send_records(POLICY.name, [record]).get(timeout=30)
        VERSION.labels(self.name).set(self.version)
        return record

    def _dead_letter(self, message: Message, exc: Exception, stage: str = "decode") -> None:
        stream_metrics("learner").dead_letters.labels(self.name, message.topic).inc()
        record = dead_letter(message, actor=self.name, error=f"{stage}: {describe(exc)}")
        self.producer.send_records(DLQ.name, [record], key=message.key).get(timeout=30)

    def _train(self, rows: list[TrainRow], objective: Objective) -> dict[str, float]:
        start = time.perf_counter()
        stats = self.trainer.step(rows, objective)
        elapsed = time.perf_counter() - start
        phase = objective.value
        STEPS.labels(self.name, phase).inc()
        STEP_SECONDS.labels(self.name, phase).observe(elapsed)
        TOKENS.labels(self.name, phase).inc(stats["tokens"])
        LOSS.labels(self.name, phase).set(stats["loss"])
        GRAD_NORM.labels(self.name, phase).set(stats["grad_norm"])
        self.tokens_trained += int(stats["tokens"])
        return {**stats, "step_seconds": elapsed, "tokens_per_second": stats["tokens"] / max(elapsed, 1e-9)}

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
        examples: list[TrainRow] = []
        generator = torch.Generator().manual_seed(0)
        step = 0
        while step < self.config.sft_steps and not stop.is_set():
            for message in consumer.poll(100 if len(examples) >= self.config.sft_batch else 500):
                try:
                    pairs = [pair for task in decode(message) for pair in self._sft_pairs(task)]
                except Exception as exc:  # noqa: BLE001 - bad input becomes a dead letter
                    self._dead_letter(message, exc, "sft")
                    continue
                for prompt, answer in pairs:
                    prompt_ids, target = answer_example(self.tokenizer, prompt, answer)
                    examples.append(TrainRow(tuple(prompt_ids) + tuple(target), len(prompt_ids)))
            if len(examples) < self.config.sft_batch:
                continue
            pick = torch.randint(len(examples), (self.config.sft_batch,), generator=generator).tolist()
            self._train([examples[i] for i in pick], Objective.SFT)
            step += 1
        consumer.close()

    def _sft_pairs(self, task: Task) -> list[tuple[str, str]]:
        """(prompt, target) pairs of a task: its question and answer, or for a memory-agent
        task a perfect reader's every turn (gold memories from the task's evidence)."""
        context = self.claim.get_text(task.context, task.context_ref)
        if task.task_type not in MEMORY_TASK_TYPES:
            return [(render_prompt(context, task.question), task.answer)]
        chunks = split_chunks(context, self.memory_agent.chunk_tokens, self.count_tokens)
        if not task.evidence:  # gold memories come from the evidence: none would teach forgetting
            raise ValueError(f"memory task {task.task_id}: no evidence spans to build gold memories from")
        return gold_turns(self.memory_agent, task.question, chunks, task.evidence, task.answer)

    # -- RL -------------------------------------------------------------------------------------
    def rl_update(self, groups: list[list[ScoredRollout]]) -> dict[str, float]:
        """One decoupled-PPO step on complete groups; returns batch metrics.

        Advantages are computed over trajectories (one reward each: a full-context rollout, or
        a memory-agent trajectory whose every turn carries its answer's reward), then given to
        every turn of the trajectory; each turn is its own training row (MemAgent's
        multi-conversation GRPO)."""
        finals = [(i, r) for i, g in enumerate(groups) for r in g if r.final]
        task_names = sorted({r.task_type for _, r in finals})
        rewards = torch.tensor([r.reward for _, r in finals], dtype=torch.float32)
        group_index = torch.tensor([i for i, _ in finals])
        task_index = torch.tensor([task_names.index(r.task_type) for _, r in finals])
        adv = group_advantages(rewards, group_index, task_index, self.config.advantage_norm)
        keep = informative_groups(rewards, group_index)
        metrics = {"reward_mean": float(rewards.mean()), "informative_fraction": float(keep.float().mean())}
        for name in task_names:
            mean = float(rewards[task_index == task_names.index(name)].mean())
            metrics[f"reward_{name}"] = mean
            REWARD.labels(self.name, name).set(mean)
        trajectory = {
            (i, r.sample_index): (a, k) for (i, r), a, k in zip(finals, adv.tolist(), keep.tolist(), strict=True)
        }
        rows = []
        for i, group in enumerate(groups):
            for r in group:
                a, k = trajectory[(i, r.sample_index)]
                if k:  # uninformative groups carry no signal and are left out of the token count
                    prompt = self.claim.get_ids(r.prompt_ids, r.prompt_ref)
                    rows.append(TrainRow(tuple(prompt) + tuple(r.response_ids), len(prompt), a, r.behaviour_logprobs))
        if rows:
            stats = self._train(rows, Objective.RL)
            ENTROPY.labels(self.name).set(stats["entropy"])
            CLIP_FRACTION.labels(self.name).set(stats["clip_fraction"])
            metrics |= stats
        for _, r in finals:
            SAMPLES.labels(self.name, r.task_type).inc()
        return metrics

    def _fresh(self, group: list[ScoredRollout]) -> bool:
        """False (and counted as consumed and dropped) when the group is staler than η now."""
        if self.version - min(r.policy_version for r in group) <= self.config.max_staleness:
            return True
        self.groups_consumed += 1
        self.stale_dropped += trajectories(group)
        self._stale_ids += [r.rollout_id for r in group]
        self._stale_groups.append(group[0].group_id)
        if self.replay is not None:
            self._replay_dropped.add(group[0].group_id)
        STALE.labels(self.name).inc(trajectories(group))
        return False

    def _record_staleness(self, batch: list[list[ScoredRollout]]) -> None:
        self.groups_consumed += len(batch)
        for group in batch:
            staleness = self.version - min(r.policy_version for r in group)
            self.staleness_hist[staleness] += trajectories(group)
            STALENESS.labels(self.name).observe(staleness)

    def _check_group(self, group: list[ScoredRollout]) -> None:
        """What a schema cannot check: a whole group, of a known task type, from a version
        this learner has published (raises ValueError naming the problem)."""
        head = group[0]
        turns = {r.sample_index: r.turns for r in group}
        if sorted(turns) != list(range(head.group_size)):
            raise ValueError(
                f"group {head.group_id}: samples {sorted(turns)[:8]} are not 0..{head.group_size - 1} (group_size)"
            )
        seen = sorted((r.sample_index, r.turn_index) for r in group)
        if seen != [(i, t) for i in range(head.group_size) for t in range(turns[i])] or len(set(turns.values())) > 1:
            raise ValueError(
                f"group {head.group_id}: trajectories incomplete or of different lengths ({len(group)} rows)"
            )
        if head.task_type not in set(TaskType):
            raise ValueError(f"group {head.group_id}: unknown task_type {head.task_type!r}")
        newest = max(r.policy_version for r in group)
        if head.run_id == self.run_id and newest > self.version:
            raise ValueError(
                f"group {head.group_id}: policy_version {newest} is newer than the learner's {self.version}"
            )

    def _take_group(self, message: Message, decode: Any) -> list[ScoredRollout] | None:
        """A message's group, or None (dead-lettered, duplicate or incomplete)."""
        dedup = self.dedup
        try:
            group = decode(message)
            if group and group[0].run_id != self.source_run_id:  # another run's group on a reused broker
                OTHER_RUN.labels(self.name).inc(trajectories(group))  # (ids are content hashes: a run
                self.other_run_skipped += trajectories(group)  # that fed the same corpus has the same ones)
                return None
            group = [r for r in group if not dedup.seen(r.rollout_id)]
            if group:
                self._check_group(group)
        except Exception as exc:  # noqa: BLE001 - bad input becomes a dead letter
            self._dead_letter(message, exc)
            return None
        for r in group:
            dedup.add(r.rollout_id)
        return group or None

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(
        self, state: dict[str, torch.Tensor], offsets: dict[tuple[str, int], int], waiting: frozenset[str] = frozenset()
    ) -> Path:
        """Everything to resume from here (see `checkpoint`); returns once it is durable.

        `waiting`: ids of groups read but not yet trained (after `offsets`); they are read
        again after a restart, so they are not saved as seen."""
        saved = LearnerState(
            version=self.version,
            rl_step=self.rl_step,
            groups_consumed=self.groups_consumed,
            samples_trained=self.samples_trained,
            tokens_trained=self.tokens_trained,
            stale_dropped=self.stale_dropped,
            staleness_hist=dict(self.staleness_hist),
            offsets=LearnerState.offsets_key(offsets),
            run_id=self.run_id,
            seen_ids=[i for i in self.dedup.ids() if i not in waiting],
        )
        start = time.perf_counter()
        tmp = checkpoint.begin(self.checkpoints, saved)
        self.trainer.module.save_pretrained(tmp / "model", state_dict=state)
        self.tokenizer.save_pretrained(tmp / "model")
        self.trainer.save_state(str(tmp / "trainer"))
        at = (self.rl_step, self.groups_consumed)
        ledger.append(
            self.ledger,
            at=at,
            since=self.checkpointed,
            trained=self._trained_ids,
            stale=self._stale_ids,
            groups=self._trained_groups,
            stale_groups=self._stale_groups,
        )
        final = checkpoint.commit(tmp, saved, self.config.checkpoint_keep)
        CHECKPOINT_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        self.checkpointed = at
        self._trained_ids, self._stale_ids, self._trained_groups, self._stale_groups = [], [], [], []
        return final

    def _newest_announced(self) -> int:
        """The highest version this run has announced on `policy` (−1 if none)."""
        newest, _ = newest_of_run(read_all(self.streams, POLICY.name, idle_ms=500), self.run_id)
        return -1 if newest is None else newest.version

    def resume(self) -> LearnerState | None:
        """Load the newest usable checkpoint, if any: weights, optimizer, RNG and counters."""
        found = checkpoint.latest(self.checkpoints)
        if found is None:
            return None
        directory, saved = found
        self.trainer.load_state(str(directory / "trainer"), str(directory / "model"))
        self.version = saved.version
        self.rl_step = saved.rl_step
        self.groups_consumed = saved.groups_consumed
        self._announced_consumed = saved.groups_consumed
        self.checkpointed = (saved.rl_step, saved.groups_consumed)
        self.samples_trained = saved.samples_trained
        self.tokens_trained = saved.tokens_trained
        self.stale_dropped = saved.stale_dropped
        self.staleness_hist = collections.Counter(saved.staleness_hist)
        for rollout_id in saved.seen_ids:
            self.dedup.add(rollout_id)
        self.resumed_from = saved.rl_step
        log.info("%s resumed from %s (version %d, step %d)", self.name, directory, saved.version, saved.rl_step)
        return saved

    def rl(self, stop: threading.Event, resumed: LearnerState | None = None) -> None:
        self.phase = "rl"
        self.rl_started = time.monotonic()
        if resumed is None:
            self.trainer.reset_optimizer(self.config.lr)  # fresh moments: RL gradients differ in scale
        consumer = Consumer(
            self.streams,
            group_id=self.name,
            topics=[SCORED.name],
            client_id=self.name,
            assign_all=True,
            max_poll_records=500,
        )
        decode = arrow_decoder(ScoredRollout)
        seen_through: dict[tuple[str, int], int] = {}
        if resumed is not None:
            seen_through = resumed.partition_offsets()
            consumer.seek(seen_through)  # the checkpoint, not Kafka's committed offsets, says where
        elif self.replay is not None and self.replay.start:
            consumer.seek(self.replay.start)
        ready: list[tuple[tuple[str, int], int, list[ScoredRollout]]] = []  # (partition, offset, group)
        while not stop.is_set() and not (self.config.rl_steps and self.rl_step >= self.config.rl_steps):
            for message in consumer.poll(200):
                part = (message.topic, message.partition)
                if self.replay is not None and not self.replay.covers(part, message.offset):
                    continue
                seen_through[part] = message.offset + 1
                group = self._take_group(message, decode)
                if group is not None:
                    ready.append((part, message.offset, group))
            ready = [item for item in ready if self._fresh(item[2])]
            schedule = self.replay.schedule if self.replay is not None else None
            if schedule is not None:
                ready = self._scheduled_only(ready)
            found = next_batch(
                [g[0].group_id for _, _, g in ready],
                self.config.groups_per_step,
                schedule,
                self.scheduled,
                self._replay_dropped,
                [rollout_kind(g[0].task_type) for _, _, g in ready] if self.config.batch_by_rollout_kind else None,
                stalled=self.groups_consumed > self._announced_consumed,
            )
            if found is None:
                if self.replay is not None and self.replay.read_through(seen_through):
                    break  # the recorded range is used up
                continue
            picked, self.scheduled = found
            taken = [ready[i] for i in picked]
            ready = [item for i, item in enumerate(ready) if i not in set(picked)]
            batch = [group for _, _, group in taken]
            self._record_staleness(batch)
            metrics = self.rl_update(batch)
            self.rl_step += 1
            self.samples_trained += sum(trajectories(g) for g in batch)
            self._trained_ids += [r.rollout_id for g in batch for r in g]
            self._trained_groups += [g[0].group_id for g in batch]
            state = self.trainer.full_state()
            if self.rl_step % self.config.eval_every == 0:
                metrics |= {f"heldout_{k}": v for k, v in self.evaluate(f"rl step {self.rl_step}", state).items()}
            self.publish(metrics, state)
            self.last_metrics = metrics
            if self.rl_step % self.config.checkpoint_every == 0:
                self._checkpoint_and_commit(consumer, state, seen_through, ready)
        if (self.rl_step, self.groups_consumed) != self.checkpointed:  # a clean stop: save what is new
            self._checkpoint_and_commit(consumer, self.trainer.full_state(), seen_through, ready)
        consumer.close()

    def _scheduled_only(self, ready: list[Any]) -> list[Any]:
        """Replay in recorded order: drop (count) groups the schedule does not list."""
        listed = self.replay.listed if self.replay is not None else frozenset()
        kept = [item for item in ready if item[2][0].group_id in listed]
        self.unscheduled += len(ready) - len(kept)
        return kept

    def _checkpoint_and_commit(
        self,
        consumer: Consumer,
        state: dict[str, torch.Tensor],
        seen_through: dict[tuple[str, int], int],
        ready: list[tuple[tuple[str, int], int, list[ScoredRollout]]],
    ) -> None:
        """Offsets are committed only once the checkpoint that covers them is durable."""
        offsets = self._trained_through(seen_through, ready)
        waiting = frozenset(r.rollout_id for _, _, group in ready for r in group)
        self.save_checkpoint(state, offsets, waiting)
        consumer.commit(offsets)

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
        try:
            resumed = self.resume()
            if resumed is None:
                self.evaluate("start", self.trainer.full_state())
                if self.config.sft_steps:
                    self.sft(stop)
                state = self.trainer.full_state()
                metrics = {f"heldout_{k}": v for k, v in self.evaluate("after sft", state).items()}
                self.publish(metrics, state)
                self.save_checkpoint(state, {})  # step 0: a restart never repeats SFT
            else:
                # versions this run announced after the checkpoint were lost with the crash; the
                # restored weights get a version above all of them, so rollout actors load them
                # and groups made by a lost version are ordinary (older) off-policy samples
                self.version = max(self.version, self._newest_announced())
                self.publish({}, self.trainer.full_state())
            self.rl(stop, resumed)
            if self.rl_step and self.rl_step % self.config.eval_every:
                self.evaluate(f"rl step {self.rl_step}", self.trainer.full_state())
        finally:
            self.trainer.stop()  # release the other ranks, also when this loop fails
        self.phase = "done"
        self.done = True

    def snapshot(self) -> dict[str, Any]:
        return {
            "actor": self.name,
            "backend": f"{self.config.backend.value} x {self.config.ranks}",
            "phase": self.phase,
            "policy_version": self.version,
            "rl_step": self.rl_step,
            "groups_consumed": self.groups_consumed,
            "samples_trained": self.samples_trained,
            "tokens_trained": self.tokens_trained,
            "stale_dropped": self.stale_dropped,
            "other_run_skipped": self.other_run_skipped,
            "run_id": self.run_id,
            "resumed_from": self.resumed_from,
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
        self.publisher.close()
        if self.trainer.group is not None:
            self.trainer.group.close()
