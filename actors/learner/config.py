"""The learner's configuration (section `learner`): algorithm, backend, placement, memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.hosting import Resources
from actors.learner.advantages import AdvantageNorm
from actors.learner.aepo import AepoConfig
from actors.learner.logprobs import HeadKernel
from actors.learner.objectives import BehaviourWeight, Correction, PolicyLoss, PolicyObjective
from actors.learner.sampler import DryPolicy, SamplerConfig
from actors.learner.trainer import Backend, Precision, StepSettings
from actors.weights import Transport


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
