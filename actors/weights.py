"""The weight seam between the learner and the rollout actors: both sides use this module only.

Weights never travel through Kafka: `policy` announces a version and a `weights_ref` saying
where to fetch it.

- `ray://<store>/<version>`: the learner hands the state dict to the *weight store* (a small
  named Ray actor, `WeightStore`), which puts it in the object store itself, so it owns the
  object and the weights outlive a restarted learner; rollout actors ask the store for the
  reference and read the object (zero-copy on the store's node). The store keeps the last
  `keep` versions, so memory stays bounded. Nothing calls into the learner's process.
- `file://<path>`: a safetensors file, for runs without Ray (tests, one process).
- `nccl://` or `gloo://<host>:<port>/<version>` (`collective`): the learner's rank 0 sends the
  weights over torch.distributed straight into each receiver's memory (each vLLM worker's GPU
  with NCCL); see `actors.collective`. The backend follows the learner's device.

Floating-point tensors travel in the policy's inference dtype (`model.dtype`: bf16 halves the
bytes on GPUs), whatever precision the learner keeps for its master weights.
Both sides time a sync in `longtide_<kind>_weight_sync_seconds`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch
from prometheus_client import Counter, Gauge, Histogram
from safetensors.torch import load_file, save_file

from actors.collective import Address, CollectiveBackend, WeightSender, WeightsUnavailable, receive_weights
from actors.settings import STORE_NAME, Transport
from streams.kafka import Consumer, Message, StreamsConfig
from streams.logs import newest_of_run
from streams.topics import POLICY

log = logging.getLogger(__name__)


@cache
def weight_sync_seconds(kind: str) -> Histogram:
    """Time to publish (learner) or fetch and load (rollout, memory) one policy version."""
    return Histogram(
        f"longtide_{kind}_weight_sync_seconds",
        "Seconds to publish (learner) or fetch and load (rollout, memory) one version's weights.",
        ["actor"],
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    )


POLICY_SKIP_REASONS = ("other_run", "undecodable", "weights_unavailable", "bad_weights_ref")


@cache
def policy_metrics(kind: str) -> tuple[Gauge, Counter]:
    """(the loaded version, the `policy` records not followed) of a follower kind."""
    version = Gauge(
        f"longtide_{kind}_policy_version",
        "Policy version loaded (-1: none yet; an actor that reads with the base model starts there).",
        ["actor"],
    )
    skipped = Counter(
        f"longtide_{kind}_policy_records_skipped",
        "policy records not followed: another run's, undecodable, weights gone, or a reference no transport reads.",
        ["actor", "reason"],
    )
    return version, skipped


class Loads(Protocol):
    def load_published(self, weights_ref: str) -> None: ...


class PolicyFollower:
    """Follows one run's `policy` topic for an actor that generates with the policy (rollout,
    memory): reads the announcements, loads the newest version's weights into `engine` when it
    is newer than the loaded one, counts the records it passes over by reason, and times each
    sync (`longtide_<kind>_weight_sync_seconds`).

    `version` is the loaded version: `initial` at start (None: nothing may be generated yet;
    -1: the base model is a policy to generate with). When a version's weights cannot be
    fetched, `wait` (rollout) makes it None until a later announcement loads (with tensor
    parallelism some workers may already hold them, and a rollout must say which weights made
    it); without `wait` (memory: it reads with whatever it has, the learner may be done) the
    loaded version stays. A reference no transport reads keeps the loaded weights.
    `groups_consumed` is the learner's count from the newest record of the loaded version (it
    re-announces a version as it drops groups)."""

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        streams: StreamsConfig,
        run_id: str,
        engine: Loads,
        initial: int | None = None,
        lock: threading.Lock | None = None,
        wait: bool = True,
    ) -> None:
        """`lock`: held while weights load and `version` changes (an engine shared with another
        thread, such as a query endpoint)."""
        self.name = name
        self.kind = kind
        self.run_id = run_id
        self.engine = engine
        self.lock = lock or contextlib.nullcontext()
        self.version = initial
        self.wait = wait
        self.groups_consumed = 0
        self._version_gauge, self._skipped = policy_metrics(kind)
        for reason in POLICY_SKIP_REASONS:
            self._skipped.labels(name, reason)  # every series exists from the start, at 0
        self._show_version()
        self.reader = Consumer(
            streams, group_id=None, topics=[POLICY.name], client_id=f"{name}-policy", assign_all=True
        )

    def sync(self, timeout_ms: int = 0, records: Iterable[Message] | None = None) -> bool:
        """Load the newest announced version of the run if it is newer than the loaded one;
        `records`: what to look through instead of the next poll (at start: the whole topic).
        True when new weights were loaded."""
        latest, skipped = newest_of_run(self.reader.poll(timeout_ms) if records is None else records, self.run_id)
        for reason, count in skipped.items():
            self._skipped.labels(self.name, reason).inc(count)
        if latest is not None and latest.version == self.version:  # a re-announcement: groups dropped
            self.groups_consumed = max(self.groups_consumed, latest.groups_consumed)
        if latest is None or (self.version is not None and latest.version <= self.version):
            return False
        start = time.perf_counter()
        try:
            with self.lock:
                self.engine.load_published(latest.weights_ref)
                self.version = latest.version
        except WeightsUnavailable as exc:  # newer versions are staged: their announcements follow
            log.warning("%s: %s; waiting for the next announcement", self.name, exc)
            self._skipped.labels(self.name, "weights_unavailable").inc()
            if self.wait:
                with self.lock:
                    self.version = None
                self._show_version()
            return False
        except ValueError as exc:  # a reference no transport understands: keep the loaded weights
            log.warning("%s: policy version %d skipped: %s", self.name, latest.version, exc)
            self._skipped.labels(self.name, "bad_weights_ref").inc()
            return False
        weight_sync_seconds(self.kind).labels(self.name).observe(time.perf_counter() - start)
        self.groups_consumed = latest.groups_consumed
        self._show_version()
        return True

    def _show_version(self) -> None:
        self._version_gauge.labels(self.name).set(-1 if self.version is None else self.version)

    def close(self) -> None:
        self.reader.close()


def wire_state(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy; floating tensors cast to `dtype` (None keeps theirs).

    Tied weights become separate tensors, as safetensors needs."""
    out = {}
    for key, value in state.items():
        value = value.detach()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value.to("cpu", copy=True).contiguous()
    return out


