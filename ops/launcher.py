"""The launcher: broker (embedded unless bootstrap servers are given), Ray, and the actors.

    with Service(config) as service:   # starts everything, writes run_dir/state.json
        service.snapshots()            # every actor's visible state

Stops actors, Ray and the embedded broker on exit (Ctrl-C and SIGTERM included, see cli).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import ray
import yaml
from prometheus_client import start_http_server

from actors.hosting import RayActorHost
from actors.ingest import IngestActor
from actors.learner.actor import HeldoutSpec, Learner
from actors.modeling import build_tiny_policy
from actors.reward.actor import RewardActor
from actors.rollout.actor import RolloutActor
from actors.synthesis.actor import SynthesisActor
from actors.tasks import word_count
from ops.config import LongtideConfig, to_dict
from streams.blobs import BlobStore, ClaimCheck
from streams.broker import EmbeddedBroker, free_port
from streams.kafka import StreamsConfig, ensure_topics

log = logging.getLogger(__name__)

LEARNER_NAME = "longtide-learner"
STATE_FILE = "state.json"


def _claim(config: LongtideConfig, run_dir: Path) -> ClaimCheck:
    uri = config.streams.blob_uri or str(run_dir / "blobs")
    return ClaimCheck(BlobStore(uri), config.streams.inline_limit_bytes)


def build_actor(kind: str, name: str, config: LongtideConfig, model_path: str, run_dir: Path) -> Any:
    """Construct one plain actor (runs inside its Ray worker, or in-process in tests)."""
    streams, claim = config.streams, _claim(config, run_dir)
    if kind == "ingest":
        return IngestActor(name=name, config=config.ingest, streams=streams, claim=claim, count_tokens=word_count)
    if kind == "synthesis":
        return SynthesisActor(name=name, config=config.synthesis, streams=streams, claim=claim)
    if kind == "rollout":
        return RolloutActor(
            name=name,
            config=config.rollout,
            streams=streams,
            model_path=model_path,
            claim=claim,
            max_staleness=config.learner.max_staleness,
            groups_per_step=config.learner.groups_per_step,
        )
    if kind == "reward":
        return RewardActor(name=name, config=config.reward, streams=streams)
    if kind == "learner":
        heldout = HeldoutSpec(
            task_types=config.synthesis.task_types,
            context_tokens=config.synthesis.context_tokens,
            entities_per_world=config.feed.entities_per_world,
            max_new_tokens=config.rollout.max_new_tokens,
        )
        return Learner(
            name=name,
            config=config.learner,
            streams=streams,
            model_path=model_path,
            claim=claim,
            run_dir=run_dir,
            temperature=config.rollout.temperature,
            heldout=heldout,
        )
    raise ValueError(f"unknown actor kind {kind!r}")


def actor_plan(config: LongtideConfig) -> list[tuple[str, str]]:
    """(kind, name) of every actor to start."""
    plan = [("ingest", f"ingest-{i}") for i in range(config.ingest.instances)]
    plan += [("synthesis", "synthesis-0")]
    plan += [("rollout", f"rollout-{i}") for i in range(config.rollout.instances)]
    plan += [("reward", f"reward-{i}") for i in range(config.reward.instances)]
    plan += [("learner", LEARNER_NAME)]
    return plan


def prepare_model(config: LongtideConfig, run_dir: Path) -> str:
    """The policy path: the configured one, or a tiny model built in the run directory."""
    if config.model.path:
        return config.model.path
    path = run_dir / "model"
    if not (path / "config.json").exists():
        build_tiny_policy(path, config.model.tiny)
    return str(path.resolve())


class Service:
    def __init__(self, config: LongtideConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir).resolve()
        self.broker: EmbeddedBroker | None = None
        self.hosts: dict[str, Any] = {}
        self.endpoints: dict[str, str] = {}
        self._started_ray = False

    def start(self) -> Service:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
        model_path = prepare_model(self.config, self.run_dir)
        streams = self.config.streams
        if not streams.bootstrap_servers:
            self.broker = EmbeddedBroker(storage=streams.embedded_storage, log_path=self.run_dir / "broker.log").start()
            streams = dataclasses.replace(streams, bootstrap_servers=self.broker.bootstrap_servers)
        self.config = dataclasses.replace(self.config, streams=streams)
        ensure_topics(streams)
        if self.config.metrics.enabled:
            port = free_port(self.config.metrics.host)
            start_http_server(port, addr=self.config.metrics.host)
            self.endpoints["launcher"] = f"{self.config.metrics.host}:{port}"
        self._start_ray()
        for kind, name in actor_plan(self.config):
            host = RayActorHost.options(name=name, num_cpus=0, lifetime=None).remote(
                functools.partial(build_actor, kind, name, self.config, model_path, self.run_dir),
                self.config.metrics.host,
            )
            self.hosts[name] = host
        for name, address in zip(self.hosts, ray.get([h.start.remote() for h in self.hosts.values()]), strict=True):
            self.endpoints[name] = address
        self._write_state()
        return self

    def _start_ray(self) -> None:
        if ray.is_initialized():
            return
        env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        ray_cfg = self.config.ray
        # ray.init installs its own SIGTERM handler, which kills the driver without cleanup;
        # keep the caller's so SIGTERM still stops actors, Ray and the broker cleanly.
        previous = signal.getsignal(signal.SIGTERM)
        ray.init(
            address=ray_cfg.address or None,
            namespace=ray_cfg.namespace,
            num_cpus=None if ray_cfg.address else (ray_cfg.num_cpus or None),
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env},
            configure_logging=False,
        )
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)
        self._started_ray = True

    def _write_state(self) -> None:
        targets = [
            {"targets": [addr], "labels": {"actor": name, "job": "longtide"}} for name, addr in self.endpoints.items()
        ]
        prom_dir = self.run_dir / "prometheus"
        prom_dir.mkdir(exist_ok=True)
        _atomic_write(prom_dir / "targets.json", json.dumps(targets, indent=2))
        state = {
            "bootstrap_servers": self.config.streams.bootstrap_servers,
            "endpoints": self.endpoints,
            "pid": os.getpid(),
            "started_at": time.time(),
            "run_dir": str(self.run_dir),
        }
        _atomic_write(self.run_dir / STATE_FILE, json.dumps(state, indent=2))

    def snapshots(self, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        names = list(self.hosts)
        values = ray.get([self.hosts[n].snapshot.remote() for n in names], timeout=timeout_s)
        return dict(zip(names, values, strict=True))

    def stop(self) -> None:
        if self.hosts:
            try:
                ray.get([h.stop.remote() for h in self.hosts.values()], timeout=60)
            except Exception as exc:  # noqa: BLE001 - shutting down regardless
                log.warning("actors did not stop cleanly: %s", exc)
            for host in self.hosts.values():
                ray.kill(host)
            self.hosts.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Service:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def streams_of(state_file: Path) -> StreamsConfig:
    """StreamsConfig for a running service, from its state file."""
    state = json.loads(state_file.read_text())
    return StreamsConfig(bootstrap_servers=state["bootstrap_servers"])
