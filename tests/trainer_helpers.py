"""Learner-step helpers shared by tests: RL rows, step settings, and a trainer that keeps the
gradient it applies."""

from __future__ import annotations

import random

from actors.learner.config import PolicyObjective, Precision, StepSettings
from actors.learner.microbatch import TrainRow
from actors.learner.trainer import TorchTrainer


def rl_rows(vocab: int, n: int = 8, seed: int = 0) -> list[TrainRow]:
    """Rows of varied lengths with behaviour log-probs near the model's and mixed advantages."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt, response = rng.randint(3, 12), rng.randint(1, 6)
        ids = tuple(rng.randrange(3, vocab) for _ in range(prompt + response))
        behaviour = tuple(-rng.uniform(0.5, 3.0) for _ in range(response))
        rows.append(TrainRow(ids, prompt, advantage=(-1.0) ** i * (1 + i / 8), behaviour=behaviour))
    return rows


def settings(micro_batch_tokens: int) -> StepSettings:
    return StepSettings(
        micro_batch_tokens=micro_batch_tokens,
        logprob_chunk_tokens=5,
        grad_clip=1.0,
        objective=PolicyObjective(),
        precision=Precision.FP32,
        activation_checkpointing=False,
    )


class GradientRecorder(TorchTrainer):
    """Keeps the accumulated gradient the optimizer is about to apply."""

    def _apply(self) -> float:
        self.gradient = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}
        return super()._apply()
