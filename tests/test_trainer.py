"""The learner's step: micro-batch planning by hand, and splitting invariants on a real model."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from actors.learner.config import PolicyObjective, StepSettings
from actors.learner.microbatch import MicroBatch, TrainRow, pad_rows, plan_micro_batches
from actors.learner.trainer import Phase
from actors.modeling import load_policy
from actors.sampling import SamplingSpec
from tests.trainer_helpers import GradientRecorder, rl_rows, settings


def test_plan_buckets_by_length_within_the_budget() -> None:
    # lengths 10, 3, 9, 4 with a 20-token budget, sorted: 10 (0), 9 (2), 4 (3), 3 (1)
    # [0]: 1 x 10; adding row 2 -> 2 x 10 = 20 fits; a third -> 30 does not
    # [3, 1]: 2 x 4 = 8 fits
    assert plan_micro_batches([10, 3, 9, 4], token_budget=20) == [[MicroBatch((0, 2)), MicroBatch((1, 3))]]
    # a row longer than the budget still gets a micro-batch of its own
    assert plan_micro_batches([50, 2], token_budget=20) == [[MicroBatch((0,)), MicroBatch((1,))]]


def test_plan_gives_every_rank_the_same_count() -> None:
    # 3 micro-batches over 2 ranks: rank 1 gets a filler (weight 0) so collectives stay in step
    plan = plan_micro_batches([8, 8, 8], token_budget=8, ranks=2)
    assert [len(p) for p in plan] == [2, 2]
    real = sorted(r for p in plan for m in p if m.weight for r in m.rows)
    assert real == [0, 1, 2]
    assert sum(1 for p in plan for m in p if m.weight == 0.0) == 1
    # one micro-batch that fits everything is split so both ranks work
    plan = plan_micro_batches([4, 4, 4, 4], token_budget=100, ranks=2)
    assert sorted(len(p[0].rows) for p in plan) == [2, 2] and all(p[0].weight == 1.0 for p in plan)


def test_pad_rows_marks_targets_and_behaviour() -> None:
    batch = pad_rows([TrainRow((5, 6, 7), 2, 1.5, (-0.5,)), TrainRow((5, 6), 1, -1.0, (-0.25,))], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [5, 6, 0]]
    assert batch.target_mask.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert batch.behaviour_logprobs.tolist() == [[0, 0, -0.5], [0, -0.25, 0]]
    assert batch.advantages.tolist() == [1.5, -1.0]


def one_step(model, rows, objective: Phase, micro_batch_tokens: int, checkpointing: bool = False):
    """(the batch's gradient, step stats) of one step on a copy of `model`.

    Gradients, not parameters, are compared: AdamW's first update is lr · g / (|g| + ε), which
    turns a 1e-9 difference in a gradient element near ε into 1e-5 in the parameter."""
    model = copy.deepcopy(model)
    step = settings(micro_batch_tokens)
    step = StepSettings(**{**step.__dict__, "activation_checkpointing": checkpointing})
    trainer = GradientRecorder(model, lr=1e-3, settings=step, spec=SamplingSpec(0.7, 1.0), pad_id=0)
    stats = trainer.step(rows, objective)
    return trainer.gradient, stats


@pytest.mark.parametrize("objective", [Phase.RL, Phase.SFT])
def test_one_micro_batch_equals_two(tiny_model: str, objective: Phase) -> None:
    model, tokenizer = load_policy(tiny_model)
    rows = rl_rows(len(tokenizer))
    whole, s1 = one_step(model, rows, objective, micro_batch_tokens=10_000)  # 1 x 8
    split, s2 = one_step(model, rows, objective, micro_batch_tokens=4 * 18)  # several micro-batches
    assert s1["tokens"] == s2["tokens"] == sum(r.n_targets for r in rows)
    assert abs(s1["loss"] - s2["loss"]) < 1e-6
    worst = max(float((whole[k] - split[k]).abs().max()) for k in whole)
    print(f"{objective}: max gradient difference, 1 vs several micro-batches: {worst:.2e}")
    assert worst < 1e-6
    assert max(float(g.abs().max()) for g in whole.values()) > 1e-3, "a real gradient"


def test_activation_checkpointing_gives_the_same_update(tiny_model: str) -> None:
    model, tokenizer = load_policy(tiny_model)
    rows = rl_rows(len(tokenizer), seed=1)
    plain, _ = one_step(model, rows, Phase.RL, 10_000)
    checkpointed, _ = one_step(model, rows, Phase.RL, 10_000, checkpointing=True)
    assert max(float((plain[k] - checkpointed[k]).abs().max()) for k in plain) < 1e-6


def test_on_policy_behaviour_weight_is_one(tiny_model: str) -> None:
    # behaviour log-probs computed by the model itself: π_prox / π_behav = 1 on every token
    model, tokenizer = load_policy(tiny_model)
    rows = rl_rows(len(tokenizer))
    with torch.no_grad():
        from actors.learner.logprobs import full_logprobs

        exact = []
        for row in rows:
            ids = torch.tensor([row.ids])
            logp, _ = full_logprobs(model(input_ids=ids).logits, ids, SamplingSpec(0.7, 1.0))
            exact.append(TrainRow(row.ids, row.n_prompt, row.advantage, tuple(logp[0, row.n_prompt :].tolist())))
    _, stats = one_step(model, exact, Phase.RL, 64)
    assert abs(stats["behaviour_weight_mean"] - 1.0) < 1e-5
    assert stats["clip_fraction"] == 0.0
    assert stats["entropy"] > 0


def test_batch_entropy_is_the_mean_of_sequence_means(tiny_model: str) -> None:
    # H(π, B) = mean over rows of each row's mean token entropy, from the step's own forward
    model, tokenizer = load_policy(tiny_model)
    rows = rl_rows(len(tokenizer), seed=2)
    from actors.learner.logprobs import full_logprobs

    with torch.no_grad():
        means = []
        for row in rows:
            ids = torch.tensor([row.ids])
            _, entropy = full_logprobs(model(input_ids=ids).logits, ids, SamplingSpec(0.7, 1.0))
            means.append(float(entropy[0, row.n_prompt :].mean()))
    _, stats = one_step(model, rows, Phase.RL, 4 * 18)
    assert abs(stats["batch_entropy"] - sum(means) / len(means)) < 1e-5


def updates_step(model, rows, updates, micro_batch_tokens: int, lr: float = 1e-2):
    """Plain SGD, so that a 1e-9 difference in a first update's gradient stays that small (AdamW's
    first step is lr · sign(g) and flips with it where g is near 0)."""
    model = copy.deepcopy(model)
    trainer = GradientRecorder(
        model, lr=lr, settings=settings(micro_batch_tokens), spec=SamplingSpec(0.7, 1.0), pad_id=0
    )
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    stats = trainer.step(rows, Phase.RL, updates)
    return trainer.gradient, stats, model


def test_later_updates_clip_against_the_batch_start(tiny_model: str) -> None:
    # two passes over the same rows: the first update's ratio is 1 (π_θ = π_prox), the second's
    # is not (θ moved by a large step), so only the second clips; and the step is the same
    # whether its micro-batches are one or several (π_prox is per row, not per micro-batch)
    model, tokenizer = load_policy(tiny_model)
    rows = rl_rows(len(tokenizer))
    every = list(range(len(rows)))
    _, one, _ = updates_step(model, rows, [every], 10_000, lr=20.0)
    assert one["clip_fraction"] == 0.0 and one["updates"] == 1.0
    whole, two, after_whole = updates_step(model, rows, [every, every], 10_000, lr=20.0)
    assert two["updates"] == 2.0 and two["clip_fraction"] > 0.0
    split, _, after_split = updates_step(model, rows, [every, every], 4 * 18, lr=20.0)
    assert max(float((whole[k] - split[k]).abs().max()) for k in whole) < 1e-6
    moved = dict(after_whole.named_parameters())
    assert max(float((p - moved[n]).detach().abs().max()) for n, p in after_split.named_parameters()) < 1e-5


def nucleus_rows(model, vocab: int, spec: SamplingSpec, inside: bool, n: int, seed: int) -> list[TrainRow]:
    """Rows whose response tokens are each the model's likeliest next token (inside any top-p
    nucleus) or its least likely one (outside a small one), with exact behaviour log-probs."""
    from actors.learner.logprobs import full_logprobs

    rng = random.Random(seed)
    rows = []
    with torch.no_grad():
        for i in range(n):
            ids = [rng.randrange(3, vocab) for _ in range(rng.randint(3, 8))]
            n_prompt = len(ids)
            for _ in range(rng.randint(2, 5)):
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
                ids.append(int(logits.argmax() if inside else logits.argmin()))
            tensor = torch.tensor([ids])
            logp, _ = full_logprobs(model(input_ids=tensor).logits, tensor, SamplingSpec(spec.temperature, 1.0))
            behaviour = tuple(logp[0, n_prompt:].tolist())
            rows.append(TrainRow(tuple(ids), n_prompt, advantage=(-1.0) ** i * (1 + i / 4), behaviour=behaviour))
    return rows


@pytest.mark.parametrize("loss", ["dapo", "grpo"])
def test_tokens_outside_the_nucleus_do_not_dilute_the_loss(tiny_model: str, loss: str) -> None:
    # rows of tokens outside π_prox's top-p nucleus are left out of the loss; they must be left
    # out of its normaliser too (DAPO: tokens in the update; GRPO: rows and row lengths), so
    # adding them changes nothing: neither the gradient nor the loss
    from actors.learner.config import PolicyLoss

    model, tokenizer = load_policy(tiny_model)
    spec = SamplingSpec(0.7, 0.5)
    kept = nucleus_rows(model, len(tokenizer), spec, inside=True, n=4, seed=3)
    outside = nucleus_rows(model, len(tokenizer), spec, inside=False, n=3, seed=4)
    step = StepSettings(**{**settings(10_000).__dict__, "objective": PolicyObjective(loss=PolicyLoss(loss))})

    def gradient(rows: list[TrainRow], micro_batch_tokens: int):
        trainer = GradientRecorder(
            copy.deepcopy(model),
            lr=1e-3,
            settings=StepSettings(**{**step.__dict__, "micro_batch_tokens": micro_batch_tokens}),
            spec=spec,
            pad_id=0,
        )
        stats = trainer.step(rows, Phase.RL)
        return trainer.gradient, stats

    alone, s1 = gradient(kept, 10_000)
    mixed, s2 = gradient(kept[:2] + outside + kept[2:], 10_000)
    split, s3 = gradient(kept[:2] + outside + kept[2:], 12)  # several micro-batches
    assert s2["outside_nucleus_tokens"] == sum(r.n_targets for r in outside) > 0
    assert s1["outside_nucleus_tokens"] == 0
    assert abs(s1["loss"] - s2["loss"]) < 1e-6 and abs(s1["loss"] - s3["loss"]) < 1e-6
    for other in (mixed, split):
        assert max(float((alone[k] - other[k]).abs().max()) for k in alone) < 1e-6
    assert max(float(g.abs().max()) for g in alone.values()) > 1e-4, "a real gradient"


def test_a_row_partly_outside_the_nucleus_weighs_by_its_kept_tokens(tiny_model: str) -> None:
    # GRPO weighs row i's tokens 1 / (len_i · rows): len_i counts the tokens the loss keeps, so a
    # row that goes on past its first token with tokens outside the nucleus trains exactly like
    # the row cut after that token (a token's log-prob depends only on what precedes it)
    from actors.learner.config import PolicyLoss

    model, tokenizer = load_policy(tiny_model)
    spec = SamplingSpec(0.7, 0.5)
    inside = nucleus_rows(model, len(tokenizer), spec, inside=True, n=3, seed=5)
    cut = inside[0]
    ids = list(cut.ids)
    with torch.no_grad():
        for _ in range(3):  # the least likely next tokens: outside a 0.5 nucleus
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmin()))
        from actors.learner.logprobs import full_logprobs

        tensor = torch.tensor([ids])
        logp, _ = full_logprobs(model(input_ids=tensor).logits, tensor, SamplingSpec(spec.temperature, 1.0))
    longer = TrainRow(tuple(ids), cut.n_prompt, cut.advantage, tuple(logp[0, cut.n_prompt :].tolist()))
    step = StepSettings(**{**settings(10_000).__dict__, "objective": PolicyObjective(loss=PolicyLoss.GRPO)})

    def gradient(rows: list[TrainRow]):
        trainer = GradientRecorder(copy.deepcopy(model), lr=1e-3, settings=step, spec=spec, pad_id=0)
        stats = trainer.step(rows, Phase.RL)
        return trainer.gradient, stats

    short, s1 = gradient([cut, *inside[1:]])
    long, s2 = gradient([longer, *inside[1:]])
    assert s2["outside_nucleus_tokens"] > 0
    assert abs(s1["loss"] - s2["loss"]) < 1e-6
    assert max(float((short[k] - long[k]).abs().max()) for k in short) < 1e-6
