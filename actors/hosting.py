"""The thin Ray wrapper: places a plain actor in a Ray worker and runs its loop in a thread.

Every actor class has `run(stop: threading.Event)` and `snapshot() -> dict`; the host adds a
Prometheus endpoint on a free port and lets the launcher start, inspect and stop it.
`Resources` is what each component asks Ray for (its config's `resources` field).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import ray
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.metrics_core import Metric

from streams.broker import free_port

log = logging.getLogger(__name__)


class OwnMetrics:
    """A registry view for one process's endpoint: its own `longtide_*` families (those whose
    name starts with one of `prefixes`) and the process and Python runtime collectors (RSS,
    CPU, GC). Every process imports every actor module, so the global registry holds every
    actor's families; without this each endpoint would show the others' at 0."""

    RUNTIME = ("process_", "python_")

    def __init__(self, *prefixes: str) -> None:
        self.prefixes = prefixes

    def collect(self) -> list[Metric]:
        return [m for m in REGISTRY.collect() if m.name.startswith(self.prefixes + self.RUNTIME)]


def serve_metrics(host: str, *prefixes: str) -> str:
    """Serve this process's own families (`OwnMetrics`) on a free port of `host`; the address
    Prometheus should scrape: host:port, or for a wildcard bind (0.0.0.0, in containers) this
    node's address (Ray's, else the hostname's)."""
    port = free_port(host)
    start_http_server(port, addr=host, registry=OwnMetrics(*prefixes))  # type: ignore[arg-type]
    if host in ("0.0.0.0", "::"):  # the address other nodes reach this one at (no Ray needed)
        host = ray.util.get_node_ip_address()
    return f"{host}:{port}"


class LoopStop(threading.Event):
    """The stop event an actor's loop polls (`while not stop.is_set()`), which also remembers when
    it was last polled: every loop checks it once per round, so the time since the last check is
    how long the loop has been stuck in one round (a hung engine call, a lock never released).
    The supervisor restarts an actor whose loop has not come round for `supervision.stall_s`."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = time.monotonic()

    def is_set(self) -> bool:
        self.checked = time.monotonic()
        return super().is_set()

    def wait(self, timeout: float | None = None) -> bool:
        self.checked = time.monotonic()
        stopped = super().wait(timeout)
        self.checked = time.monotonic()
        return stopped

    def age(self) -> float:
        """Seconds since the loop last checked in."""
        return time.monotonic() - self.checked


class ActorHost:
    """Builds the actor from `factory` inside the worker process and drives it."""

    def __init__(self, factory: Callable[[], Any], metrics_host: str = "127.0.0.1", kind: str = "") -> None:
        """`kind`: the actor's kind, whose `longtide_<kind>_*` families its endpoint serves;
        `metrics_host` empty: no endpoint (`metrics.enabled=false`)."""
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        self.metrics_address = serve_metrics(metrics_host, f"longtide_{kind}_") if metrics_host else ""
        self.actor = factory()
        self._stop = LoopStop()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> tuple[str, int]:
        """Start the actor's loop; its metrics address ("" with none) and this process's pid."""
        self._thread = threading.Thread(target=self._run, name="actor-loop", daemon=True)
        self._thread.start()
        return self.metrics_address, os.getpid()

    def _run(self) -> None:
        try:
            self.actor.run(self._stop)
        except Exception:  # noqa: BLE001 - reported through snapshot()
            self.error = traceback.format_exc()
            log.error("actor loop died:\n%s", self.error)

    @ray.method(enable_task_events=False)  # asked every few seconds for the service's life: Ray's
    def snapshot(self) -> dict[str, Any]:  # GCS would keep each call's events (issue 22's soak: +44% RSS)
        alive = self._thread is not None and self._thread.is_alive()
        return {
            **self.actor.snapshot(),
            "alive": alive,
            "error": self.error,
            "metrics": self.metrics_address,
            "pid": os.getpid(),
            "loop_age_s": round(self._stop.age(), 1) if alive else None,
        }

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():  # (a stop may come before the start)
            self._thread.join(timeout_s)
        close = getattr(self.actor, "close", None)
        if close is not None:
            close()


RayActorHost = ray.remote(max_concurrency=4)(ActorHost)
