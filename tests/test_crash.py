"""Crash ledger: kill -9 the learner's, the rollout's and the reward's worker processes, then the
embedded broker (Tansu) and the store under it (SeaweedFS), during a run on the real embedded
broker (durable storage, the default) and real Ray; the supervisor restarts each, the run
finishes, and every scored rollout before the final checkpoint was trained exactly once or
dropped as stale: none lost, none trained twice."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from actors.learner import ledger
from actors.learner.checkpoint import latest
from ops.config import load_config
from ops.feed import send_json, world_documents
from ops.launcher import Service
from ops.slots import LEARNER_NAME
from ops.supervisor import CrashLoop
from schemas import Document, ScoredRollout, decode
from streams.kafka import StreamsConfig
from streams.logs import read_all
from streams.topics import DOCS, SCORED
from tests.conftest import wait_for
from tests.service import CliService, cli

pytestmark = pytest.mark.pipeline


def _kill(service: Service, name: str) -> float:
    """kill -9 the actor's worker process (once it runs: a restart may still be under way)."""
    wait_for(lambda: "pid" in service.snapshots()[name], 120, f"{name} to be running")
    pid = service.snapshots()[name]["pid"]
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def _config(tmp_path: Path, settings: list[str]):  # noqa: ANN202 - a LongtideConfig
    """A service of the smallest untrained model, the transformers engine (no vLLM start-up per
    restart) and a fast supervisor, plus `settings`."""
    shared = [f"--run_dir={tmp_path / 'run'}", "--ray.num_cpus=2", "--rollout.engine=transformers", "--model.path="]
    shared += ["--model.tiny.num_layers=1", "--model.tiny.hidden_size=64", "--model.tiny.num_heads=2"]
    return load_config(None, [*shared, "--supervision.poll_s=0.5", *settings])


def _learner(service: Service) -> dict:
    return service.snapshots()[LEARNER_NAME]


def test_kill_nine_each_worker_and_the_ledger_balances(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        [
            "--learner.sft_steps=4",
            "--learner.rl_steps=15",
            "--learner.groups_per_step=2",
            "--learner.checkpoint_every=3",
            "--learner.eval_every=1000",
            "--learner.heldout_tasks=4",
            "--learner.max_staleness=1",
            "--feed.worlds=10",
            "--rollout.group_size=4",
        ],
    )
    with Service(config) as service:
        send_json(service.config.streams, world_documents(worlds=10, entities_per_world=8, seed=0))
        wait_for(lambda: _learner(service).get("rl_step", 0) >= 4, 240, "the learner's 4th RL step")

        killed = _kill(service, LEARNER_NAME)
        wait_for(lambda: service.restarts[LEARNER_NAME] == 1, 60, "the learner's restart")
        wait_for(
            lambda: (
                (s := _learner(service)).get("resumed_from") is not None and s.get("rl_step", 0) > s["resumed_from"]
            ),
            180,
            "a new trained step after the learner's restart",
        )
        resumed = _learner(service)["resumed_from"]
        print(f"learner: kill -9 to first new trained step {time.monotonic() - killed:.1f} s (resumed at {resumed})")

        for name in ("rollout-0", "reward-0"):
            step = _learner(service)["rl_step"]
            killed = _kill(service, name)
            wait_for(lambda n=name: service.restarts[n] == 1, 60, f"{name}'s restart")
            wait_for(lambda s=step: _learner(service)["rl_step"] > s, 180, f"a trained step after {name}'s restart")
            print(f"{name}: kill -9 to first new trained step {time.monotonic() - killed:.1f} s")

        assert service.broker is not None and service.broker.store is not None
        for part, process in (("broker", service.broker.broker), ("store", service.broker.store)):
            wait_for(lambda: "rl_step" in _learner(service), 120, "the learner to be running")
            step = _learner(service)["rl_step"]
            os.kill(process.pid, signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda p=part: service.restarts.get(p) == 1, 60, f"the {part}'s restart")
            wait_for(
                lambda s=step: _learner(service).get("rl_step", 0) > s,
                180,
                f"a trained step after the {part}'s restart",
            )
            print(f"{part}: kill -9 to first new trained step {time.monotonic() - killed:.1f} s")

        wait_for(lambda: _learner(service)["done"], 300, "the learner to finish")
        service.check()
        final = _learner(service)
        scored = [
            (m.partition, m.offset, r)
            for m in read_all(service.config.streams, SCORED.name)
            for r in decode(m.value, ScoredRollout, m.headers)
        ]
        run = service.run
    assert run is not None and final["rl_step"] == 15

    outcomes = ledger.outcomes(run.directory)
    counts = collections.Counter(i for i, _ in outcomes)
    assert not [i for i, n in counts.items() if n > 1], "a rollout was trained (or dropped) twice"
    trained = [i for i, o in outcomes if o == "trained"]
    stale = [i for i, o in outcomes if o == "stale"]
    assert len(trained) == final["samples_trained"] and len(stale) == final["stale_dropped"]

    _, state = latest(run.directory / "checkpoints")
    through = state.partition_offsets()
    before = {r.rollout_id for p, o, r in scored if r.run_id == run.run_id and o < through[(SCORED.name, p)]}
    after = {r.rollout_id for p, o, r in scored if r.run_id == run.run_id} - before
    lost = before - set(counts)
    copies = len(scored) - len({r.rollout_id for _, _, r in scored})
    print(
        f"ledger: {len(before)} scored rollouts before the final checkpoint: {len(trained)} trained once, "
        f"{len(stale)} dropped as stale, {len(lost)} lost; {len(after)} after it (not yet read); "
        f"{copies} duplicate copies on scored (re-sent after a kill, dropped by id)"
    )
    assert not lost, f"scored rollouts neither trained nor dropped: {sorted(lost)[:5]}"
    assert set(counts) <= before


