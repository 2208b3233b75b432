"""One rank's model and optimizer: a training step on its share of a batch.

`Trainer.step(rows, phase, updates)` makes one optimizer step per update (a list of row
indices; default: the whole batch in one update). For each it plans token-budgeted
micro-batches (`microbatch.py`), runs this rank's share (forward through the decoder, chunked
log-probs and entropy, the objective's scaled token sum, backward), then steps with gradient
clipping. With more than one update (`learner.ppo_epochs` × `learner.minibatches`), the
proximal policy's log-probs are computed first for every update, without gradient, so every
update clips against the parameters the batch started from. Backends differ only in how gradients are reduced and
applied: `TorchTrainer` (one process, plain AdamW) here, `DeepSpeedTrainer` (ZeRO across
ranks) in `ds_trainer.py`. Long sequences: activation checkpointing, chunked log-probs (no
[B, L, V] table), bf16 autocast on GPUs, length-bucketed micro-batches.
"""

from __future__ import annotations

import contextlib
import copy
import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from actors.learner.aepo import entropy_clip_mask
from actors.learner.config import Correction, Precision, StepSettings
from actors.learner.logprobs import target_logprobs
from actors.learner.microbatch import MicroBatch, TokenBatch, TrainRow, pad_rows, plan_micro_batches
from actors.learner.objectives import policy_loss, policy_stats, row_scale, sft_loss
from actors.learner.ranks import RankGroup
from actors.sampling import SamplingSpec

SFT_SPEC = SamplingSpec(1.0, 1.0)
"""SFT trains the model's own distribution, not the rollouts' sampling distribution."""


class Phase(enum.StrEnum):
    SFT = "sft"
    RL = "rl"


