"""Rollout: `tasks` -> G sampled responses each -> `rollouts`, stamped with the policy version.

The engine (`rollout.engine`: vLLM where installed, else transformers) generates for up to
`prompts_per_call` tasks in one call, G samples per task sharing its prompt; each task's group
goes out as one message. Weights follow `policy`: every announcement newer than the loaded
version is fetched through the weight seam (`actors.weights`) and loaded in place between
calls, so every request of a call finishes on the weights it started with and carries that
version. No group starts before the first announcement.

Bounded staleness (AReaL's rule, counted in groups): a new group may start only while
    groups produced  <  groups consumed by the learner + (η + 1) · groups per step,
with "groups produced" read from the `rollouts` topic's end offsets (one message per group,
so it counts every rollout actor) less the messages dead-lettered from `rollouts` (they will
never be consumed), and "groups consumed" from the latest `policy` record. A call
takes at most as many tasks as the gate still allows. With η = 0 the rollout actors produce
exactly one step's groups per version: synchronous RL. With several rollout actors, each
checks before it starts, so up to (instances − 1) calls can overshoot; the learner drops and
counts those groups if they end up staler than η.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from actors.base import ProcessorActor
from actors.engines import make_engine
from actors.memory_agent import Job, MemoryAgentConfig, Turn, read_chunked, split_chunks
from actors.modeling import token_counter
from actors.prompts import Prompter, PromptFormat
from actors.rollout.config import RolloutConfig
from actors.rollout.metrics import GATE_WAIT, GENERATE, SAMPLES, TOKENS
from actors.tasks import MEMORY_TASK_TYPES
from actors.weights import PolicyFollower
from schemas import Rollout, Task
from streams.blobs import ClaimCheck
from streams.kafka import StreamsConfig
from streams.logs import LostRecords, OffsetReader
from streams.processor import Output, arrow_decoder
from streams.topics import ROLLOUTS, TASKS

log = logging.getLogger(__name__)


def gate_allowance(*, produced_groups: int, consumed_groups: int, groups_per_step: int, max_staleness: int) -> int:
    """How many more groups may start under AReaL's staleness bound (see the module docstring)."""
    return max(0, consumed_groups + (max_staleness + 1) * groups_per_step - produced_groups)


