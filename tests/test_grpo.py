"""GRPO advantages and the decoupled-PPO loss, against arithmetic written out by hand."""

from __future__ import annotations

import math

import torch

from actors.learner.grpo import (
    AdvantageNorm,
    decoupled_ppo_loss,
    group_advantages,
    informative_groups,
    ppo_stats,
)


def test_group_advantages_by_hand() -> None:
    # group 0: rewards 1,0,0,0 -> mean 0.25, population std sqrt(0.25*0.75) = 0.4330
    #   A = 0.75/0.4330 = 1.7321 and -0.25/0.4330 = -0.5774
    # group 1: rewards 1,1,0,0 -> mean 0.5, std 0.5 -> A = +1, +1, -1, -1
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    adv = group_advantages(rewards, groups, torch.zeros(8, dtype=torch.long), AdvantageNorm.GROUP)
    expected = [math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), 1, 1, -1, -1]
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-4, rtol=0)


def test_task_batch_std_scales_by_the_task_types_spread() -> None:
    # task 0 holds groups 0 ([1,0]) and 1 ([1,1]): rewards 1,0,1,1 -> mean .75, std sqrt(3)/4 = 0.4330
    # group 0 centred: +0.5, -0.5 -> /0.4330 = +1.1547, -1.1547; group 1 centred: 0, 0
    # task 1 holds group 2 ([0,1]): std 0.5 -> -1, +1
    rewards = torch.tensor([1.0, 0, 1, 1, 0, 1])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    tasks = torch.tensor([0, 0, 0, 0, 1, 1])
    adv = group_advantages(rewards, groups, tasks, AdvantageNorm.TASK_BATCH)
    torch.testing.assert_close(adv, torch.tensor([1.1547, -1.1547, 0, 0, -1, 1]), atol=1e-4, rtol=0)


def test_uniform_groups_are_not_informative() -> None:
    keep = informative_groups(torch.tensor([1.0, 1, 0, 1]), torch.tensor([0, 0, 1, 1]))
    assert keep.tolist() == [False, False, True, True]


def test_behaviour_weight_and_token_mean() -> None:
    # prox = current, so u = 1; behav differs on token 2 by ln 2 -> weights 1 and 2.
    # loss = -(1*2 + 2*2) / 2 tokens = -3 ; with the cap at 1.5: -(2 + 3) / 2 = -2.5
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    behav = torch.tensor([[-1.0, -2.0 - math.log(2)]])
    adv, mask = torch.tensor([2.0]), torch.ones(1, 2)
    loss, stats = decoupled_ppo_loss(logp, logp.detach(), behav, adv, mask, 0.2, 0.28, 5.0)
    assert math.isclose(float(loss.detach()), -3.0, rel_tol=1e-6)
    assert math.isclose(ppo_stats(stats)["behaviour_weight_mean"], 1.5, rel_tol=1e-6)
    loss.backward()
    # d/dlogp of -(w * u * A)/T at u = 1 is -w*A/T: -1*2/2 = -1 and -2*2/2 = -2
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -2.0]]))
    capped, _ = decoupled_ppo_loss(logp, logp.detach(), behav, adv, mask, 0.2, 0.28, 1.5)
    assert math.isclose(float(capped.detach()), -2.5, rel_tol=1e-6)


def test_clip_higher_stops_the_gradient() -> None:
    # u = 2 > 1 + 0.28 with A = +1: surrogate = min(2, 1.28) = 1.28 -> loss -1.28, no gradient
    prox = torch.tensor([[-1.0]])
    logp = (prox + math.log(2)).requires_grad_(True)
    loss, stats = decoupled_ppo_loss(logp, prox, prox, torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.28, 5.0)
    assert math.isclose(float(loss.detach()), -1.28, rel_tol=1e-6)
    assert ppo_stats(stats)["clip_fraction"] == 1.0
    loss.backward()
    assert float(logp.grad.abs().sum()) == 0.0


def test_masked_tokens_do_not_count() -> None:
    # token 2 is masked: loss = -(1 * 1 * 3) / 1 token = -3
    logp = torch.tensor([[-1.0, -5.0]])
    loss, _ = decoupled_ppo_loss(logp, logp, logp, torch.tensor([3.0]), torch.tensor([[1.0, 0.0]]), 0.2, 0.2, 5.0)
    assert math.isclose(float(loss.detach()), -3.0, rel_tol=1e-6)


def test_a_batch_token_count_splits_the_mean_across_calls() -> None:
    # one call over both rows == two calls (one row each) divided by the batch's 3 tokens:
    # row 0: A = 1, two tokens -> -2; row 1: A = 4, one token -> -4; sum -6 / 3 tokens = -2
    logp = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, 4.0])
    whole, _ = decoupled_ppo_loss(logp, logp, logp, adv, mask, 0.2, 0.2, 5.0)
    parts = [
        decoupled_ppo_loss(
            logp[i : i + 1],
            logp[i : i + 1],
            logp[i : i + 1],
            adv[i : i + 1],
            mask[i : i + 1],
            0.2,
            0.2,
            5.0,
            tokens=3.0,
        )[0]
        for i in range(2)
    ]
    assert math.isclose(float(whole), -2.0, rel_tol=1e-6)
    assert math.isclose(float(sum(parts)), -2.0, rel_tol=1e-6)


def test_tokens_outside_the_nucleus_are_left_out() -> None:
    # token 2's proximal log-prob is -inf (outside top-p): no NaN, counted, loss from token 1 only
    logp = torch.tensor([[-1.0, -math.inf]], requires_grad=True)
    loss, stats = decoupled_ppo_loss(
        logp, logp.detach(), torch.tensor([[-1.0, -2.0]]), torch.tensor([2.0]), torch.ones(1, 2), 0.2, 0.2, 5.0
    )
    assert math.isclose(float(loss.detach()), -2.0, rel_tol=1e-6)
    assert stats["outside_nucleus_tokens"] == 1.0 and stats["tokens"] == 1.0
    loss.backward()
    assert torch.isfinite(logp.grad).all()
