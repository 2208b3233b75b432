"""What the launcher starts: one `Slot` per actor (`actor_plan`), and how each is built inside
its own Ray worker (`build_actor`, through the `KINDS` registry).

This module is imported by the launcher and by every actor's worker (the factory Ray ships is
`build_actor`), so it imports no actor implementation at the top: each builder imports its
actor where it runs, and a worker loads only its own actor's libraries (the ingest worker no
torch, the reward worker no model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.settings import Resources
from ops.config import LongtideConfig
from ops.runs import Run
from streams.blobs import BlobStore, ClaimCheck
from streams.topics import DOCS_RAW, ROLLOUTS, SCORED, TASKS, consumer_group

LEARNER_NAME = "longtide-learner"


def retention_readers(config: LongtideConfig) -> dict[str, tuple[str, ...]]:
    """The topics retention may trim on the embedded log, with the consumer groups that read each
    (`streams.retention.LogJanitor`): every one of them commits only what it no longer needs (the
    learner after the checkpoint that covers it), so what they have all committed past may go.
    Not `docs` (synthesis and the memory actor rebuild lost state by reading it from before their
    committed offsets), `policy` (followers read it from the start), `dlq` or `memory`."""
    scored = (LEARNER_NAME, consumer_group("synthesis")) if config.synthesis.retrospect.enabled else (LEARNER_NAME,)
    return {
        DOCS_RAW.name: (consumer_group("ingest"),),
        TASKS.name: (consumer_group("rollout"),),
        ROLLOUTS.name: (consumer_group("reward"),),
        SCORED.name: scored,
    }


@dataclass(frozen=True)
class Slot:
    """One actor to start: what it is, its name, what Ray reserves for it, its learner rank."""

    kind: str
    name: str
    resources: Resources
    rank: int = 0
    unit: str = ""
    """What the supervisor restarts together (the learner's ranks: rank 0's name); "": itself."""

    @property
    def ranked(self) -> bool:
        """Its kind's slots are data-parallel ranks: placed in one placement group, their
        rendezvous shared, restarted together (`ActorKind.ranked`)."""
        return KINDS[self.kind].ranked

    @property
    def restart_unit(self) -> str:
        return self.unit or self.name


@dataclass(frozen=True)
class Context:
    """What every builder gets besides its slot."""

    config: LongtideConfig
    model_path: str
    run: Run
    rendezvous: str = ""
    """host:port of the learner ranks' process group (more than one rank)."""

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir).resolve()

    def claim(self) -> ClaimCheck:
        uri = self.config.streams.blob_uri or str(self.run_dir / "blobs")
        return ClaimCheck(BlobStore(uri), self.config.streams.inline_limit_bytes)


def _ingest(slot: Slot, ctx: Context) -> Any:
    from actors.ingest.actor import IngestActor
    from actors.tokens import load_token_counter

    config = ctx.config
    return IngestActor(
        name=slot.name,
        config=config.ingest,
        streams=config.streams,
        claim=ctx.claim(),
        count_tokens=load_token_counter(ctx.model_path),
    )


def _synthesis(slot: Slot, ctx: Context) -> Any:
    from actors.synthesis.actor import SynthesisActor
    from actors.tokens import load_token_counter

    return SynthesisActor(
        name=slot.name,
        config=ctx.config.synthesis,
        streams=ctx.config.streams,
        claim=ctx.claim(),
        count_tokens=load_token_counter(ctx.model_path),
        store=str(ctx.run_dir / "synthesis" / f"{slot.name}.sqlite"),
    )


def _rollout(slot: Slot, ctx: Context) -> Any:
    from actors.rollout.actor import RolloutActor

    config = ctx.config
    return RolloutActor(
        name=slot.name,
        config=config.rollout,
        streams=config.streams,
        model_path=ctx.model_path,
        claim=ctx.claim(),
        max_staleness=config.learner.max_staleness,
        groups_per_step=config.learner.groups_per_step,
        dtype=config.model.dtype,
        run_id=ctx.run.run_id,
        rollouts_base=ctx.run.rollouts_base,
        memory_agent=config.memory_agent,
        task_types=config.synthesis.task_types,
        prompt_format=config.model.prompt_format,
    )


def _reward(slot: Slot, ctx: Context) -> Any:
    from actors.reward.actor import RewardActor

    return RewardActor(name=slot.name, config=ctx.config.reward, streams=ctx.config.streams)


def _memory(slot: Slot, ctx: Context) -> Any:
    from actors.memory.actor import MemoryActor

    config = ctx.config
    return MemoryActor(
        name=slot.name,
        config=config.memory,
        agent=config.memory_agent,
        streams=config.streams,
        model_path=ctx.model_path,
        claim=ctx.claim(),
        run_dir=ctx.run.directory,  # a run's memories are its own (a new run re-reads the log)
        dtype=config.model.dtype,
        run_id=ctx.run.run_id,
        prompt_format=config.model.prompt_format,
    )