def test_a_crash_loop_ends_the_service_with_the_actor_and_its_error(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        [
            "--learner.sft_steps=0",
            "--learner.rl_steps=0",
            "--learner.heldout_tasks=2",
            "--supervision.max_restarts=2",
        ],
    )
    with Service(config) as service:
        _kill(service, "reward-0")
        wait_for(lambda: service.restarts["reward-0"] == 1, 60, "the first restart")
        _kill(service, "reward-0")
        wait_for(lambda: service.failure is not None, 60, "the crash loop to end the service")
        with pytest.raises(
            CrashLoop, match=r"actor reward-0 failed 2 times within 600 s; stopping the service. Last \(died\)"
        ):
            service.check()
        assert service.restarts["reward-0"] == 1


def test_a_memory_broker_that_dies_ends_the_service_saying_the_log_is_lost(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        [
            "--learner.sft_steps=0",
            "--learner.rl_steps=0",
            "--learner.heldout_tasks=2",
            "--streams.embedded_storage=memory",
        ],
    )
    with Service(config) as service:
        assert service.broker is not None and not service.broker.durable
        os.kill(service.broker.broker.pid, signal.SIGKILL)
        wait_for(lambda: service.failure is not None, 30, "the service to notice the broker's death")
        with pytest.raises(CrashLoop, match=r"Its log was in memory .* every topic and committed offset is lost"):
            service.check()


def _doc_ids(streams: StreamsConfig) -> set[str]:
    return {d.doc_id for m in read_all(streams, DOCS.name) for d in decode(m.value, Document, m.headers)}


def _newest_step(run_dir: Path) -> int:
    steps = [int(p.name.removeprefix("step-")) for p in run_dir.glob("runs/*/checkpoints/step-*") if p.suffix != ".tmp"]
    return max(steps, default=-1)


