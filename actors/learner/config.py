"""The learner's configuration (section `learner`): algorithm, backend, placement, memory, and
the choices its fields take (the enums and settings the pure functions of this package read).
Importable without torch: the CLI and the launcher read it without loading a model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from actors.learner.sampler import DryPolicy, SamplerConfig
from actors.settings import Resources, Transport


class AdvantageNorm(enum.StrEnum):
    GROUP = "group"
    """GRPO: (r − group mean) / (group std + ε)."""
    GROUP_MEAN = "group_mean"
    """Dr.GRPO and MemAgent: r − group mean, unscaled."""
    TASK_BATCH = "task_batch"
    """QwenLong-L1.5: (r − group mean) / (std of every reward of the same task type in the batch + ε)."""


class HeadKernel(enum.StrEnum):
    CHUNKED = "chunked"
    """The output head `chunk_tokens` rows at a time under activation checkpointing (any device)."""
    LIGER = "liger"
    """liger-kernel's fused linear cross-entropy (CUDA, top_p = 1, ZeRO stage < 3)."""


class PolicyLoss(enum.StrEnum):
    DAPO = "dapo"
    """Token-level mean over the update's tokens (DAPO; QwenLong-L1.5)."""
    GRPO = "grpo"
    """Sequence-level: each row's token mean, then the mean over rows (the original GRPO)."""


class Correction(enum.StrEnum):
    DECOUPLED = "decoupled"
    """AReaL's decoupled PPO: clip against π_prox, weight by π_prox / π_behav."""
    NAIVE = "naive"
    """Plain PPO against the behaviour policy (the staleness ablation's baseline)."""


class BehaviourWeight(enum.StrEnum):
    CAP = "cap"
    """w = min(π_prox / π_behav, cap)."""
    MASK = "mask"
    """w = π_prox / π_behav, and 0 where it exceeds the cap (the token is left out)."""


@dataclass(frozen=True)
class PolicyObjective:
    """What the policy loss needs from the learner's config."""

    loss: PolicyLoss = PolicyLoss.DAPO
    correction: Correction = Correction.DECOUPLED
    clip_low: float = 0.2
    clip_high: float = 0.28
    behaviour_weight: BehaviourWeight = BehaviourWeight.CAP
    behaviour_weight_cap: float = 5.0
    kl_coef: float = 0.0


class Backend(enum.StrEnum):
    TORCH = "torch"
    """One process, plain PyTorch AdamW."""
    DEEPSPEED = "deepspeed"
    """DeepSpeed ZeRO across `learner.ranks` Ray actors (gloo on CPU, NCCL on GPUs)."""


