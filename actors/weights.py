"""Publishing and fetching policy weights. Weights never travel through Kafka: `policy`
announces a version and a `weights_ref` naming where to fetch it.

- `ray://<learner actor name>/<version>`: the learner keeps the state dict in the Ray object
  store (`ray.put`) for the last `keep` versions; rollout actors fetch it through the
  learner's actor handle, zero-copy on the same node.
- `file://<path>`: a safetensors file, for runs without Ray (tests, one process).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


class Transport(enum.StrEnum):
    RAY = "ray"
    FILE = "file"


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy (tied weights become separate tensors, as safetensors needs)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class WeightPublisher:
    def __init__(self, transport: Transport, *, actor_name: str, directory: Path, keep: int = 3) -> None:
        self.transport = transport
        self.actor_name = actor_name
        self.directory = directory
        self.keep = keep
        self._refs: dict[int, Any] = {}

    def publish(self, version: int, model: torch.nn.Module) -> str:
        state = cpu_state(model)
        if self.transport is Transport.RAY:
            import ray

            self._refs[version] = ray.put(state)
            for old in sorted(self._refs)[: -self.keep]:
                del self._refs[old]
            return f"ray://{self.actor_name}/{version}"
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"policy-v{version}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.replace(path)
        for old in sorted(self.directory.glob("policy-v*.safetensors"), key=lambda p: p.stat().st_mtime)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path.resolve().as_uri()

    def weights(self, version: int) -> Any:
        """The object-store reference of `version` (called remotely by rollout actors)."""
        if version not in self._refs:
            raise KeyError(f"version {version} is no longer held (kept: {sorted(self._refs)})")
        return self._refs[version]


def fetch_weights(ref: str) -> dict[str, torch.Tensor]:
    """Resolve a `weights_ref` to a state dict."""
    scheme, _, rest = ref.partition("://")
    if scheme == "file":
        return load_file(rest)
    if scheme == "ray":
        import ray

        actor_name, _, version = rest.rpartition("/")
        learner = ray.get_actor(actor_name)
        inner = ray.get(learner.call.remote("weights", int(version)))
        return ray.get(inner)
    raise ValueError(f"weights_ref {ref!r}: unknown scheme {scheme!r} (expected ray:// or file://)")
