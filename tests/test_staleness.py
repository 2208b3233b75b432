"""Bounded staleness: the gate rule, η = 0 reproducing synchronous RL on a real broker, and
in-flight requests finishing on the version they started with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from actors.generation import TransformersEngine
from actors.learner.actor import Learner
from actors.learner.logprobs import full_logprobs
from actors.modeling import load_policy
from actors.reward.actor import RewardActor
from actors.reward.config import RewardConfig
from actors.rollout.actor import RolloutActor, gate_allowance
from actors.rollout.config import RolloutConfig
from actors.sampling import SamplingSpec
from actors.settings import EngineKind, Transport
from actors.weights import WeightPublisher
from schemas import PolicyVersion, Rollout, decode
from streams.blobs import ClaimCheck
from streams.kafka import Producer, StreamsConfig
from streams.logs import read_all
from tests.conftest import Running, make_learner, send_tasks, wait_for
from tests.kafka_helpers import read_records


def test_gate_rule() -> None:
    # η = 0, 4 groups per step: after the learner consumed 8 groups, groups 8..11 may start, not 12
    assert gate_allowance(produced_groups=8, consumed_groups=8, groups_per_step=4, max_staleness=0) == 4
    assert gate_allowance(produced_groups=11, consumed_groups=8, groups_per_step=4, max_staleness=0) == 1
    assert gate_allowance(produced_groups=12, consumed_groups=8, groups_per_step=4, max_staleness=0) == 0
    # η = 2 lets rollouts run two steps further ahead: 8 + 3 * 4 = 20
    assert gate_allowance(produced_groups=19, consumed_groups=8, groups_per_step=4, max_staleness=2) == 1
    assert gate_allowance(produced_groups=20, consumed_groups=8, groups_per_step=4, max_staleness=2) == 0
    # an overshoot (several rollout actors) never asks for a negative number
    assert gate_allowance(produced_groups=25, consumed_groups=8, groups_per_step=4, max_staleness=2) == 0


STEPS, PER_STEP, GROUP = 3, 2, 2


def run_synchronous(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path, timeout_s: float, **learner: Any
) -> Learner:
    """Learner, rollout and reward at η = 0 for STEPS steps of PER_STEP groups of GROUP, on tasks
    already sent; `learner` overrides LearnerConfig fields. Returns the finished learner."""
    trainer = make_learner(
        streams, claim, tiny_model, tmp_path, rl_steps=STEPS, groups_per_step=PER_STEP, max_staleness=0, **learner
    )
    rollout = RolloutActor(
        name="rollout-t",
        config=RolloutConfig(group_size=GROUP, max_new_tokens=2, engine=EngineKind.TRANSFORMERS),
        streams=streams,
        model_path=tiny_model,
        claim=claim,
        max_staleness=0,
        groups_per_step=PER_STEP,
    )
    reward = RewardActor(name="reward-t", config=RewardConfig(), streams=streams)
    with Running(trainer, rollout, reward) as running:
        wait_for(lambda: trainer.done or bool(running.errors), timeout_s, "the learner to finish")
        running.check()
    assert trainer.rl_step == STEPS and trainer.version == STEPS
    assert trainer.intake.stale_dropped == 0
    assert dict(trainer.intake.staleness_hist) == {0: STEPS * PER_STEP * GROUP}, "every trained sample was on-policy"
    return trainer


def test_eta_zero_is_synchronous(streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path) -> None:
    send_tasks(streams, claim, 20)
    run_synchronous(streams, claim, tiny_model, tmp_path, 120, heldout_tasks=8)
    made = read_records(streams, "rollouts", Rollout, STEPS * PER_STEP)  # one message per group
    per_version = Counter(r.policy_version for r in made)
    # the rollout actor made exactly one step's groups per version, and at most one step ahead
    assert all(per_version[v] == PER_STEP * GROUP for v in range(STEPS)), per_version
    assert set(per_version) <= set(range(STEPS + 1))


def test_eta_zero_stays_synchronous_with_dynamic_sampling(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    """Dynamic sampling drops equal-reward groups and re-announces the same version so the gate
    releases more: the extra groups are made on that version, so every trained sample is still
    on-policy at η = 0. 90 SFT steps make rewards mixed (the untrained model scores 0): in three
    runs the learner consumed 18 groups, dropped 12 and trained on 6."""
    send_tasks(streams, claim, 200)
    learner = run_synchronous(streams, claim, tiny_model, tmp_path, 180, dynamic_sampling=True, sft_steps=90)
    dropped = learner.intake.uninformative_dropped
    assert dropped > 0, "no group of equal rewards: the test did not exercise dropping"
    made = [r for m in read_all(streams, "rollouts", idle_ms=500) for r in decode(m.value, Rollout, m.headers)]
    per_version = Counter(r.policy_version for r in made)
    assert set(per_version) <= set(range(STEPS + 1)), per_version  # never ahead of the learner
    # each version's groups were all consumed on that version: trained, or dropped and replaced
    assert sum(per_version[v] for v in range(STEPS)) == STEPS * PER_STEP * GROUP + dropped


class AnnouncingEngine:
    """A real engine whose first call publishes the next version while its requests are in flight."""

    def __init__(self, inner: TransformersEngine, announce: Callable[[], None]) -> None:
        self.inner, self.announce, self.calls = inner, announce, 0
        self.name, self.tokenizer = inner.name, inner.tokenizer
        self.first_call: list[tuple[int, ...]] = []

    def generate(self, prompts, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.calls += 1
        if self.calls == 1:
            self.first_call = [tuple(p) for p in prompts]
            self.announce()  # version 1 is on `policy` before these requests finish
        return self.inner.generate(prompts, **kwargs)

    def load_published(self, weights_ref: str) -> None:
        self.inner.load_published(weights_ref)

    def close(self) -> None:
        self.inner.close()


def test_in_flight_requests_finish_on_the_version_they_started_with(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    """Version 1 is announced while the first call generates: that call's groups still carry
    version 0 and their behaviour log-probs are version 0's; calls that start before the
    announcement is polled also run on version 0 (and say so); tasks that arrive after the
    actor loaded version 1 run on it; every group's log-probs are those of the version it
    carries. (The announcement is polled without blocking, so when it is seen depends on the
    broker's fetch wait: the later tasks are sent only once it was, or the test would race.)"""
    send_tasks(streams, claim, 4)
    base, _ = load_policy(tiny_model)
    new, _ = load_policy(tiny_model)
    with torch.no_grad():
        for p in new.parameters():
            p.mul_(1.5)
    publisher = WeightPublisher(Transport.FILE, directory=tmp_path, keep=4, dtype=None, actor="learner-t", device="cpu")
    producer = Producer(streams, client_id="test-policy")

    def announce(version: int, model) -> None:  # noqa: ANN001
        ref = publisher.publish(version, model.state_dict())
        record = PolicyVersion(version=version, step=version, weights_ref=ref, groups_consumed=0, metrics=())
        producer.send_records("policy", [record]).get(timeout=30)

    announce(0, base)
    rollout = RolloutActor(
        name="rollout-t",
        config=RolloutConfig(group_size=2, max_new_tokens=3, prompts_per_call=2, engine=EngineKind.TRANSFORMERS),
        streams=streams,
        model_path=tiny_model,
        claim=claim,
        max_staleness=10,
        groups_per_step=2,
    )
    engine = AnnouncingEngine(rollout.engine, lambda: announce(1, new))
    rollout.engine = engine
    with Running(rollout) as running:
        wait_for(lambda: rollout.policy.version == 1 or bool(running.errors), 60, "version 1 loaded")
        running.check()
        send_tasks(streams, claim, 8, seed=1)
        wait_for(lambda: rollout.processor.counts["produced"] >= 12 * 2 or bool(running.errors), 60, "12 groups")
        running.check()
    producer.close()
    made = read_records(streams, "rollouts", Rollout, 12)
    spec = SamplingSpec(1.0, 1.0)
    first = [r for r in made if tuple(r.prompt_ids) in engine.first_call]
    # the first call took up to prompts_per_call tasks (2 partitions: maybe only 1 was fetched)
    assert len(first) == 2 * len(engine.first_call) >= 2, (len(first), len(engine.first_call))
    assert {r.policy_version for r in first} == {0}, "the first call ran on version 0"
    assert Counter(r.policy_version for r in made)[1] >= 8 * 2, "the tasks sent after version 1 loaded ran on it"
    for r in made:
        ids = torch.tensor([list(r.prompt_ids) + list(r.response_ids)])
        scores = {}
        for version, model in ((0, base), (1, new)):
            with torch.no_grad():
                logp, _ = full_logprobs(model(input_ids=ids).logits, ids, spec)
            expected = logp[0, len(r.prompt_ids) :]
            scores[version] = float((expected - torch.tensor(r.behaviour_logprobs)).abs().max())
        assert scores[r.policy_version] < 1e-5, (r.policy_version, scores)
        assert scores[1 - r.policy_version] > 1e-3, "the two versions are told apart"