class RolloutActor(ProcessorActor):
    KIND = "rollout"

    def __init__(
        self,
        *,
        name: str,
        config: RolloutConfig,
        streams: StreamsConfig,
        model_path: str,
        claim: ClaimCheck,
        max_staleness: int,
        groups_per_step: int,
        dtype: str = "float32",
        run_id: str = "",
        rollouts_base: dict[int, int] | None = None,
        memory_agent: MemoryAgentConfig | None = None,
        task_types: Sequence[str] = (),
        prompt_format: PromptFormat = PromptFormat.AUTO,
    ) -> None:
        """`run_id`: the run this actor generates for (it follows only that run's `policy`
        records); `rollouts_base`: the `rollouts` end offsets when the run started, which the
        gate leaves out of "groups produced"; `memory_agent`: how memory-agent task types
        (`actors.tasks.MEMORY_TASK_TYPES`) are read, chunk by chunk; `task_types`: the configured
        ones, whose series start at 0."""
        self.config = config
        self.memory_agent = memory_agent or MemoryAgentConfig()
        self.run_id = run_id
        self.rollouts_base = dict(rollouts_base or {})
        for task_type in task_types:
            SAMPLES.labels(name, task_type)
        TOKENS.labels(name)
        GATE_WAIT.labels(name)
        self.claim = claim
        self.max_staleness = max_staleness
        self.groups_per_step = groups_per_step
        self.engine = make_engine(config.engine, model_path, dtype, config.vllm, config.resources.num_gpus)
        self.tokenizer = self.engine.tokenizer
        self.prompter = Prompter(self.tokenizer, prompt_format)
        self.count_tokens = token_counter(self.tokenizer)
        self.gate_waits = 0
        self.policy = PolicyFollower(kind="rollout", name=name, streams=streams, run_id=run_id, engine=self.engine)
        self.offsets = OffsetReader(streams, client_id=f"{name}-offsets")
        self.lost = LostRecords(streams, ROLLOUTS.name, base=self.rollouts_base, client_id=f"{name}-lost")
        self._connect(name=name, streams=streams, topic=TASKS.name, decoder=arrow_decoder(Task), batched=True)
        self.phases = self.processor.phases
        self.claim.phases = self.phases

    def produced_groups(self) -> int:
        """Groups on `rollouts` (one message each) since the run started, from every rollout actor,
        less those dead-lettered from it (a foreign producer's junk, a group reward could not score):
        they will never reach the learner, so they must not hold the gate's slots forever.

        Per partition, the larger of the broker's end offset and our own acknowledged offset:
        the embedded broker (Tansu) reports a batch's base offset + 1 as the end offset, which
        undercounts a multi-message batch; our acks are exact for what we wrote.
        """
        ends = self.offsets.end_offsets(ROLLOUTS.name)
        acked = {p: o for (t, p), o in self.processor.acked.items() if t == ROLLOUTS.name}
        total = sum(max(ends.get(p, 0), acked.get(p, 0)) for p in ends.keys() | acked.keys())
        return total - sum(self.rollouts_base.values()) - self.lost.count()

    def handle(self, tasks: list[Task]) -> list[Output]:
        """One engine call for the full-context tasks (G samples each) and one turn loop for the
        memory-agent tasks (G trajectories each); one message (record batch) per group."""
        version = self.policy.version  # every request of this call runs on these weights
        assert version is not None
        memory = [t for t in tasks if t.task_type in MEMORY_TASK_TYPES]
        full = [t for t in tasks if t.task_type not in MEMORY_TASK_TYPES]
        # chunk first: a context that cannot be chunked fails before anything is generated
        jobs = [
            Job(t.question, tuple(split_chunks(self._context(t), self.memory_agent.chunk_tokens, self.count_tokens)))
            for t in memory
        ]
        sampling = {"temperature": self.config.temperature, "top_p": self.config.top_p}

        def generate() -> list[Output]:
            outputs = []
            if full:
                prompts = [
                    self.prompter.ids(self.prompter.question(self._context(t), t.question, t.answer_kind)) for t in full
                ]
                groups = self.engine.generate(
                    prompts, n=self.config.group_size, max_new_tokens=self.config.max_new_tokens, **sampling
                )
                outputs += [
                    self._group(task, [[Turn(prompt, sample, True)] for sample in samples], version)
                    for task, prompt, samples in zip(full, prompts, groups, strict=True)
                ]
            if memory:
                trajectories = read_chunked(
                    self.engine, jobs, self.memory_agent, n=self.config.group_size, prompter=self.prompter, **sampling
                )
                outputs += [self._group(task, group, version) for task, group in zip(memory, trajectories, strict=True)]
            return outputs

        start = time.perf_counter()
        with self.phases("generate"):  # an engine call may outlast streams.max_poll_interval_ms
            outputs = self.keep_alive(generate)
        GENERATE.labels(self.name).observe(time.perf_counter() - start)
        return outputs

    def _context(self, task: Task) -> str:
        return self.claim.get_text(task.context, task.context_ref)

    def _group(self, task: Task, trajectories: list[list[Turn]], version: int) -> Output:
        """One message: every turn of every trajectory (one row each; a full-context rollout
        is a trajectory of one turn)."""
        rollouts = []
        for i, turns in enumerate(trajectories):
            for t, turn in enumerate(turns):
                inline, ref = self.claim.put_ids(turn.prompt_ids)
                sample = turn.sample
                rollouts.append(
                    Rollout(
                        rollout_id=f"{task.task_id}/{i}" + (f"/{t}" if len(turns) > 1 else ""),
                        task_id=task.task_id,
                        task_type=task.task_type,
                        group_id=task.task_id,
                        sample_index=i,
                        group_size=self.config.group_size,
                        policy_version=version,
                        prompt_ids=inline,
                        prompt_ref=ref,
                        response_ids=tuple(sample.token_ids),
                        behaviour_logprobs=tuple(sample.logprobs),
                        response_text=sample.text,
                        reference=task.answer,
                        answer_kind=task.answer_kind,
                        turns=len(turns),
                        turn_index=t,
                        finish_reason=sample.finish_reason,
                        run_id=self.run_id,
                        ingested_at=task.ingested_at,
                        question=task.question,
                    )
                )
        TOKENS.labels(self.name).inc(sum(len(r.response_ids) for r in rollouts))
        SAMPLES.labels(self.name, task.task_type).inc(len(trajectories))
        return Output(ROLLOUTS.name, rollouts, key=task.task_id.encode())

    def run(self, stop: threading.Event) -> None:
        torch.set_num_threads(self.config.resources.threads)
        while not stop.is_set():
            with self.phases("sync"):
                self.policy.sync(timeout_ms=100 if self.policy.version is None else 0)
            allowance = 0
            if self.policy.version is not None:
                with self.phases("gate"):
                    allowance = gate_allowance(
                        produced_groups=self.produced_groups(),
                        consumed_groups=self.policy.groups_consumed,
                        groups_per_step=self.groups_per_step,
                        max_staleness=self.max_staleness,
                    )
            if allowance:
                self.processor.consumer.resume()
                self.processor.step(timeout_ms=100, max_records=min(allowance, self.config.prompts_per_call))
            else:
                start = time.perf_counter()
                self.gate_waits += 1
                with self.phases("gate"):
                    self.processor.consumer.hold(timeout_ms=100)  # keeps the group membership alive
                GATE_WAIT.labels(self.name).inc(time.perf_counter() - start)

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            "policy_version": self.policy.version,
            "gate_waits": self.gate_waits,
            "engine": self.engine.name,
        }

    def close(self) -> None:
        super().close()
        self.policy.close()
        self.offsets.close()
        self.lost.close()
        self.engine.close()
