"""`longtide replay`: a recorded run's `scored` range replayed into a fresh learner reproduces the
recorded learner (same samples, same order, same weights); another config trains on the same data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from actors.learner import ledger
from actors.learner.checkpoint import RL_START, latest
from actors.learner.replay import next_batch
from actors.modeling import load_policy
from ops.config import load_config
from ops.feed import send_json, world_documents
from ops.launcher import Service
from ops.replay import parse_offsets, replay
from ops.slots import LEARNER_NAME
from streams.broker import EmbeddedBroker
from streams.kafka import StreamsConfig
from tests.conftest import wait_for

pytestmark = pytest.mark.pipeline


def _final_weights(run_directory: Path) -> dict[str, torch.Tensor]:
    directory, _ = latest(run_directory / "checkpoints")
    model, _ = load_policy(str(directory / "model"))
    return model.state_dict()


def test_next_batch_follows_the_schedule_and_passes_over_dropped_groups() -> None:
    # as read: the first 2 waiting groups
    assert next_batch(["a", "b", "c"], 2, None, 0) == ([0, 1], 2)
    assert next_batch(["a"], 2, None, 0) is None
    # schedule c, a, b, d: c and a have arrived (at 2 and 0) → that batch, position 2
    assert next_batch(["a", "b", "c"], 2, ("c", "a", "b", "d"), 0) == ([2, 0], 2)
    # from position 2 it wants b and d; d has not arrived: wait
    assert next_batch(["b"], 2, ("c", "a", "b", "d"), 2) is None
    # d was dropped as stale by this replay: b alone, and the schedule is done (position 4)
    assert next_batch(["b"], 2, ("c", "a", "b", "d"), 2, {"d"}) == ([0], 4)
    assert next_batch(["x"], 2, ("c", "a"), 2) is None


def test_next_batch_by_rollout_kind_never_mixes_kinds() -> None:
    kinds = ["full", "memory", "full", "memory", "memory"]
    ready = ["f1", "m1", "f2", "m2", "m3"]
    # the oldest group is full-context: two of them make a batch of 2
    assert next_batch(ready, 2, None, 0, kinds=kinds) == ([0, 2], 2)
    # batches of 3: only the memory groups have 3 waiting
    assert next_batch(ready, 3, None, 0, kinds=kinds) == ([1, 3, 4], 3)
    # 5 waiting but at most 3 of a kind: wait (unseparated, the first 4 would be taken)
    assert next_batch(ready, 4, None, 0, kinds=kinds) is None
    assert next_batch(ready, 4, None, 0) == ([0, 1, 2, 3], 4)
    # stalled (stale groups dropped since the last version; the gate may send no more): the
    # fullest kind alone, a smaller batch, never mixed; still nothing below `size` waiting
    assert next_batch(ready, 4, None, 0, kinds=kinds, stalled=True) == ([1, 3, 4], 3)
    assert next_batch(ready[:3], 4, None, 0, kinds=kinds[:3], stalled=True) is None


def test_parse_offsets() -> None:
    assert parse_offsets("0:120, 1:98") == {0: 120, 1: 98}
    assert parse_offsets("") == {}
    with pytest.raises(ValueError, match="expected partition:offset"):
        parse_offsets("0=120")


def test_replay_reproduces_the_recorded_learner_and_trains_other_configs(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        config = load_config(
            None,
            [
                f"--run_dir={tmp_path / 'run'}",
                f"--streams.bootstrap_servers={broker.bootstrap_servers}",
                "--ray.num_cpus=2",
                "--learner.sft_steps=20",
                "--learner.rl_steps=6",
                "--learner.groups_per_step=2",
                "--learner.checkpoint_every=3",
                "--learner.eval_every=3",
                "--learner.heldout_tasks=4",
                "--feed.worlds=8",
                "--rollout.group_size=8",
                "--rollout.engine=transformers",
            ],  # the committed base model: it earns rewards, so RL steps change the weights
        )
        with Service(config) as service:
            send_json(service.config.streams, world_documents(worlds=8, entities_per_world=8, seed=0))
            wait_for(lambda: service.snapshots()[LEARNER_NAME]["done"], 300, "the recorded run to finish")
            recorded = service.snapshots()[LEARNER_NAME]
            source = service.run
        assert source is not None
        streams = StreamsConfig(bootstrap_servers=broker.bootstrap_servers)

        same = replay(config, source.run_id, streams=streams)
        replayed = tmp_path / "run" / "replays" / same["replay_id"]
        assert ledger.trained_groups(replayed) == ledger.trained_groups(source.directory), "same samples, same order"
        original, again = _final_weights(source.directory), _final_weights(replayed)
        rl_start, _ = load_policy(str(source.directory / "checkpoints" / RL_START / "model"))
        moved = max(float((original[k] - v).abs().max()) for k, v in rl_start.state_dict().items())
        assert moved > 1e-4, "the recorded RL steps changed the weights (else nothing is compared)"
        worst = max(float((original[k] - again[k]).abs().max()) for k in original)
        print(f"replay vs recorded learner after {same['rl_steps']} steps: max |Δ weight| = {worst:.3g}")
        assert same["rl_steps"] == 6 and worst < 1e-6
        # every group the recorded learner trained, and none it did not (those read after its
        # last step are passed over as unscheduled)
        assert same["schedule"]["trained_or_passed"] == same["schedule"]["length"] == 12
        assert [h["rl_step"] for h in same["history"]][-2:] == [3, 6]
        assert same["history"][-1] == {**recorded["history"][-1], "version": same["history"][-1]["version"]}

        other = dataclasses.replace(config, learner=dataclasses.replace(config.learner, lr=3 * config.learner.lr))
        ablation = replay(other, source.run_id, streams=streams)
        changed = _final_weights(tmp_path / "run" / "replays" / ablation["replay_id"])
        assert ablation["rl_steps"] == 6
        assert max(float((original[k] - changed[k]).abs().max()) for k in original) > 1e-6
