"""The rollout actor's configuration (section `rollout`). Importable without torch: the CLI and the launcher
read it without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.settings import EngineKind, Resources, VLLMSettings


@dataclass(frozen=True)
class RolloutConfig:
    """Rollout generation settings."""

    instances: int = 1
    """Rollout actors (they share `tasks` through a consumer group)."""
    group_size: int = 8
    """G: samples per task (GRPO group)."""
    temperature: float = 1.0
    """Sampling temperature (the paper uses 0.7 on large models)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 4
    """Longest response."""
    engine: EngineKind = EngineKind.AUTO
    """vllm, transformers, or auto (vLLM when the vllm module is installed)."""
    prompts_per_call: int = 16
    """Most tasks (GRPO groups) one engine call generates for."""
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    """vLLM engine settings."""
    resources: Resources = field(default_factory=Resources)
    """Ray resources per rollout actor; num_gpus ≥ 1 is vLLM's tensor-parallel size."""

    def __post_init__(self) -> None:
        if self.prompts_per_call < 1:
            raise ValueError(f"rollout.prompts_per_call ({self.prompts_per_call}) must be >= 1")
        if self.resources.num_gpus > 1 and self.resources.num_gpus != int(self.resources.num_gpus):
            raise ValueError(
                f"rollout.resources.num_gpus ({self.resources.num_gpus}) above 1 must be whole (vLLM tensor parallelism)"
            )
        if self.group_size < 2:
            raise ValueError(f"rollout.group_size ({self.group_size}) must be >= 2 for group advantages")
        if self.temperature <= 0:
            raise ValueError(f"rollout.temperature ({self.temperature}) must be > 0 for sampling")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rollout.top_p ({self.top_p}) must lie in (0, 1]")
