"""The learner's data-parallel ranks: one process group among them, rank 0 leading.

Rank 0 is the learner actor proper (Kafka, batches, publishing, offsets). It sends every
operation to the other ranks with `broadcast` before doing its own share, and the other
ranks (`RankFollower`) run the same operation on their shard: every collective (ZeRO's
reduce-scatter, a ZeRO-3 gather) then happens on all ranks in the same order. Objects travel
over a gloo group even when gradients go over NCCL.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class RankGroup:
    """torch.distributed among the learner's ranks (gloo on CPU, NCCL for tensors on GPU)."""

    def __init__(self, *, rank: int, world: int, address: str, backend: str, timeout_s: float = 1800.0) -> None:
        host, _, port = address.rpartition(":")
        os.environ.update(
            {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": "0", "MASTER_ADDR": host, "MASTER_PORT": port}
        )
        self.rank, self.world = rank, world
        timeout = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=world, timeout=timeout)
        self._objects = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's `obj`, on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._objects)
        return box[0]

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Element-wise sum over ranks (same keys on every rank)."""
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(tensor, group=self._objects)
        return dict(zip(keys, tensor.tolist(), strict=True))

    def close(self, wait_s: float = 30.0) -> None:
        """Leave the group once every rank is leaving (at most `wait_s`): a rank that tears its
        gloo pairs down while another still talks to it can abort the process at exit
        ("terminate called without an active exception")."""
        if not dist.is_initialized():
            return
        try:
            dist.monitored_barrier(group=self._objects, timeout=datetime.timedelta(seconds=wait_s))
        except RuntimeError as exc:  # a rank gone or stuck: leave anyway
            log.warning("rank %d leaves without the others: %s", self.rank, exc)
        dist.destroy_process_group()


class RankFollower:
    """Ranks 1..N−1: run what rank 0 broadcasts on the local trainer until told to stop.

    Operations are (method name, args) pairs on this rank's own `Trainer`, inside the learner's
    rank group; nothing outside that group can send them.
    """

    OPERATIONS = frozenset({"step", "reset_optimizer", "set_reference", "full_state", "save_state", "load_state"})

    def __init__(self, *, name: str, trainer: Any, group: RankGroup) -> None:
        self.name = name
        self.trainer = trainer
        self.group = group
        self.operations = 0
        self.done = False

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            op, args = self.group.broadcast()
            if op == "stop":
                break
            if op not in self.OPERATIONS:
                raise ValueError(f"{self.name}: unknown rank operation {op!r}")
            getattr(self.trainer, op)(*args)
            self.operations += 1
        self.done = True

    def snapshot(self) -> dict[str, Any]:
        return {"actor": self.name, "rank": self.group.rank, "operations": self.operations, "done": self.done}

    def close(self) -> None:
        self.group.close()


class Leader:
    """Rank 0's handle on the trainers: each operation is broadcast, then run locally."""

    def __init__(self, trainer: Any, group: RankGroup | None) -> None:
        self.trainer = trainer
        self.group = group

    @property
    def module(self) -> Any:
        return self.trainer.module

    def _everywhere(self, op: str, *args: Any) -> Any:
        if self.group is not None:
            self.group.broadcast((op, args))
        return getattr(self.trainer, op)(*args)

    def step(self, rows: Any, phase: Any, updates: Any = None) -> dict[str, float]:
        return self._everywhere("step", rows, phase, updates)

    def set_reference(self, model_dir: str = "") -> None:
        self._everywhere("set_reference", model_dir)

    def reset_optimizer(self, lr: float) -> None:
        self._everywhere("reset_optimizer", lr)

    def full_state(self) -> dict[str, torch.Tensor]:
        return self._everywhere("full_state")

    def save_state(self, directory: str) -> None:
        self._everywhere("save_state", directory)

    def load_state(self, directory: str, model_dir: str) -> None:
        self._everywhere("load_state", directory, model_dir)

    def stop(self) -> None:
        """Release the other ranks' loops (they exit after their current operation)."""
        if self.group is not None:
            self.group.broadcast(("stop", ()))