class WeightStore:
    """Holds object-store references to the last `keep` versions (hosted as a named Ray actor)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._refs: dict[int, Any] = {}

    def put(self, version: int, state: dict[str, torch.Tensor]) -> None:
        """Own `state` in the object store as `version`; forget versions beyond the last `keep`."""
        import ray

        self._refs.pop(version, None)
        self._refs[version] = ray.put(state)
        for old in list(self._refs)[: -self.keep]:  # the oldest puts (a new run restarts at 0)
            del self._refs[old]

    def get(self, version: int) -> list[Any]:
        """[the ObjectRef of `version`] (boxed, so Ray returns the reference, not the value), or
        [] when it is no longer held."""
        return [self._refs[version]] if version in self._refs else []

    def versions(self) -> list[int]:
        return sorted(self._refs)


QUIET = {"enable_task_events": False}
"""Calls made every step for the service's life: Ray's GCS keeps no task events of them."""


def weight_store(keep: int, name: str = STORE_NAME) -> Any:
    """The named weight-store actor of this Ray namespace, created on first use."""
    import ray

    actor = ray.remote(num_cpus=0, max_concurrency=8)(WeightStore)
    return actor.options(name=name, get_if_exists=True, lifetime="detached").remote(keep)


class WeightPublisher:
    """Learner side: makes a version's weights fetchable and returns its `weights_ref`."""

    def __init__(
        self,
        transport: Transport,
        *,
        directory: Path,
        keep: int,
        dtype: torch.dtype | None,
        actor: str,
        device: str,
    ) -> None:
        """`device` is the learner's ("cuda" or "cpu"): the collective path sends over NCCL
        from a GPU learner and gloo from a CPU one, wherever `full_state` leaves the tensors
        (ZeRO-3 gathers them to the CPU)."""
        self.transport = transport
        self.backend = CollectiveBackend.NCCL if torch.device(device).type == "cuda" else CollectiveBackend.GLOO
        self.directory = directory
        self.keep = keep
        self.dtype = dtype
        self.actor = actor
        self._store: Any = None
        self._sender: WeightSender | None = None

    def publish(self, version: int, state: dict[str, torch.Tensor]) -> str:
        start = time.perf_counter()
        if self.transport is Transport.COLLECTIVE:
            ref = self._stage(version, state)
        elif self.transport is Transport.RAY:
            ref = self._put_ray(version, wire_state(state, self.dtype))
        else:
            ref = self._put_file(version, wire_state(state, self.dtype))
        weight_sync_seconds("learner").labels(self.actor).observe(time.perf_counter() - start)
        return ref

    def _stage(self, version: int, state: dict[str, torch.Tensor]) -> str:
        if self._sender is None:
            self._sender = WeightSender(self.backend, host=node_address(), dtype=self.dtype)
        return self._sender.stage(version, state)

    def _put_ray(self, version: int, state: dict[str, torch.Tensor]) -> str:
        import ray

        if self._store is None:
            self._store = weight_store(self.keep)
        ray.get(self._store.put.options(**QUIET).remote(version, state))
        return f"ray://{STORE_NAME}/{version}"

    def _put_file(self, version: int, state: dict[str, torch.Tensor]) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"policy-v{version}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.replace(path)
        for old in sorted(self.directory.glob("policy-v*.safetensors"), key=lambda p: p.stat().st_mtime)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path.resolve().as_uri()

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()


def node_address() -> str:
    """This node's address as other Ray nodes reach it (loopback without Ray)."""
    import ray

    return ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"


def fetch_weights(ref: str) -> dict[str, torch.Tensor]:
    """Rollout side: resolve a `weights_ref` to a state dict."""
    if Address.is_ref(ref):
        return receive_weights(ref)
    scheme, _, rest = ref.partition("://")
    if scheme == "file":
        if not Path(rest).is_file():
            raise WeightsUnavailable(f"{ref}: the file is gone (the learner keeps the last versions only)")
        return load_file(rest)
    if scheme == "ray":
        import ray

        store_name, _, version = rest.rpartition("/")
        store = ray.get_actor(store_name)
        boxed = ray.get(store.get.options(**QUIET).remote(int(version)))
        if not boxed:
            held = ray.get(store.versions.options(**QUIET).remote())
            raise WeightsUnavailable(f"{ref}: version {version} is no longer held (held: {held})")
        return ray.get(boxed[0])
    raise ValueError(f"weights_ref {ref!r}: unknown scheme {scheme!r} (expected ray://, file://, gloo:// or nccl://)")
