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

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from actors.generation import TransformersEngine
from actors.learner import checkpoint, ledger
from actors.learner.checkpoint import LearnerState
from actors.learner.config import Backend, LearnerConfig
from actors.learner.evaluation import evaluate, heldout_tasks
from actors.learner.intake import Intake, with_prompts
from actors.learner.metrics import (
    CHECKPOINT_SECONDS,
    GRAD_NORM,
    HELDOUT,
    LOSS,
    STEP_SECONDS,
    STEPS,
    TOKENS,
    TOKENS_PER_SECOND,
    VERSION,
    start_series,
)
from actors.learner.microbatch import TrainRow
from actors.learner.picker import BatchPicker
from actors.learner.ranks import Leader, RankGroup
from actors.learner.replay import ReplayRange
from actors.learner.rlbatch import (
    trajectories,
)
from actors.learner.rlstep import RLStep
from actors.learner.setup import HeldoutSpec, build_trainer
from actors.learner.sft import sft_pairs, warm_up
from actors.learner.trainer import Phase
from actors.modeling import load_policy, token_counter
from actors.prompts import Prompter
from actors.sampling import SamplingSpec
from actors.weights import WeightPublisher
from schemas import PolicyVersion, ScoredRollout, Task
from streams.blobs import ClaimCheck
from streams.kafka import Message, Producer, StreamsConfig
from streams.logs import newest_of_run, read_all
from streams.metrics import Phases, stream_metrics
from streams.processor import arrow_decoder, dead_letter, describe
from streams.reader import CheckpointedReader
from streams.topics import DLQ, POLICY, SCORED, TASKS

