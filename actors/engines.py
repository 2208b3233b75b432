"""Building the configured generation engine: shared by the rollout actor (sampling) and the
memory actor (reading and answering), which must not import each other."""

from __future__ import annotations

from actors.generation import Engine, TransformersEngine
from actors.modeling import load_policy, load_policy_tokenizer, torch_dtype
from actors.settings import EngineKind, VLLMSettings
from actors.vllm_engine import VLLMEngine


def make_engine(kind: EngineKind, model_path: str, dtype: str, vllm: VLLMSettings, num_gpus: float = 0) -> Engine:
    """The engine `kind` names, loaded from `model_path` in `dtype` (the policy's inference
    dtype); with vLLM, `num_gpus` ≥ 1 is the tensor-parallel size."""
    if kind.resolve() is EngineKind.VLLM:
        tokenizer = load_policy_tokenizer(model_path)
        return VLLMEngine(model_path, tokenizer, vllm, dtype=dtype, tensor_parallel_size=max(1, int(num_gpus)))
    model, tokenizer = load_policy(model_path, dtype=torch_dtype(dtype), device="cuda" if num_gpus > 0 else "cpu")
    return TransformersEngine(model, tokenizer)