class Precision(enum.StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"
    """fp32 master weights; bf16 autocast (torch) or DeepSpeed's bf16 mode."""


class AepoMode(enum.StrEnum):
    OFF = "off"
    BATCH = "batch"
    TOKEN = "token"
    SEQUENCE = "sequence"


@dataclass(frozen=True)
class AepoConfig:
    """Adaptive entropy control (section `learner.aepo`). Entropies are in nats, of the
    sampling distribution (temperature and top-p applied)."""

    mode: AepoMode = AepoMode.OFF
    """off, batch (the paper's hysteresis on batch entropy), token or sequence (entropy clips)."""
    h_low: float = 0.35
    """batch: negatives come back once the batch entropy falls below this."""
    h_high: float = 0.65
    """batch: negatives are masked once the batch entropy rises above this. The defaults are
    measured on the `world` demo (tiny model, temperature 1): batch entropy 0.70 on average
    over the first 50 RL steps, 0.43 over steps 300–400, single batches from 0.17 to 1.07. The
    paper does not publish its thresholds."""
    tau_token: float = 1.0
    """token: negative-advantage tokens above this entropy are left out."""
    tau_sequence: float = 0.65
    """sequence: negative-advantage sequences above this mean entropy are left out."""

    def __post_init__(self) -> None:
        if not 0 <= self.h_low < self.h_high:
            raise ValueError(
                f"learner.aepo.h_low ({self.h_low}) must be >= 0 and below learner.aepo.h_high ({self.h_high}): "
                "the band between them is the hysteresis; e.g. h_low=0.35 h_high=0.65"
            )
        if self.tau_token <= 0 or self.tau_sequence <= 0:
            raise ValueError(
                f"learner.aepo.tau_token ({self.tau_token}) and tau_sequence ({self.tau_sequence}) must be > 0"
            )


@dataclass(frozen=True)
class StepSettings:
    """What a training step needs from the learner's config."""

    micro_batch_tokens: int
    logprob_chunk_tokens: int
    grad_clip: float
    objective: PolicyObjective
    precision: Precision
    activation_checkpointing: bool
    head_kernel: HeadKernel = HeadKernel.CHUNKED
    aepo: AepoConfig = AepoConfig()


@dataclass(frozen=True)
class LearnerConfig:
    """Training settings (defaults fit the tiny CPU demo; see ops/configs for the paper's)."""

    lr: float = 3e-4
    """RL AdamW learning rate, constant (the paper uses 2e-6 on large models). Measured on the
    untrained tiny model's SFT checkpoint: 1e-3 lowered held-out accuracy, 1e-4 left it flat;
    from the committed base, 3e-4 gives +0.19 over 500 steps (README, "Measured")."""
    sft_lr: float = 1e-3
    """SFT warm-up AdamW learning rate."""
    sft_steps: int = 50
    """SFT warm-up steps on gold answers before RL (the prompt format and the end of an answer);
    0 skips the warm-up."""
    sft_batch: int = 64
    """Examples per SFT step."""
    rl_steps: int = 500
    """RL steps before the learner stops; 0 trains for as long as the service runs."""
    groups_per_step: int = 16
    """Prompts (GRPO groups) per RL step."""
    max_staleness: int = 1
    """η: rollouts more than η versions behind are dropped; 0 is synchronous RL."""
    objective: PolicyLoss = PolicyLoss.DAPO
    """dapo (token-level mean over the update's tokens) or grpo (each sequence's token mean,
    then the mean over sequences)."""
    correction: Correction = Correction.DECOUPLED
    """decoupled (AReaL: clip against π_prox, weight by π_prox / π_behav) or naive (PPO
    against the behaviour policy; the staleness ablation's baseline)."""
    ppo_epochs: int = 1
    """Passes over each batch. With ppo_epochs × minibatches > 1 the proximal policy's
    log-probs are computed first (one more forward), and clipping binds from the second update."""
    minibatches: int = 1
    """Optimizer steps per pass: the batch's groups split evenly (must divide groups_per_step)."""
    clip_low: float = 0.2
    """PPO clip ε_low."""
    clip_high: float = 0.28
    """PPO clip ε_high (DAPO clip-higher)."""
    behaviour_weight: BehaviourWeight = BehaviourWeight.CAP
    """decoupled: cap the weight π_prox / π_behav at behaviour_weight_cap, or mask (leave out)
    the tokens above it."""
    behaviour_weight_cap: float = 5.0
    """Cap (or masking threshold) of the decoupled-PPO weight π_prox / π_behav."""
    kl_coef: float = 0.0
    """β of a KL penalty (k3) to the policy RL started from; 0 (DAPO, QwenLong-L1.5) leaves it
    out and keeps no reference copy."""
    advantage_norm: AdvantageNorm = AdvantageNorm.GROUP
    """group (GRPO), group_mean (Dr.GRPO, MemAgent: no std), task_batch (QwenLong-L1.5)."""
    overlong_buffer: int = 0
    """DAPO's soft overlong penalty: the last this many tokens before a response's cap cost up
    to overlong_penalty of reward, linearly; 0 turns it off."""
    overlong_penalty: float = 1.0
    """The penalty at the cap."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: groups whose rewards are all equal are dropped (counted, and
    announced to the rollout gate as consumed) before batches form, so every batch is full of
    informative groups. Off: such groups take batch slots and are left out of the loss."""
    stall_seconds: float = 30.0
    """When no group has arrived for this long, a batch forms from what waits: the fullest
    rollout kind alone (batch_by_rollout_kind), or a task-balanced batch filled from other
    types (sampler.when_dry=wait). Groups the learner drops are announced to the rollout gate
    at once, so this is for groups lost on the way (e.g. dead-lettered before `scored`)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Batch composition (section `learner.sampler`; `actors/learner/sampler.py`)."""
    aepo: AepoConfig = field(default_factory=AepoConfig)
    """Adaptive entropy control (section `learner.aepo`; `actors/learner/aepo.py`)."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    eval_every: int = 100
    """Held-out evaluation period in RL steps (and at each phase boundary)."""
    checkpoint_every: int = 50
    """RL steps between checkpoints (also written after SFT and on a clean stop); offsets on
    `scored` are committed only once a checkpoint covering them is durable."""
    checkpoint_keep: int = 3
    """Checkpoints kept in <run_dir>/runs/<run_id>/checkpoints."""
    heldout_tasks: int = 512
    """Held-out tasks per evaluation."""
    heldout_seed: int = 0
    """Seed of the held-out worlds."""
    batch_by_rollout_kind: bool = False
    """Form every RL batch from groups of one rollout kind (memory-agent or full-context),
    never mixed; QwenLong-L1.5 found mixing the two in one batch hurt stability."""
    heldout_documents: str = ""
    """Where held-out store tasks come from: a folder or file of documents ('sample': the shipped
    corpus); only those that `synthesis.heldout_fraction` holds out of training are used. Empty:
    `feed.corpus`, when set."""
    heldout_store_lengths: tuple[int, ...] = (1024, 4096)
    """Context lengths (tokens) of the held-out store tasks, each reported on its own
    ("needle@1024")."""
    heldout_store_tasks: int = 8
    """Held-out tasks per store type and length (fewer when the documents cannot make them)."""
    heldout_memory_windows: tuple[int, ...] = (1, 4, 16)
    """Held-out memory-agent tasks (when a memory task type is configured) are made at these
    context lengths, in multiples of `memory_agent.chunk_tokens`, taken in turn."""
    weights_transport: Transport = Transport.RAY
    """How rollout actors get weights: ray (the object store, through the weight store), file
    (safetensors files, no Ray), or collective (rank 0 sends them over NCCL from a GPU learner,
    gloo from a CPU one, straight into each rollout engine; see actors/collective.py)."""
    weights_keep: int = 4
    """Versions kept for fetching (ray, file); the collective sender stages the last 2."""
    backend: Backend = Backend.TORCH
    """torch (one process) or deepspeed (ZeRO across `ranks` Ray actors in a placement group)."""
    ranks: int = 1
    """Data-parallel learner ranks (deepspeed); torch uses exactly 1."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage (0–3); under ZeRO-3 weights are gathered to publish them."""
    precision: Precision = Precision.FP32
    """fp32, or bf16 (autocast with fp32 master weights; DeepSpeed's bf16 mode)."""
    device: str = "auto"
    """'cpu', 'cuda', or 'auto' (cuda when available)."""
    micro_batch_tokens: int = 16384
    """Padded tokens (rows × longest row) per micro-batch; gradients accumulate over them."""
    logprob_chunk_tokens: int = 512
    """Target tokens per output-head chunk: peak head memory is a few chunk × vocabulary fp32
    tables (bench/learner_memory.py: 1.5 GiB at 512, 2.3 GiB at 1024 for a 152K vocabulary)."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass (long sequences)."""
    head_kernel: HeadKernel = HeadKernel.CHUNKED
    """Output head for log-probs: chunked (any device), or liger (liger-kernel's fused linear
    cross-entropy; CUDA, rollout.top_p = 1, ZeRO stage < 3)."""
    resources: Resources = field(default_factory=lambda: Resources(num_cpus=1.0))
    """Ray resources per rank (a placement-group bundle each)."""

    def __post_init__(self) -> None:
        if self.max_staleness < 0:
            raise ValueError(f"learner.max_staleness ({self.max_staleness}) must be >= 0")
        if self.groups_per_step < 1:
            raise ValueError(f"learner.groups_per_step ({self.groups_per_step}) must be >= 1")
        if self.weights_keep < self.max_staleness + 2:
            raise ValueError(
                f"learner.weights_keep ({self.weights_keep}) must be >= max_staleness + 2 "
                f"({self.max_staleness + 2}) so rollout actors can fetch every usable version"
            )
        if self.checkpoint_every < 1 or self.checkpoint_keep < 1:
            raise ValueError(
                f"learner.checkpoint_every ({self.checkpoint_every}) and checkpoint_keep "
                f"({self.checkpoint_keep}) must be >= 1"
            )
        for name in ("lr", "sft_lr"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"learner.{name} ({getattr(self, name)}) must lie in (0, 1)")
        if self.batch_by_rollout_kind and self.max_staleness < 1:
            raise ValueError(
                "learner.batch_by_rollout_kind needs learner.max_staleness >= 1: at η = 0 each version lets exactly "
                "one batch of groups out, which may mix kinds and never fill a batch of one kind"
            )
        if not self.heldout_memory_windows or min(self.heldout_memory_windows) < 1:
            raise ValueError(
                f"learner.heldout_memory_windows ({self.heldout_memory_windows}) must name context lengths of >= 1 "
                "window, e.g. [1, 4, 16]"
            )
        if not self.heldout_store_lengths or min(self.heldout_store_lengths) < 64:
            raise ValueError(
                f"learner.heldout_store_lengths ({self.heldout_store_lengths}) must name context lengths of >= 64 "
                "tokens, e.g. [1024, 4096]"
            )
        if self.heldout_store_tasks < 0:
            raise ValueError(f"learner.heldout_store_tasks ({self.heldout_store_tasks}) must be >= 0 (0: none)")
        if self.ppo_epochs < 1 or self.minibatches < 1:
            raise ValueError(
                f"learner.ppo_epochs ({self.ppo_epochs}) and learner.minibatches ({self.minibatches}) must be >= 1"
            )
        if self.groups_per_step % self.minibatches:
            raise ValueError(
                f"learner.minibatches ({self.minibatches}) must divide learner.groups_per_step "
                f"({self.groups_per_step}): every minibatch takes the same number of groups; "
                f"e.g. minibatches={max(d for d in range(1, self.minibatches + 1) if self.groups_per_step % d == 0)}"
            )
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0):
            raise ValueError(
                f"learner.clip_low ({self.clip_low}) must lie in [0, 1) and learner.clip_high ({self.clip_high}) be >= 0"
            )
        if self.behaviour_weight_cap <= 0 or self.kl_coef < 0:
            raise ValueError(
                f"learner.behaviour_weight_cap ({self.behaviour_weight_cap}) must be > 0 and "
                f"learner.kl_coef ({self.kl_coef}) >= 0"
            )
        if self.overlong_buffer < 0 or self.overlong_penalty < 0:
            raise ValueError(
                f"learner.overlong_buffer ({self.overlong_buffer}) and overlong_penalty ({self.overlong_penalty}) "
                "must be >= 0"
            )
        if self.kl_coef > 0 and self.backend is Backend.DEEPSPEED and self.zero_stage == 3:
            raise ValueError(
                "learner.kl_coef > 0 keeps a full reference copy of the model on every rank, which ZeRO-3 "
                "partitions away: use zero_stage <= 2 or kl_coef=0"
            )
        if self.sampler.task_balanced and self.batch_by_rollout_kind:
            raise ValueError(
                "learner.sampler.task_balanced and learner.batch_by_rollout_kind cannot be combined yet: "
                "set one of them to false"
            )
        gate = (self.max_staleness + 1) * self.groups_per_step
        waits = self.sampler.task_balanced and self.sampler.when_dry is DryPolicy.WAIT
        if waits and not self.groups_per_step <= self.sampler.buffer_groups <= gate:
            raise ValueError(
                f"learner.sampler.buffer_groups ({self.sampler.buffer_groups}) must lie between "
                f"learner.groups_per_step ({self.groups_per_step}) and (max_staleness + 1) × groups_per_step "
                f"({gate}), the most groups the staleness gate lets out: set it to {gate}"
            )
        if self.ranks < 1:
            raise ValueError(f"learner.ranks ({self.ranks}) must be >= 1")
        if self.backend is Backend.TORCH and self.ranks != 1:
            raise ValueError(f"learner.ranks ({self.ranks}) needs learner.backend=deepspeed; torch runs one rank")
        if not 0 <= self.zero_stage <= 3:
            raise ValueError(f"learner.zero_stage ({self.zero_stage}) must be 0, 1, 2 or 3")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"learner.device ({self.device!r}) must be auto, cpu or cuda")
        if self.micro_batch_tokens < 1 or self.logprob_chunk_tokens < 1:
            raise ValueError(
                f"learner.micro_batch_tokens ({self.micro_batch_tokens}) and logprob_chunk_tokens "
                f"({self.logprob_chunk_tokens}) must be >= 1"
            )
        if self.head_kernel is HeadKernel.LIGER and self.device == "cpu":
            raise ValueError(
                "learner.head_kernel=liger runs on CUDA only: set learner.device=cuda or head_kernel=chunked"
            )
        if self.head_kernel is HeadKernel.LIGER and self.backend is Backend.DEEPSPEED and self.zero_stage == 3:
            raise ValueError(
                "learner.head_kernel=liger reads the head's weight directly, which ZeRO-3 partitions: "
                "use zero_stage <= 2 or head_kernel=chunked"
            )
        if self.ranks > 1 and self.resources.num_cpus + self.resources.num_gpus == 0:
            raise ValueError(
                "learner.resources must reserve a CPU or GPU per rank when ranks > 1 "
                "(each rank is a placement-group bundle); set learner.resources.num_cpus=1"
            )

    def step_settings(self) -> StepSettings:
        return StepSettings(
            micro_batch_tokens=self.micro_batch_tokens,
            logprob_chunk_tokens=self.logprob_chunk_tokens,
            grad_clip=self.grad_clip,
            objective=PolicyObjective(
                loss=self.objective,
                correction=self.correction,
                clip_low=self.clip_low,
                clip_high=self.clip_high,
                behaviour_weight=self.behaviour_weight,
                behaviour_weight_cap=self.behaviour_weight_cap,
                kl_coef=self.kl_coef,
            ),
            aepo=self.aepo,
            precision=self.precision,
            activation_checkpointing=self.activation_checkpointing,
            head_kernel=self.head_kernel,
        )
