"""Ray for the service: the cluster at `ray.address` when one is given, else a local one that this
service starts, binds to loopback and shuts down."""

from __future__ import annotations

import os
import signal

import ray
import ray._private.ray_constants as ray_constants

from ops.config import RayConfig
from streams.broker import free_port


class LocalRay:
    def __init__(self, cfg: RayConfig, env_vars: dict[str, str]) -> None:
        self.cfg = cfg
        self.env_vars = env_vars
        """Every Ray worker's environment (threads, unbuffered output)."""
        self._started = False
        self._cluster_setting: bool | None = None

    def start(self) -> None:
        """Join or start Ray; nothing when this process already has it (a caller's own cluster)."""
        if ray.is_initialized():
            return
        cfg = self.cfg
        local = not cfg.address
        node_ip = cfg.node_ip_address or ("127.0.0.1" if local else None)
        if local:
            if node_ip in ("127.0.0.1", "::1"):
                # Ray maps a loopback node address back to the machine's own (services.py,
                # resolve_ip_for_localhost) unless it believes no cluster can form: only then do
                # the GCS, raylet, workers and agents all bind loopback. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
                # is that switch, read when ray is imported, so its constant is set here.
                self._cluster_setting = ray_constants.ENABLE_RAY_CLUSTER
                ray_constants.ENABLE_RAY_CLUSTER = False
            # the autoscaler's metrics port is fixed by default: two local services would collide
            os.environ.setdefault("AUTOSCALER_METRIC_PORT", str(free_port(node_ip or "127.0.0.1")))
        # ray.init installs its own SIGTERM handler, which kills the driver without cleanup;
        # keep the caller's so SIGTERM still stops actors, Ray and the broker cleanly.
        previous = signal.getsignal(signal.SIGTERM)
        ray.init(
            address=cfg.address or None,
            namespace=cfg.namespace,
            num_cpus=None if cfg.address else (cfg.num_cpus or None),
            num_gpus=None if cfg.address or cfg.num_gpus < 0 else cfg.num_gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": self.env_vars},
            configure_logging=False,
            _node_ip_address=node_ip,
        )
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)
        self._started = True

    def stop(self) -> None:
        """Shut down a Ray this service started (a joined cluster goes on)."""
        if self._started:
            self._started = False
            ray.shutdown()
        if self._cluster_setting is not None:  # as it was before this service bound Ray to loopback
            ray_constants.ENABLE_RAY_CLUSTER, self._cluster_setting = self._cluster_setting, None
