"""The launcher: broker (embedded unless bootstrap servers are given), Ray, and the actors.

    with Service(config) as service:   # starts everything, writes run_dir/state.json
        service.snapshots()            # every actor's visible state

Stops actors, Ray and the embedded broker on exit (Ctrl-C and SIGTERM included, see cli).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ray
import yaml
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.hosting import RayActorHost, serve_metrics
from actors.settings import SECRET_ENV, STORE_NAME
from ops import processes
from ops.cluster import LocalRay
from ops.config import ConfigError, LongtideConfig, to_dict
from ops.runs import RUNS, Run, new_run, resumable_run
from ops.slots import Slot, actor_plan, build_actor, prepare_model, retention_readers
from ops.state import STATE_FILE, atomic_write, claim_run_dir
from ops.supervisor import (
    RESTART_FAMILIES,
    RESTARTS,
    CrashLoop,
    Death,
    RestartBudget,
    death_of,
    restart_embedded,
)
from streams.broker import free_port
from streams.embedded import LOG_BUCKET, EmbeddedLog
from streams.logs import ensure_topics, exact_end_offsets
from streams.retention import LogJanitor
from streams.topics import ROLLOUTS

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600
"""How long an actor may take to start (model load, engine start-up, rank rendezvous)."""
HEALTH_TIMEOUT_S = 10.0
"""How long one health check waits for the actors' answers (they are asked at once)."""
ACTOR_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


@ray.remote(num_cpus=0)
def _rendezvous() -> str:
    """host:port for the learner ranks' process group, on the node of rank 0's bundle."""
    host = ray.util.get_node_ip_address()
    return f"{host}:{free_port(host)}"