log = logging.getLogger(__name__)


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
        self.config = config
        self.streams = streams
        self.claim = claim
        self.phases = Phases("learner", name)
        self.claim.phases = self.phases
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
        self.metrics_log = run_dir / "metrics.jsonl"
        """One JSON line per published version: its step's metrics."""
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
        ) + list(heldout.store_tasks)
        self.rule = heldout.rule
        self.memory_agent = heldout.memory_agent
        self.prompter = Prompter(self.tokenizer, heldout.prompt_format)
        self.max_new_tokens = heldout.max_new_tokens
        self.rl_update = RLStep(
            name,
            config,
            max_new_tokens=self.max_new_tokens,
            answer_tokens=self.memory_agent.answer_tokens,
            prompt_of=lambda r: self.claim.get_ids(r.prompt_ids, r.prompt_ref),
            train=lambda rows, updates: self._train(rows, Phase.RL, updates),
        )
        """One RL step on complete groups, with AEPO's state."""
        self.task_types = [str(t) for t in heldout.task_types]
        self.picker = BatchPicker(name, config, self.task_types, replay)
        self.intake = Intake(
            name,
            max_staleness=config.max_staleness,
            dynamic_sampling=config.dynamic_sampling,
            run_id=run_id,
            source_run_id=self.source_run_id,
            dedup_window=streams.dedup_window,
            informative=self.rl_update.informative,
            dead_letter=self._dead_letter,
            prepare=lambda group: with_prompts(group, self.claim.get_ids, streams.transient_retries),
        )
        self._weights_ref = ""
        """The current version's weights reference (re-announced with consumption progress)."""
        start_series(
            name, max_staleness=config.max_staleness, task_types=self.task_types, phases=[p.value for p in Phase]
        )
        for topic in (TASKS.name, SCORED.name):
            stream_metrics("learner").dead_letters.labels(name, topic)
        self.version = -1
        self.phase = "starting"
        self.rl_step = 0
        self._announced_consumed = 0
        """`groups_consumed` as the latest version announced it (the rollout gate's view)."""
        self.samples_trained = 0
        self.tokens_trained = 0
        self.history: list[dict[str, Any]] = []
        self.last_metrics: dict[str, float] = {}
        self.rl_started: float | None = None
        self.read_through: dict[tuple[str, int], int] = {}
        """After the last message read before the checkpoint resumed from (`Intake.take`)."""
        self.resumed_from: int | None = None
        """The RL step of the checkpoint this process resumed from (None: started fresh)."""
        self.done = False

    # -- evaluation and publishing ---------------------------------------------------------
    def evaluate(self, label: str, state: dict[str, torch.Tensor]) -> dict[str, float]:
        model = self._eval_model(state)
        engine = TransformersEngine(model, self.tokenizer)
        scores = evaluate(engine, self.prompter, self.heldout, self.max_new_tokens, self.memory_agent, self.rule)
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
        self._announced_consumed = self.intake.groups_consumed
        self._weights_ref = self.publisher.publish(self.version, state)
        record = PolicyVersion(
            version=self.version,
            step=self.rl_step,
            weights_ref=self._weights_ref,
            groups_consumed=self.intake.groups_consumed,
            metrics=tuple(sorted(metrics.items())),
            run_id=self.run_id,
        )
        self.producer.send_records(POLICY.name, [record]).get(timeout=30)
        VERSION.labels(self.name).set(self.version)
        with self.metrics_log.open("a") as out:  # the run's curves (`longtide report`, the ablation)
            out.write(
                json.dumps({"version": self.version, "rl_step": self.rl_step, "time": time.time(), **metrics}) + "\n"
            )
        return record

    def _dead_letter(self, message: Message, exc: Exception, stage: str = "decode") -> None:
        stream_metrics("learner").dead_letters.labels(self.name, message.topic).inc()
        group = f"{self.name}-sft" if stage == "sft" else self.name  # the consumer groups of its two loops
        record = dead_letter(message, actor=self.name, group=group, error=f"{stage}: {describe(exc, self.name)}")
        self.producer.send_records(DLQ.name, [record], key=message.key).get(timeout=30)

    def _train(self, rows: list[TrainRow], phase: Phase, updates: list[list[int]] | None = None) -> dict[str, float]:
        start = time.perf_counter()
        with self.phases("train"):
            stats = self.trainer.step(rows, phase, updates)
        elapsed = time.perf_counter() - start
        label = phase.value
        STEPS.labels(self.name, label).inc()
        STEP_SECONDS.labels(self.name, label).observe(elapsed)
        TOKENS.labels(self.name, label).inc(stats["tokens"])
        LOSS.labels(self.name, label).set(stats["loss"])
        GRAD_NORM.labels(self.name, label).set(stats["grad_norm"])
        TOKENS_PER_SECOND.labels(self.name, label).set(stats["tokens"] / max(elapsed, 1e-9))
        self.tokens_trained += int(stats["tokens"])
        return {**stats, "step_seconds": elapsed, "tokens_per_second": stats["tokens"] / max(elapsed, 1e-9)}

    # -- SFT warm-up ---------------------------------------------------------------------------
    def sft(self, stop: threading.Event) -> None:
        self.phase = "sft"
        # from the start of `tasks`, committing nothing: the step-0 checkpoint is what keeps a
        # restart from repeating the warm-up
        reader = CheckpointedReader(
            self.streams, actor=self.name, kind="learner", group_id=f"{self.name}-sft", topics=[TASKS.name]
        )
        decode = arrow_decoder(Task)

        def pairs(message: Message) -> list[tuple[str, str, bool]]:
            return [
                pair
                for task in decode(message)
                for pair in sft_pairs(
                    task,
                    self.claim.get_text(task.context, task.context_ref),
                    self.memory_agent,
                    self.count_tokens,
                    self.prompter,
                )
            ]

        warm_up(
            reader,
            steps=self.config.sft_steps,
            batch=self.config.sft_batch,
            prompter=self.prompter,
            pairs=pairs,
            train=lambda rows: self._train(rows, Phase.SFT),
            dead_letter=lambda message, exc: self._dead_letter(message, exc, "sft"),
            stop=stop,
        )
        reader.close()

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(
        self,
        state: dict[str, torch.Tensor],
        offsets: dict[tuple[str, int], int],
        waiting: frozenset[str] = frozenset(),
        read_through: dict[tuple[str, int], int] | None = None,
    ) -> Path:
        """Everything to resume from here (see `checkpoint`); returns once it is durable.

        `waiting`: ids of groups read but not yet trained (after `offsets`); they are read
        again after a restart, so they are not saved as seen. `read_through`: after the last
        message read (default: `offsets`)."""
        saved = LearnerState(
            version=self.version,
            rl_step=self.rl_step,
            groups_consumed=self.intake.groups_consumed,
            samples_trained=self.samples_trained,
            tokens_trained=self.tokens_trained,
            stale_dropped=self.intake.stale_dropped,
            staleness_hist=dict(self.intake.staleness_hist),
            offsets=LearnerState.offsets_key(offsets),
            run_id=self.run_id,
            aepo_masking=self.rl_update.masking,
            aepo_switches=self.rl_update.switches,
            uninformative_dropped=self.intake.uninformative_dropped,
            sampler_filled=self.picker.filled,
            seen_ids=self.intake.seen_ids(waiting),
            read_through=LearnerState.offsets_key(read_through or offsets),
        )
        start = time.perf_counter()
        tmp = checkpoint.begin(self.checkpoints, saved)
        self.trainer.module.save_pretrained(tmp / "model", state_dict=state)
        self.tokenizer.save_pretrained(tmp / "model")
        self.trainer.save_state(str(tmp / "trainer"))
        at = (self.rl_step, self.intake.groups_consumed)
        self.intake.write_ledger(self.ledger, at, self.checkpointed)
        final = checkpoint.commit(tmp, saved, self.config.checkpoint_keep)
        CHECKPOINT_SECONDS.labels(self.name).observe(time.perf_counter() - start)
        self.checkpointed = at
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
        self.intake.restore(saved)
        self.read_through = saved.partition_offsets(saved.read_through)
        if saved.offsets and not saved.read_through:  # an older build's checkpoint: no copies counted
            self.read_through = {part: sys.maxsize for part in saved.partition_offsets()}
        self._announced_consumed = saved.groups_consumed
        self.checkpointed = (saved.rl_step, saved.groups_consumed)
        self.samples_trained = saved.samples_trained
        self.tokens_trained = saved.tokens_trained
        self.rl_update.restore(saved.aepo_masking, saved.aepo_switches)
        self.picker.filled = saved.sampler_filled
        self.resumed_from = saved.rl_step
        log.info("%s resumed from %s (version %d, step %d)", self.name, directory, saved.version, saved.rl_step)
        return saved

    def rl(self, stop: threading.Event, resumed: LearnerState | None = None) -> None:
        self.phase = "rl"
        self.rl_started = time.monotonic()
        if resumed is None:
            self.trainer.reset_optimizer(self.config.lr)  # fresh moments: RL gradients differ in scale
        if self.config.kl_coef > 0:  # the policy RL started from: now, or the step-0 checkpoint's (never pruned)
            start = self.checkpoints / checkpoint.RL_START / "model"
            self.trainer.set_reference("" if resumed is None else str(start))
        start = resumed.partition_offsets() if resumed is not None else None  # the checkpoint says where
        if start is None and self.replay is not None and self.replay.start:
            start = dict(self.replay.start)
        reader = CheckpointedReader(
            self.streams, actor=self.name, kind="learner", group_id=self.name, topics=[SCORED.name], start=start
        )
        decode = arrow_decoder(ScoredRollout)
        covers = (lambda m: self.replay.covers((m.topic, m.partition), m.offset)) if self.replay is not None else None
        ready: list[tuple[tuple[str, int], int, list[ScoredRollout]]] = []  # (partition, offset, group)
        while not stop.is_set() and not (self.config.rl_steps and self.rl_step >= self.config.rl_steps):
            with self.phases("poll"):
                polled = reader.poll(200, keep=covers)
            for message in polled:
                read_before = message.offset < self.read_through.get((message.topic, message.partition), 0)
                with self.phases("intake"):
                    group = self.intake.take(message, decode, self.version, read_before)
                if group is not None:
                    ready.append(((message.topic, message.partition), message.offset, group))
                    self.picker.arrived()
            ready = [item for item in ready if self.intake.fresh(item[2], self.version, self.replay is not None)]
            if self.replay is None and self.intake.groups_consumed > self._announced_consumed:
                self.announce_consumed()  # dropped groups free the gate for as many new ones
            ready = self.picker.scheduled_only(ready)
            picked = self.picker.pick([group for _, _, group in ready], self.intake.replay_dropped)
            if picked is None:
                if self.replay is not None and self.replay.read_through(reader.handed):
                    break  # the recorded range is used up
                continue
            taken = [ready[i] for i in picked]
            ready = [item for i, item in enumerate(ready) if i not in set(picked)]
            state = self._train_batch([group for _, _, group in taken])
            if self.rl_step % self.config.checkpoint_every == 0:
                self._checkpoint_and_commit(reader, state, ready)
        if (self.rl_step, self.intake.groups_consumed) != self.checkpointed:  # a clean stop: save what is new
            self._checkpoint_and_commit(reader, self.trainer.full_state(), ready)
        reader.close()

    def _train_batch(self, batch: list[list[ScoredRollout]]) -> dict[str, torch.Tensor]:
        """One RL step on `batch`, then the next version published (held-out accuracy every
        `eval_every` steps); returns the new weights."""
        self.intake.trained(batch, self.version)
        with self.phases("rl_update"):
            metrics = self.rl_update(batch, self.rl_step)
        self.rl_step += 1
        self.samples_trained += sum(trajectories(g) for g in batch)
        metrics |= {
            "samples_trained": float(self.samples_trained),
            "stale_dropped": float(self.intake.stale_dropped),
            "uninformative_dropped": float(self.intake.uninformative_dropped),
            "sampler_filled": float(self.picker.filled),
            "aepo_switches": float(self.rl_update.switches),
            "staleness_mean": sum(self.version - min(r.policy_version for r in g) for g in batch) / len(batch),
        }
        with self.phases("state"):
            state = self.trainer.full_state()
        if self.rl_step % self.config.eval_every == 0:
            with self.phases("evaluate"):
                metrics |= {f"heldout_{k}": v for k, v in self.evaluate(f"rl step {self.rl_step}", state).items()}
        with self.phases("publish"):
            self.publish(metrics, state)
        self.last_metrics = metrics
        return state

    def announce_consumed(self) -> None:
        """Re-announce the current version with the groups consumed so far (dropped groups
        count), so the rollout gate lets as many new groups out without waiting for a version."""
        self._announced_consumed = self.intake.groups_consumed
        record = PolicyVersion(
            version=self.version,
            step=self.rl_step,
            weights_ref=self._weights_ref,
            groups_consumed=self.intake.groups_consumed,
            metrics=(),
            run_id=self.run_id,
        )
        self.producer.send_records(POLICY.name, [record]).get(timeout=30)

    def _checkpoint_and_commit(
        self,
        reader: CheckpointedReader,
        state: dict[str, torch.Tensor],
        ready: list[tuple[tuple[str, int], int, list[ScoredRollout]]],
    ) -> None:
        """The checkpoint holds where to read on (before every group still waiting); the
        offsets are committed only once it is durable."""
        offsets = reader.position((part, offset) for part, offset, _ in ready)
        waiting = frozenset(r.rollout_id for _, _, group in ready for r in group)
        with self.phases("checkpoint"):
            self.save_checkpoint(state, offsets, waiting, reader.handed)
            reader.durable(offsets)

    def run(self, stop: threading.Event) -> None:
        try:
            resumed = self.resume()
            if resumed is None:
                state = self.trainer.full_state()
                scores = self.evaluate("start", state)
                if self.config.sft_steps:  # without SFT the weights are the start's: no second evaluation
                    self.sft(stop)
                    state = self.trainer.full_state()
                    scores = self.evaluate("after sft", state)
                metrics = {f"heldout_{k}": v for k, v in scores.items()}
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
            "groups_consumed": self.intake.groups_consumed,
            "samples_trained": self.samples_trained,
            "tokens_trained": self.tokens_trained,
            "stale_dropped": self.intake.stale_dropped,
            "other_run_skipped": self.intake.other_run_skipped,
            "duplicate_groups": self.intake.duplicate_groups,
            "run_id": self.run_id,
            "resumed_from": self.resumed_from,
            "staleness_histogram": dict(sorted(self.intake.staleness_hist.items())),
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
