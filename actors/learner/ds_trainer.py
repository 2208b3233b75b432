"""The DeepSpeed backend: ZeRO stage 0–3 across the learner's ranks (gloo on CPU, NCCL on GPUs).

The learner plans micro-batches itself (token budgets, not a fixed micro-batch size), so
DeepSpeed runs with `managed_gradient_accumulation: false`: each `backward` accumulates (under
ZeRO-2/3 it also reduce-scatters, hence the same micro-batch count on every rank), and `step`
is the boundary that clips and updates. Gradients are averaged over ranks; `Trainer` scales each
rank's loss by the world size so the update is the whole batch's token-level mean, equal to
one process training on the whole batch (`tests/test_deepspeed.py`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from actors.learner.config import Precision
from actors.learner.trainer import Trainer


def _innermost(optimizer: Any) -> torch.optim.Optimizer:
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


class DeepSpeedTrainer(Trainer):
    def __init__(self, model: PreTrainedModel, *, lr: float, zero_stage: int, **kwargs: Any) -> None:
        import deepspeed

        super().__init__(model, **kwargs)
        self.zero_stage = zero_stage
        config = {
            "train_micro_batch_size_per_gpu": 1,  # unused: the learner plans its own micro-batches
            "gradient_accumulation_steps": 1,
            "managed_gradient_accumulation": False,
            "gradient_clipping": self.settings.grad_clip,
            "zero_optimization": {"stage": zero_stage},
            "bf16": {"enabled": self.settings.precision is Precision.BF16},
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)

    @property
    def module(self) -> PreTrainedModel:
        return self.engine.module

    def reset_optimizer(self, lr: float) -> None:
        """New learning rate and fresh moments (the inner AdamW re-creates its state lazily)."""
        inner = _innermost(self.engine.optimizer)
        for group in inner.param_groups:
            group["lr"] = lr
        inner.state.clear()

    def save_state(self, directory: str) -> None:
        """DeepSpeed's own checkpoint (weights and this rank's optimizer partition); a collective."""
        super().save_state(directory)
        self.engine.save_checkpoint(directory, tag="deepspeed")

    def load_state(self, directory: str, model_dir: str) -> None:
        super().load_state(directory, model_dir)
        path, _ = self.engine.load_checkpoint(directory, tag="deepspeed", load_optimizer_states=True)
        if path is None:
            raise ValueError(f"{directory}: no DeepSpeed checkpoint (tag 'deepspeed') to resume from")

    def _before_forward(self) -> None:
        # What `engine.forward` does first; the learner calls the decoder and the head itself
        # (chunked), so it does it here: under ZeRO-3 this advances the micro-step, without
        # which every backward overwrites the previous micro-batches' gradient partitions.
        from deepspeed.runtime.base_optimizer import ZeROOptimizer

        if isinstance(self.engine.optimizer, ZeROOptimizer):
            self.engine.optimizer.clear_backward_seen_flag()

    def _backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def _apply(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        self.engine.zero_grad()
        return float(norm) if norm is not None else float("nan")

    def full_state(self) -> dict[str, torch.Tensor]:
        """Every parameter on every rank; under ZeRO-3 gathered one at a time (a collective)."""
        if self.zero_stage < 3:
            return self.module.state_dict()
        import deepspeed

        state = {}
        for key, value in self.module.state_dict().items():  # every key, tied aliases included
            try:
                param = self.module.get_parameter(key)
            except AttributeError:  # a persistent buffer: not partitioned
                state[key] = value.detach().to("cpu", copy=True)
                continue
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                state[key] = param.detach().to("cpu", copy=True)
        return state
