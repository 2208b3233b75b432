"""The stabilized learner on a real broker: dynamic sampling drops equal-reward groups before
batching and re-announces the version so the gate refills; task-balanced batches; AEPO's
batch mode switching on; several updates per batch with a KL reference."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from actors.learner.actor import Learner
from actors.learner.config import AepoConfig, AepoMode, LearnerConfig
from actors.learner.sampler import DryPolicy, SamplerConfig
from actors.learner.setup import HeldoutSpec
from actors.modeling import load_policy
from actors.sampling import SamplingSpec
from actors.settings import Transport
from actors.tasks import TaskType
from schemas import PolicyVersion, decode
from streams.blobs import ClaimCheck
from streams.kafka import Producer, StreamsConfig
from streams.logs import read_all
from streams.topics import POLICY
from tests.conftest import Running, scored_rollout, wait_for


def test_dynamic_sampling_balanced_batches_and_aepo_in_the_loop(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex
    _, tokenizer = load_policy(tiny_model)
    prompt = tuple(tokenizer("bako color teal . bako color ?")["input_ids"])
    response = tuple(tokenizer("teal")["input_ids"])

    def group(name: str, task_type: str, rewards: tuple[float, float]) -> list:
        return [
            scored_rollout(f"{run}-{name}", i, 2, prompt, response, task_type=task_type, reward=r, run_id=run)
            for i, r in enumerate(rewards)
        ]

    # all kv groups first: a balanced batch must wait for two_hop; two groups of equal rewards
    sent = [group("kv-a", "kv_retrieval", (1, 0)), group("kv-same", "kv_retrieval", (1, 1))]
    sent += [group("kv-b", "kv_retrieval", (0, 1)), group("th-same", "two_hop", (0, 0))]
    sent += [group("th-a", "two_hop", (1, 0)), group("th-b", "two_hop", (0, 1))]
    producer = Producer(streams, client_id="test-stabilized")
    for g in sent:
        producer.send_records("scored", g, key=b"one")
    producer.flush()
    producer.close()
    config = LearnerConfig(
        sft_steps=0,
        rl_steps=2,
        groups_per_step=2,
        max_staleness=10,
        weights_keep=12,
        heldout_tasks=4,
        weights_transport=Transport.FILE,
        dynamic_sampling=True,
        sampler=SamplerConfig(task_balanced=True, when_dry=DryPolicy.WAIT, buffer_groups=22),
        aepo=AepoConfig(mode=AepoMode.BATCH, h_low=0.0, h_high=1e-6),  # any entropy is "high"
        ppo_epochs=2,
        minibatches=2,
        kl_coef=0.01,
    )
    learner = Learner(
        name="learner-stab",
        config=config,
        streams=streams,
        model_path=tiny_model,
        claim=claim,
        run_dir=tmp_path,
        sampling=SamplingSpec(1.0, 1.0),
        heldout=HeldoutSpec(
            (TaskType.KV_RETRIEVAL, TaskType.TWO_HOP), context_tokens=16, entities_per_world=4, max_new_tokens=2
        ),
        run_id=run,
    )
    with Running(learner) as running:
        wait_for(lambda: learner.done or bool(running.errors), 120, "two RL steps")
        running.check()
    # the two equal-reward groups were dropped before batching, and counted as consumed
    assert learner.intake.uninformative_dropped == 4 and learner.intake.groups_consumed == 6
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:]
    assert [s["rl_step"] for s in steps] == [1, 2]
    for s in steps:  # every batch: one kv group and one two_hop group, none filled in
        assert {"reward_kv_retrieval", "reward_two_hop"} <= set(s) and s["sampler_filled"] == 0
        assert s["updates"] == 4.0 and s["kl"] >= 0.0  # 2 epochs x 2 minibatches
    # AEPO: the first step's entropy is above h_high, so the second masks its negatives
    assert steps[0]["aepo_masking"] == 0.0 and steps[1]["aepo_masking"] == 1.0
    assert steps[1]["aepo_masked"] == 2.0 and learner.rl_update.switches == 1
    # the drops were announced on `policy` before any new version: version 0 with groups consumed
    records = [
        r for m in read_all(streams, POLICY.name, idle_ms=500) for r in decode(m.value, PolicyVersion, m.headers)
    ]
    ours = sorted((r.version, r.groups_consumed) for r in records if r.run_id == run)
    assert (0, 0) in ours and any(v == 0 and c > 0 for v, c in ours), ours
