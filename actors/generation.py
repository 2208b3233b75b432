"""Generation engines. `TransformersEngine` runs on CPU or one GPU; a vLLM engine with the same
interface is a later addition for GPU clusters.

Behaviour log-probs are those of the sampled tokens under the temperature-scaled model
distribution (logits / T), before top-p truncation, which is what the learner recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Sample:
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    """'stop' when EOS was generated (it is the last token), 'length' otherwise."""


class Engine(Protocol):
    def generate(
        self, prompts: list[list[int]], *, n: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> list[list[Sample]]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


class TransformersEngine:
    """`model.generate` with left padding; temperature 0 means greedy."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], *, n: int, temperature: float, top_p: float, max_new_tokens: int
    ) -> list[list[Sample]]:
        """For each prompt, `n` samples."""
        device = self.model.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding
            ids[i, width - len(p) :] = torch.tensor(p)
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
        logits = torch.stack(out.logits, dim=1).float()  # [P*n, T, V]
        scale = 1.0 if greedy else temperature
        logp = torch.log_softmax(logits / scale, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        samples = [self._sample(new[row], logp[row]) for row in range(new.shape[0])]
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _sample(self, tokens: torch.Tensor, logp: torch.Tensor) -> Sample:
        ids = tokens.tolist()
        finish = "length"
        if self.eos in ids:
            ids = ids[: ids.index(self.eos) + 1]
            finish = "stop"
        text_ids = ids[:-1] if finish == "stop" else ids
        return Sample(
            token_ids=ids,
            logprobs=logp[: len(ids)].tolist(),
            text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
            finish_reason=finish,
        )

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        self.model.eval()