def _store_heldout(config: LongtideConfig, model_path: Any) -> list[Any]:
    """The held-out store tasks of the run's task mix, from its held-out documents (none when
    no document source is configured or the mix has no store type)."""
    from actors.modeling import load_policy_tokenizer, token_counter
    from ops.heldout import read_documents, store_heldout, store_types

    source, learner = config.heldout_source(), config.learner
    if not source or not store_types(config.synthesis.task_types) or not learner.heldout_store_tasks:
        return []
    return store_heldout(
        read_documents(source),
        synthesis=config.synthesis,
        task_types=config.synthesis.task_types,
        lengths=learner.heldout_store_lengths,
        per_cell=learner.heldout_store_tasks,
        count_tokens=token_counter(load_policy_tokenizer(model_path)),
        seed=learner.heldout_seed,
    )


def _learner(slot: Slot, ctx: Context, **extra: Any) -> Any:
    """Rank 0: the `Learner`; ranks 1..N−1: followers running what rank 0 broadcasts.
    `extra`: further `Learner` arguments (a replay's range and source run)."""
    import torch

    from actors.learner.actor import Learner
    from actors.learner.ranks import RankFollower, RankGroup
    from actors.learner.setup import HeldoutSpec, build_trainer, resolve_device
    from actors.modeling import torch_dtype
    from actors.sampling import SamplingSpec

    config, learner = ctx.config, ctx.config.learner
    torch.set_num_threads(learner.resources.threads)
    sampling = SamplingSpec(config.rollout.temperature, config.rollout.top_p)
    group = None
    if learner.ranks > 1:
        backend = "nccl" if resolve_device(learner.device) == "cuda" else "gloo"
        group = RankGroup(rank=slot.rank, world=learner.ranks, address=ctx.rendezvous, backend=backend)
    if slot.rank > 0:
        trainer, _ = build_trainer(learner, ctx.model_path, sampling, group)
        return RankFollower(name=slot.name, trainer=trainer, group=group)
    heldout = HeldoutSpec(
        task_types=config.synthesis.task_types,
        context_tokens=config.synthesis.context_tokens,
        entities_per_world=config.feed.entities_per_world,
        max_new_tokens=config.rollout.max_new_tokens,
        memory_agent=config.memory_agent,
        memory_windows=learner.heldout_memory_windows,
        prompt_format=config.model.prompt_format,
        rule=config.reward.rule,
        store_tasks=tuple(_store_heldout(config, ctx.model_path)),
    )
    return Learner(
        name=slot.name,
        config=learner,
        streams=config.streams,
        model_path=ctx.model_path,
        claim=ctx.claim(),
        run_dir=ctx.run.directory,
        sampling=sampling,
        heldout=heldout,
        weights_dtype=torch_dtype(config.model.dtype),
        group=group,
        run_id=ctx.run.run_id,
        **extra,
    )


@dataclass(frozen=True)
class ActorKind:
    """How the launcher treats an actor kind."""

    build: Callable[[Slot, Context], Any]
    """Builds the plain actor inside its worker."""
    ranked: bool = False
    """Its slots are data-parallel ranks (placed together, one rendezvous, restarted together)."""


KINDS: dict[str, ActorKind] = {
    "ingest": ActorKind(_ingest),
    "synthesis": ActorKind(_synthesis),
    "rollout": ActorKind(_rollout),
    "reward": ActorKind(_reward),
    "memory": ActorKind(_memory),
    "learner": ActorKind(_learner, ranked=True),
}
"""Every actor kind (the kinds of `ops.supervisor.KINDS`)."""


def build_actor(slot: Slot, config: LongtideConfig, model_path: str, run: Run, rendezvous: str = "") -> Any:
    """Construct one plain actor (runs inside its Ray worker, or in-process in tests)."""
    return KINDS[slot.kind].build(slot, Context(config, model_path, run, rendezvous))


def build_learner(config: LongtideConfig, model_path: str, run: Run, name: str, **extra: Any) -> Any:
    """A single-rank learner in this process (replays); `name` is also its consumer group."""
    return _learner(Slot("learner", name, config.learner.resources), Context(config, model_path, run), **extra)


def actor_plan(config: LongtideConfig) -> list[Slot]:
    """Every actor to start, with its Ray resources."""
    plan = [Slot("ingest", f"ingest-{i}", config.ingest.resources) for i in range(config.ingest.instances)]
    plan += [Slot("synthesis", "synthesis-0", config.synthesis.resources)]
    plan += [Slot("rollout", f"rollout-{i}", config.rollout.resources) for i in range(config.rollout.instances)]
    plan += [Slot("reward", f"reward-{i}", config.reward.resources) for i in range(config.reward.instances)]
    if config.memory.enabled:
        plan += [Slot("memory", "memory-0", config.memory.resources)]
    plan += [
        Slot(
            "learner",
            LEARNER_NAME if r == 0 else f"{LEARNER_NAME}-rank-{r}",
            config.learner.resources,
            rank=r,
            unit=LEARNER_NAME,
        )
        for r in range(config.learner.ranks)
    ]
    return plan


def prepare_model(config: LongtideConfig, run_dir: Path) -> str:
    """The policy path: the configured one, or a tiny model built in the run directory."""
    if config.model.path:
        return config.model.path
    path = run_dir / "model"
    if not (path / "config.json").exists():
        from actors.modeling import build_tiny_policy  # torch: only when a model is built here

        build_tiny_policy(path, config.model.tiny)
    return str(path.resolve())
