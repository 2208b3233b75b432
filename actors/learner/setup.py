"""Building a learner rank: its device, model and trainer; what held-out evaluation composes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from actors.learner.config import Backend, HeadKernel, LearnerConfig
from actors.learner.evaluation import Heldout
from actors.learner.ranks import RankGroup
from actors.learner.trainer import TorchTrainer, Trainer
from actors.memory_agent import MemoryAgentConfig
from actors.modeling import load_policy
from actors.prompts import PromptFormat
from actors.sampling import SamplingSpec
from actors.tasks import TaskType
from actors.verifiers import Rule


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_trainer(
    config: LearnerConfig, model_path: str, spec: SamplingSpec, group: RankGroup | None
) -> tuple[Trainer, PreTrainedTokenizerBase]:
    """This rank's trainer (rank 0 and the followers build theirs the same way)."""
    device = resolve_device(config.device)
    if config.head_kernel is HeadKernel.LIGER and device != "cuda":
        raise ValueError("learner.head_kernel=liger needs CUDA, but no GPU is visible: set learner.head_kernel=chunked")
    model, tokenizer = load_policy(model_path, device=device)
    lr = config.sft_lr if config.sft_steps else config.lr
    common: dict[str, Any] = {
        "lr": lr,
        "settings": config.step_settings(),
        "spec": spec,
        "pad_id": tokenizer.pad_token_id,
        "group": group,
    }
    if config.backend is Backend.DEEPSPEED:
        from actors.learner.ds_trainer import DeepSpeedTrainer

        return DeepSpeedTrainer(model, zero_stage=config.zero_stage, **common), tokenizer
    return TorchTrainer(model, **common), tokenizer


@dataclass(frozen=True)
class HeldoutSpec:
    """What held-out evaluation composes (wired from the synthesis and rollout configs)."""

    task_types: tuple[TaskType, ...]
    context_tokens: int
    entities_per_world: int
    max_new_tokens: int
    memory_agent: MemoryAgentConfig = field(default_factory=MemoryAgentConfig)
    """How memory-agent tasks are read (also the SFT warm-up's gold memory traces)."""
    memory_windows: tuple[int, ...] = ()
    """Held-out memory-agent contexts, in multiples of `memory_agent.chunk_tokens`
    (`learner.heldout_memory_windows`); () evaluates no memory-agent task."""
    prompt_format: PromptFormat = PromptFormat.AUTO
    """How questions reach the policy, in evaluation and SFT as in rollouts (`model.prompt_format`)."""
    rule: Rule = Rule.EXACT
    """How text replies are scored, as the reward actor scores them (`reward.rule`)."""
    store_tasks: tuple[Heldout, ...] = ()
    """Store tasks composed from held-out documents (`ops.heldout`), evaluated beside the
    world tasks composed here."""