def test_kill_9_of_every_process_then_resume_continues_with_every_document(tmp_path: Path) -> None:
    """`longtide run` (the default: durable embedded storage) with documents ingested by the
    CLI; SIGKILL to every process of the service at once (launcher, Tansu, SeaweedFS, Ray, every
    worker); `longtide run --resume` with the same settings continues the run from its last
    checkpoint, on the same log: every document on `docs` before the kill is still there."""
    run_dir = tmp_path / "run"
    settings = [
        "--ray.num_cpus=2",
        "--rollout.engine=transformers",
        "--model.path=",
        "--model.tiny.num_layers=1",
        "--model.tiny.hidden_size=64",
        "--model.tiny.num_heads=2",
        "--supervision.poll_s=0.5",
        "--learner.sft_steps=2",
        "--learner.rl_steps=0",
        "--learner.groups_per_step=2",
        "--learner.checkpoint_every=2",
        "--learner.eval_every=1000",
        "--learner.heldout_tasks=2",
        "--rollout.group_size=4",
    ]
    first = CliService(run_dir, *settings).start()
    second: CliService | None = None
    try:
        first.wait_ready()
        feed = tmp_path / "docs.jsonl"
        docs = list(world_documents(worlds=6, entities_per_world=8, seed=0))
        feed.write_text("".join(json.dumps(d) + "\n" for d in docs))
        done = cli("ingest", str(feed), "--run-dir", str(run_dir))
        assert done.returncode == 0, done.stderr
        streams = StreamsConfig(bootstrap_servers=first.state()["bootstrap_servers"])
        wait_for(lambda: len(_doc_ids(streams)) >= len(docs), 120, "every document on docs")
        wait_for(lambda: _newest_step(run_dir) >= 4, 300, "a checkpoint at RL step 4")
        before = _doc_ids(streams)
        step = _newest_step(run_dir)

        processes = first.processes()
        run_id = first.state()["run_id"]
        names = {p.name() for p in processes}
        assert "weed" in names and len(processes) >= 6, names
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(processes, timeout=30)
        assert not first.processes(), "every process of the first service is gone"
        print(f"killed {len(processes)} processes at RL step >= {step}; {len(before)} documents on docs")

        second = CliService(run_dir, *settings, "--resume").start()
        wait_for(lambda: (second.state() or {}).get("pid") == second.pid, 300, "the resumed service's state")
        assert f"longtide running run {run_id}" in second.log(), second.log()[-3000:]
        resumed_streams = StreamsConfig(bootstrap_servers=second.state()["bootstrap_servers"])
        assert before <= _doc_ids(resumed_streams), "a document ingested before the kill is gone"
        wait_for(lambda: _newest_step(run_dir) > step, 300, "a checkpoint after the resume")
        assert len(list(run_dir.glob("runs/*/run.json"))) == 1, "the run was resumed, not started again"
        assert second.stop() == 130, "SIGTERM stops it as Ctrl-C does"
        assert not second.processes(), "nothing of the resumed service is left"
    finally:
        for service in (first, second):
            if service is not None:
                service.kill_leftovers()


def test_a_killed_launcher_takes_everything_it_started_down(tmp_path: Path) -> None:
    """SIGKILL of the launcher alone, which can run no stop of its own: its broker and store (the
    kernel's parent-death signal), Ray and every worker end by themselves, freeing the run
    directory's ports and store for the next service."""
    settings = ["--ray.num_cpus=2", "--rollout.engine=transformers", "--model.path=", "--model.tiny.num_layers=1"]
    settings += ["--model.tiny.hidden_size=64", "--model.tiny.num_heads=2", "--learner.rl_steps=0"]
    service = CliService(tmp_path / "run", *settings).start()
    try:
        service.wait_ready()
        processes = service.processes()
        names = {p.name() for p in processes}
        assert {"weed", "raylet"} <= names and len(processes) >= 6, names
        service.proc.kill()
        started = time.monotonic()
        wait_for(lambda: not service.processes(), 60, "every process of the killed launcher's service gone")
        print(f"{len(processes)} processes ended by themselves {time.monotonic() - started:.1f} s after the launcher")
    finally:
        service.kill_leftovers()