class Trainer:
    """The shared step; subclasses own the optimizer (`_backward`, `_apply`, `reset_optimizer`)."""

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        settings: StepSettings,
        spec: SamplingSpec,
        pad_id: int,
        group: RankGroup | None = None,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.pad_id = pad_id
        self.group = group
        self.rank = group.rank if group else 0
        self.world = group.world if group else 1
        if settings.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model
        self.reference: PreTrainedModel | None = None
        """The KL reference (`set_reference`), when learner.kl_coef > 0."""
        check_head(model)

    @property
    def module(self) -> PreTrainedModel:
        """The model being trained (for evaluation and state)."""
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    # -- backend hooks --------------------------------------------------------------------
    def reset_optimizer(self, lr: float) -> None:
        raise NotImplementedError

    def _before_forward(self) -> None:
        """Called before each micro-batch's forward."""

    def _backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def _apply(self) -> float:
        """Clip, step, zero the gradients; return the gradient norm before clipping."""
        raise NotImplementedError

    def full_state(self) -> dict[str, torch.Tensor]:
        """Every parameter, unsharded (a collective under ZeRO-3; call on all ranks)."""
        return self.module.state_dict()

    def save_state(self, directory: str) -> None:
        """This rank's optimizer and RNG state into `directory` (every rank calls it); the
        weights are saved by rank 0 in Hugging Face format next to it (`model/`)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        rng = {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(rng, Path(directory) / f"rng-rank{self.rank}.pt")

    def load_state(self, directory: str, model_dir: str) -> None:
        """Restore what `save_state` wrote, and the weights from `model_dir`."""
        rng = torch.load(Path(directory) / f"rng-rank{self.rank}.pt", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])

    # -- the step ----------------------------------------------------------------------------
    def set_reference(self, model_dir: str = "") -> None:
        """Freeze the KL reference: a copy of the current weights (RL's start), or of the
        weights saved in `model_dir` (a resumed run's RL start)."""
        self.reference = copy.deepcopy(self.module).eval().requires_grad_(False)
        if model_dir:
            load_exported(self.reference, model_dir)

    def step(
        self, rows: Sequence[TrainRow], phase: Phase, updates: Sequence[Sequence[int]] | None = None
    ) -> dict[str, float]:
        """Train on this rank's share of `rows` (the whole batch, identical on every rank): one
        optimizer step per update in `updates` (row indices; None: all rows, one step).

        Rows with `trained` False only have their entropy measured (AEPO's masked negatives).
        With decoupled PPO and more than one update, π_prox's log-probs come from a forward
        over every update's rows before the first step (per update, because each update deals
        its rows to ranks its own way; E epochs cost E such forwards). The batch entropy is
        measured in the first epoch's forwards, before any of its rows was updated on."""
        self.module.train()
        plan_updates = [list(u) for u in updates] if updates else [list(range(len(rows)))]
        first_epoch = self._first_epoch(plan_updates, len(rows))
        prox: dict[tuple[int, int], torch.Tensor] | None = None
        counted: dict[str, float] | None = None
        sums: dict[str, float] = {"loss": 0.0, "entropy_sum": 0.0, "target_tokens": 0.0, "sequences": 0.0}
        sums |= {"row_entropy_sum": 0.0, "rows_measured": 0.0}
        if phase is Phase.RL and self._needs_proximal_forward(len(plan_updates)):
            prox, counted = {}, {}
            for u, update in enumerate(plan_updates):
                measured = self._run_update([rows[i] for i in update], phase, u, prox, forward_only=True)
                counted |= {f"tokens{u}": measured["valid_tokens"], f"rows{u}": measured["valid_rows"]}
                if u < first_epoch:
                    for key in ("row_entropy_sum", "rows_measured"):
                        sums[key] += measured[key]
            if self.group is not None:
                counted = self.group.sum(counted)
        norms = []
        for u, update in enumerate(plan_updates):
            counts = (counted[f"tokens{u}"], counted[f"rows{u}"]) if counted is not None else None
            part = self._run_update([rows[i] for i in update], phase, u, prox, counts=counts)
            if prox is not None or u >= first_epoch:  # measured already, or after an update
                part = {k: v for k, v in part.items() if k not in ("row_entropy_sum", "rows_measured")}
            for key, value in part.items():
                sums[key] = sums.get(key, 0.0) + value
            norms.append(self._apply())
        if self.group is not None:
            sums = self.group.sum(sums)
        return summarize(sums, norms, len(plan_updates), len(plan_updates) / first_epoch)

    def _needs_proximal_forward(self, n_updates: int) -> bool:
        """π_prox's log-probs before the first update: decoupled PPO over several updates needs
        them as the old policy, and a top-p nucleus needs them to count the tokens the loss
        keeps (those inside it) before any loss is scaled by that count."""
        decoupled = self.settings.objective.correction is Correction.DECOUPLED
        return (n_updates > 1 and decoupled) or self.spec.top_p < 1.0

    @staticmethod
    def _first_epoch(updates: list[list[int]], n_rows: int) -> int:
        """How many leading updates cover the batch once (the first PPO epoch)."""
        seen = 0
        for u, update in enumerate(updates):
            seen += len(update)
            if seen >= n_rows:
                return u + 1
        return len(updates)

    def _run_update(
        self,
        rows: list[TrainRow],
        phase: Phase,
        u: int,
        prox: dict[tuple[int, int], torch.Tensor] | None,
        forward_only: bool = False,
        counts: tuple[float, float] | None = None,
    ) -> dict[str, float]:
        """This rank's micro-batches of one update: backward on each (or, `forward_only`, the
        proximal log-probs stored into `prox` under (update, row), and the tokens and rows the
        loss will keep counted). `counts`: (tokens, rows) of the whole update that the loss
        keeps, from that count; None: every trained row and target token."""
        tokens = float(sum(r.n_targets for r in rows if r.trained))
        n_rows = float(sum(r.trained for r in rows))
        if counts is not None:
            tokens, n_rows = counts
        plan = plan_micro_batches([len(r.ids) for r in rows], self.settings.micro_batch_tokens, self.world)
        chunk = self.settings.logprob_chunk_tokens
        sums: dict[str, float] = {}
        for j, micro in enumerate(plan[self.rank]):
            # the most head chunks any rank runs for its j-th micro-batch: all run that many
            chunks = max(-(-sum(rows[i].n_targets for i in p[j].rows) // chunk) for p in plan)
            context = torch.no_grad() if forward_only else contextlib.nullcontext()
            with context:
                part = self._micro_step(
                    [rows[i] for i in micro.rows], micro, phase, tokens, n_rows, chunks, u, prox, forward_only
                )
            for key, value in part.items():
                sums[key] = sums.get(key, 0.0) + value
        return sums

    def _micro_step(
        self,
        rows: list[TrainRow],
        micro: MicroBatch,
        phase: Phase,
        tokens: float,
        n_rows: float,
        chunks: int,
        u: int = 0,
        prox: dict[tuple[int, int], torch.Tensor] | None = None,
        forward_only: bool = False,
    ) -> dict[str, float]:
        batch = pad_rows(rows, self.pad_id, micro.weight)
        device = self.device
        spec = SFT_SPEC if phase is Phase.SFT else self.spec
        measure = batch.target_mask.to(device)  # every target token (a filler's are 0)
        mask = measure * batch.trained.to(device).unsqueeze(-1)  # the trained ones
        logp, entropy = self._logprobs(self.module, batch, measure, spec, chunks)
        row_tokens = measure.sum(-1)
        measured = {
            "row_entropy_sum": float(((entropy * measure).sum(-1) / row_tokens.clamp(min=1e-9))[row_tokens > 0].sum()),
            "rows_measured": float((row_tokens > 0).sum()),
        }
        behaviour = batch.behaviour_logprobs.to(device)
        if forward_only:
            kept = kept_tokens(mask, logp, behaviour) * micro.weight  # [B]
            measured |= {"valid_tokens": float(kept.sum()), "valid_rows": float((kept > 0).sum())}
            if micro.weight:  # a filler repeats rows another micro-batch holds: keep theirs
                for k, i in enumerate(micro.rows):
                    prox[(u, i)] = logp[k].detach()
            return measured
        # DeepSpeed averages gradients over ranks; each rank's share of the token sum is scaled back up
        scale = float(self.world)
        if phase is Phase.SFT:
            loss = sft_loss(logp, mask, tokens)
            stats: dict[str, float] = {}
        else:
            objective = self.settings.objective
            advantages = batch.advantages.to(device)
            old = logp.detach()
            if prox is not None and micro.weight:
                old = torch.stack([prox[(u, i)] for i in micro.rows]).to(device)
            ref = None
            if objective.kl_coef > 0:
                with torch.no_grad():
                    ref, _ = self._logprobs(self.reference, batch, mask, spec, chunks, with_entropy=False)
            loss, stats = policy_loss(
                logp,
                old,
                behaviour,
                advantages,
                entropy_clip_mask(entropy, mask, advantages, self.settings.aepo),
                row_scale(kept_tokens(mask, old, behaviour), objective.loss, tokens, n_rows).to(device),
                objective,
                ref,
            )
        self._backward(loss * scale)
        return {
            **stats,
            **measured,
            "loss": float(loss.detach()),
            "entropy_sum": float((entropy * mask).sum()),
            "target_tokens": float(mask.sum()),
            "sequences": float(micro.weight * sum(r.trained for r in rows)),
        }

    def _logprobs(
        self,
        model: PreTrainedModel,
        batch: TokenBatch,
        mask: torch.Tensor,
        spec: SamplingSpec,
        chunks: int,
        with_entropy: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.device
        self._before_forward()
        with self._autocast():
            hidden = model.get_decoder()(
                input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False
            ).last_hidden_state
        return target_logprobs(
            hidden,
            model.get_output_embeddings(),
            batch.input_ids.to(device),
            mask,
            spec,
            chunk_tokens=self.settings.logprob_chunk_tokens,
            min_chunks=chunks,
            kernel=self.settings.head_kernel,
            with_entropy=with_entropy,
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.settings.precision is Precision.BF16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def kept_tokens(mask: torch.Tensor, prox_logp: torch.Tensor, behav_logp: torch.Tensor) -> torch.Tensor:
    """[B] per row, the masked tokens `policy_loss` keeps: inside both policies' nucleus (a
    finite log-prob under each). DAPO's token count and GRPO's row lengths count only these."""
    return (mask * torch.isfinite(prox_logp) * torch.isfinite(behav_logp)).sum(-1)


def summarize(
    sums: dict[str, float], grad_norms: list[float], updates: int = 1, epochs: float = 1.0
) -> dict[str, float]:
    """Batch metrics from summed micro-batch stats over every update of the step: the loss is
    the mean over updates; tokens and sequences are the batch's (every epoch trains them)."""
    tokens = max(sums["target_tokens"], 1.0)
    out = {
        "loss": sums["loss"] / updates,
        "entropy": sums["entropy_sum"] / tokens,
        "batch_entropy": sums["row_entropy_sum"] / max(sums["rows_measured"], 1.0),
        "tokens": sums["target_tokens"] / epochs,
        "sequences": sums["sequences"] / epochs,
        "grad_norm": sum(grad_norms) / len(grad_norms),
        "updates": float(updates),
    }
    if "behaviour_weight_sum" in sums:
        out |= policy_stats(sums)
    return out


def load_exported(model: PreTrainedModel, model_dir: str) -> None:
    """Load weights saved with `save_pretrained` into `model` in place (tied keys, which the
    export leaves out, follow their source)."""
    state: dict[str, torch.Tensor] = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        state |= load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    shared = {p.data_ptr() for k, p in model.state_dict().items() if k in state}
    untied = [k for k in missing if model.state_dict()[k].data_ptr() not in shared]
    if unexpected or untied:
        raise ValueError(f"{model_dir}: weights do not fit the model (missing {untied}, unexpected {unexpected})")


def check_head(model: PreTrainedModel) -> None:
    """The chunked path computes logits as head(decoder(x)); refuse models where that is not
    the model's own forward (logit soft-capping, scaling), with a message naming the gap."""
    probe = torch.arange(1, 9, device=next(model.parameters()).device).unsqueeze(0) % model.config.vocab_size
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=probe).logits.float()
        hidden = model.get_decoder()(input_ids=probe).last_hidden_state
        got = model.get_output_embeddings()(hidden).float()
    model.train(was_training)
    gap = float((expected - got).abs().max())
    if gap > 1e-3 * max(1.0, float(expected.abs().max())):
        raise ValueError(
            f"{type(model).__name__}: logits differ from output_embeddings(decoder(x)) by {gap:.3g}; "
            "the learner's chunked log-probs support models whose head is a plain linear layer"
        )


class TorchTrainer(Trainer):
    """One process: AdamW, clip_grad_norm_."""

    def __init__(self, model: PreTrainedModel, *, lr: float, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)

    def reset_optimizer(self, lr: float) -> None:
        """Fresh moments at a new learning rate (SFT → RL: gradients differ in scale)."""
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)

    def save_state(self, directory: str) -> None:
        super().save_state(directory)
        torch.save(self.optimizer.state_dict(), Path(directory) / "optimizer.pt")

    def load_state(self, directory: str, model_dir: str) -> None:
        super().load_state(directory, model_dir)
        load_exported(self.model, model_dir)
        self.optimizer.load_state_dict(torch.load(Path(directory) / "optimizer.pt", weights_only=True))

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def _apply(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)
