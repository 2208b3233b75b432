"""`longtide plan`: what a configuration starts, what each actor asks Ray for, and whether it fits.

longtide plan --config ops/configs/qwenlong-l15.yaml --nodes 1 --node-cpus 64 --node-gpus 8

A dry run: nothing starts. Actors are packed onto the given nodes first-fit (largest GPU, then
CPU demand first), the learner's ranks as one placement group; a configuration that cannot be
placed, or whose settings contradict its resources, is reported with the field to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.learner.config import Backend
from ops.config import LongtideConfig
from ops.slots import Slot, actor_plan


@dataclass(frozen=True)
class Cluster:
    nodes: int
    cpus: float
    """CPUs per node."""
    gpus: float
    """GPUs per node."""


def place(slots: list[Slot], cluster: Cluster) -> tuple[dict[str, int], list[str]]:
    """First-fit-decreasing: actor name -> node index, and what could not be placed."""
    free = [[cluster.cpus, cluster.gpus] for _ in range(cluster.nodes)]
    where: dict[str, int] = {}
    unplaced = []
    for slot in sorted(slots, key=lambda s: (-s.resources.num_gpus, -s.resources.num_cpus, s.name)):
        need = (slot.resources.num_cpus, slot.resources.num_gpus)
        node = next((i for i, (c, g) in enumerate(free) if c >= need[0] and g >= need[1]), None)
        if node is None:
            unplaced.append(f"{slot.name} ({need[0]:g} CPUs, {need[1]:g} GPUs)")
            continue
        free[node][0] -= need[0]
        free[node][1] -= need[1]
        where[slot.name] = node
    return where, unplaced


def problems(config: LongtideConfig, cluster: Cluster) -> list[str]:
    """Everything that would stop this configuration from running as written on `cluster`."""
    out = []
    _, unplaced = place(actor_plan(config), cluster)
    if unplaced:
        out.append(
            f"does not fit {cluster.nodes} node(s) of {cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs: "
            f"no room for {', '.join(unplaced)}; lower *.resources or *.instances, or add nodes"
        )
    learner, rollout = config.learner, config.rollout
    wants_cuda = learner.device == "cuda" or (learner.device == "auto" and cluster.gpus > 0)
    if wants_cuda and learner.resources.num_gpus < 1:
        out.append(
            f"learner.device={learner.device} on GPU nodes but learner.resources.num_gpus="
            f"{learner.resources.num_gpus:g}: Ray gives the ranks no GPU; set learner.resources.num_gpus=1"
        )
    if cluster.gpus > 0 and rollout.engine.value != "transformers" and rollout.resources.num_gpus < 1:
        out.append(
            "rollout.resources.num_gpus=0 on GPU nodes: vLLM would run on CPU; set rollout.resources.num_gpus "
            "(its tensor-parallel size)"
        )
    if rollout.resources.num_gpus > cluster.gpus:
        out.append(
            f"rollout.resources.num_gpus ({rollout.resources.num_gpus:g}) exceeds a node's {cluster.gpus:g} GPUs"
        )
    longest = config.synthesis.context_tokens + rollout.max_new_tokens
    if rollout.vllm.max_model_len and rollout.vllm.max_model_len < longest:
        out.append(
            f"rollout.vllm.max_model_len ({rollout.vllm.max_model_len}) < synthesis.context_tokens + "
            f"rollout.max_new_tokens ({longest}): long prompts would be refused"
        )
    if learner.backend is Backend.DEEPSPEED and learner.ranks > 1 and learner.micro_batch_tokens < longest:
        out.append(
            f"learner.micro_batch_tokens ({learner.micro_batch_tokens}) < one full sequence ({longest}): "
            "such sequences get a micro-batch of their own, which is allowed, but check the memory"
        )
    return out


def render_plan(config: LongtideConfig, cluster: Cluster) -> str:
    slots = actor_plan(config)
    where, _ = place(slots, cluster)
    lines = [f"{'actor':<28} {'CPUs':>5} {'GPUs':>5} {'threads':>7}  node"]
    for slot in slots:
        node = where.get(slot.name)
        r = slot.resources
        lines.append(
            f"{slot.name:<28} {r.num_cpus:>5g} {r.num_gpus:>5g} {r.threads:>7}  {'-' if node is None else node}"
        )
    cpus = sum(s.resources.num_cpus for s in slots)
    gpus = sum(s.resources.num_gpus for s in slots)
    lines.append(f"{'total':<28} {cpus:>5g} {gpus:>5g}")
    lines.append(
        f"learner: {config.learner.backend.value} x {config.learner.ranks} rank(s)"
        + (f", ZeRO-{config.learner.zero_stage}" if config.learner.backend is Backend.DEEPSPEED else "")
        + f", {config.learner.precision.value}, device {config.learner.device}"
        + f"; rollout engine: {config.rollout.engine.value}, model dtype {config.model.dtype}"
    )
    found = problems(config, cluster)
    lines.append(
        f"cluster: {cluster.nodes} node(s) x {cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs: "
        + ("fits" if not found else "does NOT run as written")
    )
    lines += [f"  - {p}" for p in found]
    return "\n".join(lines)