class Service:
    def __init__(self, config: LongtideConfig, *, resume: bool | str = False) -> None:
        """`resume`: continue the newest run in `config.run_dir` (its checkpoints, its
        `policy` records) instead of starting a fresh one; "if-any": resume one if there is one,
        else start fresh (a service manager's restart)."""
        self.config = config
        self.resume = resume
        self.run: Run | None = None
        self.run_dir = Path(config.run_dir).resolve()
        self.broker: EmbeddedLog | None = None
        self.hosts: dict[str, Any] = {}
        self.slots: dict[str, Slot] = {}
        self.endpoints: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        """Each actor's worker process (on its node), for operators: `state.json`'s `pids`."""
        self.restarts: dict[str, int] = {}
        self.failure: str | None = None
        """Why the service ended on its own (a crash loop, or a death with supervision off)."""
        self._model_path = ""
        self._ray = LocalRay(config.ray, ACTOR_ENV)
        self._learner_group: Any = None
        self._halt = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._broker_watch: threading.Thread | None = None
        self._janitor: threading.Thread | None = None
        self._broker_halt = threading.Event()
        """Ends the broker's watch and retention, just before the broker stops (after the actors)."""
        self._state_lock = threading.Lock()
        self.service_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        """This service's tag in the environment of every process it starts (`ops.processes`)."""
        self._tagged = False
        self._lock: IO[str] | None = None
        """The run directory's lock, held while this service runs there (`ops.state.claim_run_dir`)."""
        self.starting: set[str] = set()
        """Actors whose process is being built (a vLLM engine takes a while): not asked, not dead."""
        self._unanswered: dict[str, float] = {}
        """Since when each actor has not answered a health check."""

    def start(self) -> Service:
        self._lock = claim_run_dir(self.run_dir)
        self.service_id = os.environ.get(processes.TAG) or self.service_id
        os.environ[processes.TAG] = self.service_id  # everything started from here on carries it
        self._tagged = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(self.config), sort_keys=False))
        model_path = prepare_model(self.config, self.run_dir)
        streams = self.config.streams
        if not streams.bootstrap_servers:
            self.broker = EmbeddedLog(streams.embedded_storage, self.run_dir).start()
            log.info("%s", self.broker.describe())
            streams = dataclasses.replace(
                streams,
                bootstrap_servers=self.broker.bootstrap_servers,
                blob_uri=streams.blob_uri or self.broker.blob_uri() or "",
            )
        self.config = dataclasses.replace(self.config, streams=streams)
        memory = self.config.memory
        if memory.enabled and memory.http_port == 0:  # fixed for the run: a restarted actor keeps it
            port = free_port(memory.http_host)
            self.config = dataclasses.replace(self.config, memory=dataclasses.replace(memory, http_port=port))
        ensure_topics(streams)
        self.run = self._open_run()
        # the run's own: a fresh run may face a fresh log with offsets from 0, and the journal
        # keeps each group's committed offsets (a new run must not take an old run's as a floor)
        journal = self.run.directory / "journal"
        if streams.journal_dir:
            given = Path(streams.journal_dir)
            journal = given if given.name == self.run.run_id else given / self.run.run_id
        streams = dataclasses.replace(streams, journal_dir=str(journal))
        self.config = dataclasses.replace(self.config, streams=streams)
        if self.config.metrics.enabled:  # the broker's and the supervisor's families
            self.endpoints["launcher"] = serve_metrics(self.config.metrics.host, "longtide_broker_", *RESTART_FAMILIES)
        self._ray.start()
        self._model_path = model_path
        plan = actor_plan(self.config)
        self.slots = {slot.name: slot for slot in plan}
        for slot in plan:
            for death in Death:  # every series exists (at 0) from the start
                RESTARTS[slot.kind].labels(slot.name, death.value)
            self.restarts[slot.name] = 0
        rendezvous = self._place_learner([s for s in plan if s.ranked])
        self._spawn(plan, rendezvous)
        self._write_state()
        self._supervisor = self._watch_thread(self._check_once, "supervisor", self._halt)
        if self.broker is not None:  # on its own thread: an actor's restart waits for the broker (bootstrap)
            self._broker_watch = self._watch_thread(self._check_broker, "broker-watch", self._broker_halt)
        if self.broker is not None and self.broker.store is not None:
            janitor = LogJanitor(streams, self.broker.store, LOG_BUCKET, retention_readers(self.config))
            self._janitor = threading.Thread(
                target=janitor.run, args=(self._broker_halt,), name="retention", daemon=True
            )
            self._janitor.start()
        return self

    def _spawn(self, slots: list[Slot], rendezvous: str) -> None:
        """Create and start the actors of `slots` (names freed by a kill can take a moment);
        meanwhile they are `starting`, neither asked for snapshots nor taken for dead."""
        self.starting.update(s.name for s in slots)
        try:
            self._create_and_start(slots, rendezvous)
        finally:
            self.starting.difference_update(s.name for s in slots)

    def _create_and_start(self, slots: list[Slot], rendezvous: str) -> None:
        for slot in slots:
            build = functools.partial(build_actor, slot, self.config, self._model_path, self.run, rendezvous)
            options = self._options(slot)
            deadline = time.monotonic() + 30
            while not self._halt.is_set():
                try:
                    metrics_host = self.config.metrics.host if self.config.metrics.enabled else ""
                    self.hosts[slot.name] = RayActorHost.options(**options).remote(build, metrics_host, slot.kind)
                    break
                except ValueError:  # "name already taken": the killed actor is not yet gone
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        refs = [self.hosts[s.name].start.remote() for s in slots if not self._halt.is_set()]
        deadline = time.monotonic() + START_TIMEOUT_S
        while refs and not self._halt.is_set():  # in slices: a stop does not wait for a slow engine
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=1.0)
            if len(ready) == len(refs):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"actors {[s.name for s in slots]} did not start within {START_TIMEOUT_S} s")
        if self._halt.is_set():
            return
        for slot, (address, pid) in zip(slots, ray.get(refs), strict=True):
            self.pids[slot.name] = pid
            if address:
                self.endpoints[slot.name] = address

    # -- supervision ---------------------------------------------------------------------------
    def _watch_thread(
        self, check: Callable[[RestartBudget], None], what: str, until: threading.Event
    ) -> threading.Thread:
        thread = threading.Thread(target=self._watch, args=(check, what, until), name=what, daemon=True)
        thread.start()
        return thread

    def _watch(self, check: Callable[[RestartBudget], None], what: str, until: threading.Event) -> None:
        """Run `check` every `supervision.poll_s` until `until` is set. The supervisor's watch
        ends when the service fails; the broker's lives on, idle, until just before the broker
        stops: a broker or store it restarted dies with its thread (`streams.child`), so the
        thread must outlive the actors' last flush."""
        cfg = self.config.supervision
        budget = RestartBudget(cfg.max_restarts, cfg.window_s)
        crashed = False
        while not until.wait(cfg.poll_s):
            if crashed or self.failure is not None:
                if until is self._halt:
                    return
                continue
            try:
                check(budget)
            except CrashLoop as exc:
                self.failure, crashed = str(exc), True
                log.error("%s", exc)
            except Exception:  # noqa: BLE001 - the supervisor itself must keep watching
                log.exception("%s check failed; trying again in %.1f s", what, cfg.poll_s)

    def _check_once(self, budget: RestartBudget) -> None:
        for name, (death, reason) in self._deaths().items():
            if self._halt.is_set():
                return
            slot = self.slots[name]
            log.error("actor %s %s:\n%s", name, death.value, reason)
            if "LogLost" in reason:  # a restart would read the new, empty log as if nothing happened
                raise CrashLoop(f"actor {name} found the broker's log gone; stopping the service:\n{reason}")
            if not self.config.supervision.enabled:
                raise CrashLoop(f"actor {name} {death.value} and supervision is off:\n{reason}")
            if not budget.allow(name, time.monotonic()):
                raise CrashLoop(
                    f"actor {name} failed {budget.max_restarts} times within {budget.window_s:.0f} s; "
                    f"stopping the service. Last ({death.value}):\n{reason}"
                )
            RESTARTS[slot.kind].labels(name, death.value).inc()
            self.restarts[name] += 1
            self._restart(slot)  # a failure here leaves the slot without a host: dead at the next check
            self._write_state()

    def _check_broker(self, budget: RestartBudget) -> None:
        """A dead embedded broker, or a dead store under it, is restarted on its ports when the
        log is durable; on memory storage the log is gone with the broker, and the service ends
        saying so."""
        if self.broker is None or self._halt.is_set():
            return
        restarted = restart_embedded(self.broker, self.config.supervision, self.config.streams.embedded_storage, budget)
        for part in restarted:
            self.restarts[part] = self.restarts.get(part, 0) + 1
        if restarted:
            self._write_state()

    def _ask(self, timeout_s: float) -> dict[str, tuple[dict[str, Any] | None, BaseException | None]]:
        """Every started actor's snapshot, asked at once and waited for at most `timeout_s`:
        per actor (snapshot, None), (None, what asking raised), or no entry when it did not answer."""
        refs = {name: host.snapshot.remote() for name, host in dict(self.hosts).items() if name not in self.starting}
        if not refs:
            return {}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        answers: dict[str, tuple[dict[str, Any] | None, BaseException | None]] = {}
        for name, ref in refs.items():
            if ref in ready:
                try:
                    answers[name] = (ray.get(ref), None)
                except Exception as exc:  # noqa: BLE001 - dead, or its snapshot failed: this actor's problem
                    answers[name] = (None, exc)
        return answers

    def _deaths(self) -> dict[str, tuple[Death, str]]:
        """Actors to restart now, with why (one learner rank dead: the learner): dead or stalled,
        not answering health checks for `supervision.stall_s`, or left without a process by a
        failed restart."""
        stall_s = self.config.supervision.stall_s
        answers = self._ask(HEALTH_TIMEOUT_S)
        now = time.monotonic()
        dead: dict[str, tuple[Death, str]] = {}
        for name, slot in self.slots.items():
            key = slot.restart_unit
            if name in self.starting:
                continue
            if name not in self.hosts:
                dead[key] = (Death.START_FAILED, "not running: its last restart failed (see the log)")
            elif name not in answers:
                since = self._unanswered.setdefault(name, now)
                log.warning("actor %s has not answered health checks for %.0f s", name, now - since)
                if stall_s and now - since > stall_s:
                    dead[key] = (Death.UNRESPONSIVE, f"did not answer health checks for {now - since:.0f} s")
            else:
                self._unanswered.pop(name, None)
                found = death_of(*answers[name], stall_s)
                if found is not None:
                    dead[key] = found
        return dead

    def _restart(self, slot: Slot) -> None:
        """A fresh process for `slot` (every rank, for the learner), resuming where it left off."""
        slots = [s for s in self.slots.values() if s.restart_unit == slot.restart_unit]
        for s in slots:
            self._unanswered.pop(s.name, None)  # a fresh process: silence is counted anew
            with contextlib.suppress(Exception):
                ray.kill(self.hosts.pop(s.name), no_restart=True)
        rendezvous = ""
        if slot.ranked and len(slots) > 1 and self._learner_group is not None:
            strategy = PlacementGroupSchedulingStrategy(self._learner_group, placement_group_bundle_index=0)
            rendezvous = ray.get(_rendezvous.options(scheduling_strategy=strategy).remote())
        self._spawn(slots, rendezvous)

    def check(self) -> None:
        """Raise `CrashLoop` if the service ended on its own; callers poll this."""
        if self.failure is not None:
            raise CrashLoop(self.failure)

    def _open_run(self) -> Run:
        """A fresh run, or with `resume` the newest run that has a checkpoint and whose log is
        whole. Runs passed over are logged with the reason; a refusal is a `ConfigError`
        naming each run and why."""
        run, skipped = resumable_run(self.run_dir, self.config.streams) if self.resume else (None, [])
        for line in skipped:
            log.warning("--resume: passed over run %s", line)
        if run is None and self.resume is True:
            why = "; ".join(skipped) if skipped else "there is none"
            raise ConfigError(
                f"--resume: no run in {self.run_dir / RUNS} can be resumed ({why}); start one without --resume "
                "(or --resume=if-any, which starts one when none can be resumed)"
            )
        if run is None:
            run = new_run(self.run_dir, exact_end_offsets(self.config.streams, ROLLOUTS.name))
            log.info("run %s started in %s", run.run_id, run.directory)
            return run
        log.info("run %s resumed from %s", run.run_id, run.directory)
        return run

    def _place_learner(self, slots: list[Slot]) -> str:
        """A placement group with one bundle per learner rank; the ranks' rendezvous address."""
        resources = self.config.learner.resources
        bundle = {k: v for k, v in (("CPU", resources.num_cpus), ("GPU", resources.num_gpus)) if v > 0}
        if not bundle:  # nothing reserved: one rank, placed anywhere (config forbids ranks > 1 here)
            return ""
        self._learner_group = placement_group([dict(bundle) for _ in slots], strategy="PACK")
        try:
            ray.get(self._learner_group.ready(), timeout=120)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(
                f"the learner's placement group ({len(slots)} x {bundle}) did not fit in 120 s; Ray has "
                f"{ray.available_resources()}: lower learner.ranks or learner.resources, or add nodes"
            ) from None
        strategy = PlacementGroupSchedulingStrategy(self._learner_group, placement_group_bundle_index=0)
        return ray.get(_rendezvous.options(scheduling_strategy=strategy).remote()) if len(slots) > 1 else ""

    def _options(self, slot: Slot) -> dict[str, Any]:
        """Ray options of one actor: name, resources, threads, and its bundle for a learner rank."""
        options: dict[str, Any] = {
            "name": slot.name,
            "num_cpus": slot.resources.num_cpus,
            "num_gpus": slot.resources.num_gpus,
            "runtime_env": {
                "env_vars": {
                    **ACTOR_ENV,
                    "OMP_NUM_THREADS": str(slot.resources.threads),
                    SECRET_ENV: self.run.secret() if self.run else "",  # the collective weight path's
                    **self._password_env(),
                }
            },
        }
        if slot.ranked and self._learner_group is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self._learner_group, placement_group_bundle_index=slot.rank
            )
        return options

    def _password_env(self) -> dict[str, str]:
        """The SASL password's variable, for actors on other nodes (a local Ray's inherit it)."""
        name = self.config.streams.sasl_password_env
        return {name: os.environ[name]} if name and name in os.environ else {}

    def _write_state(self) -> None:
        with self._state_lock:  # the supervisor and the broker watch both write it
            self._write_state_unlocked()

    def _write_state_unlocked(self) -> None:
        targets = [
            # `process`, not `actor`: the series carry their own `actor` label (no `exported_actor`)
            {"targets": [addr], "labels": {"process": name, "job": "longtide"}}
            for name, addr in self.endpoints.items()
        ]
        prom_dir = self.run_dir / "prometheus"
        prom_dir.mkdir(exist_ok=True)
        atomic_write(prom_dir / "targets.json", json.dumps(targets, indent=2))
        state = {
            "bootstrap_servers": self.config.streams.bootstrap_servers,
            "endpoints": self.endpoints,
            "pid": os.getpid(),
            "started_at": time.time(),
            "run_dir": str(self.run_dir),
            "run_id": self.run.run_id if self.run else "",
            "restarts": self.restarts,
            "service_id": self.service_id,
            "pids": self.pids,
            "memory_http": (
                f"{self.config.memory.http_host}:{self.config.memory.http_port}" if self.config.memory.enabled else ""
            ),
        }
        atomic_write(self.run_dir / STATE_FILE, json.dumps(state, indent=2))

    def snapshots(self, timeout_s: float = HEALTH_TIMEOUT_S) -> dict[str, dict[str, Any]]:
        """Every actor's state, with its restart count. An actor that is starting, being restarted,
        dead or not answering within `timeout_s` answers `{"alive": False, "restarting": why}`:
        nothing one actor does can make this raise."""
        answers = self._ask(timeout_s)
        out: dict[str, dict[str, Any]] = {}
        for name in self.slots:
            snapshot, error = answers.get(name, (None, None))
            if snapshot is None:
                if name in self.starting:
                    why = "starting"
                elif name not in self.hosts:
                    why = "being restarted"
                elif error is not None:
                    why = f"{type(error).__name__}: {error}"
                else:
                    why = f"did not answer within {timeout_s:.0f} s"
                snapshot = {"alive": False, "error": None, "restarting": why}
            out[name] = {**snapshot, "restarts": self.restarts.get(name, 0)}
        return out

    def stop(self) -> None:
        """Stop everything, each step whatever the one before did; then end any process still
        tagged with this service (`ops.processes`): a stop at any moment, start-up included,
        leaves nothing behind."""
        self._halt.set()
        try:
            for step in (self._stop_supervisor, self._stop_actors, self._stop_ray, self._stop_broker):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the next steps must run regardless
                    log.exception("stopping: %s failed; going on", step.__name__)
        finally:
            left = processes.end(processes.tagged(self.service_id)) if self._tagged else []
            if left:
                log.warning("stopping: ended %d processes left behind: %s", len(left), ", ".join(left))
            if self._tagged:
                os.environ.pop(processes.TAG, None)
                self._tagged = False
            if self._lock is not None:  # a refused start leaves the running service's state alone
                (self.run_dir / STATE_FILE).unlink(missing_ok=True)
                self._lock.close()
                self._lock = None

    def _stop_supervisor(self) -> None:
        if self._supervisor is not None:
            self._supervisor.join(timeout=30)
            if self._supervisor.is_alive():
                log.warning("the supervisor is still restarting an actor; stopping anyway")
            self._supervisor = None

    def _stop_actors(self) -> None:
        if not self.hosts:
            return
        try:
            broker_gone = self.broker is not None and not self.broker.broker.running
            # with the broker gone, actors cannot flush or commit: don't wait on them long
            ray.get([h.stop.remote() for h in self.hosts.values()], timeout=5 if broker_gone else 60)
        except Exception as exc:  # noqa: BLE001 - shutting down regardless
            log.warning("actors did not stop cleanly: %s", exc)
        for host in list(self.hosts.values()):
            with contextlib.suppress(Exception):
                ray.kill(host)
        self.hosts.clear()

    def _stop_ray(self) -> None:
        if ray.is_initialized():
            with contextlib.suppress(ValueError):  # never created: nothing was published through Ray
                ray.kill(ray.get_actor(STORE_NAME))
            if self._learner_group is not None:
                remove_placement_group(self._learner_group)
                self._learner_group = None
        self._ray.stop()

    def _stop_broker(self) -> None:
        self._broker_halt.set()  # last: a broker the watch restarted dies with its thread
        for thread in (self._broker_watch, self._janitor):
            if thread is not None:
                thread.join(timeout=30)
        self._broker_watch = self._janitor = None
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()

    def __enter__(self) -> Service:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
