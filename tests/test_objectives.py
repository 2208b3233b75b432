"""Advantages, policy losses, AEPO and update planning, against arithmetic written out by hand,
and against a per-token reimplementation of each paper's formula (to 1e-6)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from actors.learner.advantages import group_advantages, informative_groups, overlong_penalty
from actors.learner.aepo import entropy_clip_mask, next_masking
from actors.learner.config import (
    AdvantageNorm,
    AepoConfig,
    AepoMode,
    BehaviourWeight,
    Correction,
    PolicyLoss,
    PolicyObjective,
)
from actors.learner.objectives import kl_k3, policy_loss, policy_stats, row_scale
from actors.learner.rlbatch import Shaping, Trajectory, plan_updates, trajectory_advantages


def dapo(mask: torch.Tensor) -> torch.Tensor:
    return row_scale(mask.sum(-1), PolicyLoss.DAPO, float(mask.sum()), float(mask.shape[0]))


# -- advantages ---------------------------------------------------------------------------------
def test_group_advantages_by_hand() -> None:
    # group 0: rewards 1,0,0,0 -> mean 0.25, population std sqrt(0.25*0.75) = 0.4330
    #   A = 0.75/0.4330 = 1.7321 and -0.25/0.4330 = -0.5774
    # group 1: rewards 1,1,0,0 -> mean 0.5, std 0.5 -> A = +1, +1, -1, -1
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    adv = group_advantages(rewards, groups, torch.zeros(8, dtype=torch.long), AdvantageNorm.GROUP)
    expected = [math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), 1, 1, -1, -1]
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-4, rtol=0)


def test_group_mean_only_does_not_scale() -> None:
    # Dr.GRPO / MemAgent: rewards 1,0,0,0 -> r - 0.25 = 0.75, -0.25, -0.25, -0.25
    adv = group_advantages(
        torch.tensor([1.0, 0, 0, 0]),
        torch.zeros(4, dtype=torch.long),
        torch.zeros(4, dtype=torch.long),
        AdvantageNorm.GROUP_MEAN,
    )
    assert adv.tolist() == [0.75, -0.25, -0.25, -0.25]


def test_task_batch_std_scales_by_the_task_types_spread() -> None:
    # task 0 holds groups 0 ([1,0]) and 1 ([1,1]): rewards 1,0,1,1 -> mean .75, std sqrt(3)/4 = 0.4330
    # group 0 centred: +0.5, -0.5 -> /0.4330 = +1.1547, -1.1547; group 1 centred: 0, 0
    # task 1 holds group 2 ([0,1]): std 0.5 -> -1, +1
    rewards = torch.tensor([1.0, 0, 1, 1, 0, 1])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    tasks = torch.tensor([0, 0, 0, 0, 1, 1])
    adv = group_advantages(rewards, groups, tasks, AdvantageNorm.TASK_BATCH)
    torch.testing.assert_close(adv, torch.tensor([1.1547, -1.1547, 0, 0, -1, 1]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", list(AdvantageNorm))
def test_equal_non_binary_rewards_give_exactly_zero(norm: AdvantageNorm) -> None:
    # eight rewards of 0.9: the float32 mean of eight 0.9s is 0.90000004, so r - mean = -4e-8,
    # which / (0 + 1e-6) would be -0.04: "informative". Compared exactly, the group is uniform.
    rewards = torch.full((8,), 0.9)
    groups = torch.zeros(8, dtype=torch.long)
    assert float((rewards - rewards.mean()).abs().max()) > 0  # the float32 residue this guards against
    adv = group_advantages(rewards, groups, groups, norm)
    assert adv.tolist() == [0.0] * 8
    assert informative_groups(rewards, groups).tolist() == [False] * 8


def test_uniform_groups_are_not_informative() -> None:
    keep = informative_groups(torch.tensor([1.0, 1, 0, 1]), torch.tensor([0, 0, 1, 1]))
    assert keep.tolist() == [False, False, True, True]


def test_overlong_penalty_by_hand() -> None:
    # cap 100, buffer 20: free up to 80; 90 is half-way through the buffer -> -0.5 * 1.0; 100 -> -1
    assert overlong_penalty(80, 100, 20, 1.0) == 0.0
    assert overlong_penalty(90, 100, 20, 1.0) == -0.5
    assert overlong_penalty(100, 100, 20, 1.0) == -1.0
    assert overlong_penalty(120, 100, 20, 0.5) == -0.5
    assert overlong_penalty(100, 100, 0, 1.0) == 0.0


def test_trajectory_advantages_shape_then_normalise() -> None:
    # group 0: rewards 1, 1 but lengths 10 (free) and 15 (cap 16, buffer 4: 3 of 4 -> -0.75)
    #   shaped 1, 0.25 -> mean 0.625, std 0.375 -> A = +1, -1 (informative although both were right)
    # group 1: rewards 0, 0, equal -> A = 0, uninformative
    found = trajectory_advantages(
        [
            Trajectory(0, "kv", 1.0, 10, 16),
            Trajectory(0, "kv", 1.0, 15, 16),
            Trajectory(1, "kv", 0.0, 3, 16),
            Trajectory(1, "kv", 0.0, 3, 16),
        ],
        Shaping(AdvantageNorm.GROUP, overlong_buffer=4, overlong_penalty=1.0),
    )
    assert found.shaped == [1.0, 0.25, 0.0, 0.0]
    torch.testing.assert_close(torch.tensor(found.advantage), torch.tensor([1.0, -1.0, 0.0, 0.0]), atol=1e-5, rtol=0)
    assert found.informative == [True, True, False, False]


# -- policy losses --------------------------------------------------------------------------------
def test_behaviour_weight_and_token_mean() -> None:
    # prox = current, so u = 1; behav differs on token 2 by ln 2 -> weights 1 and 2.
    # loss = -(1*2 + 2*2) / 2 tokens = -3 ; with the cap at 1.5: -(2 + 3) / 2 = -2.5
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    behav = torch.tensor([[-1.0, -2.0 - math.log(2)]])
    adv, mask = torch.tensor([2.0]), torch.ones(1, 2)
    loss, stats = policy_loss(logp, logp.detach(), behav, adv, mask, dapo(mask), PolicyObjective())
    assert math.isclose(float(loss.detach()), -3.0, rel_tol=1e-6)
    assert math.isclose(policy_stats(stats)["behaviour_weight_mean"], 1.5, rel_tol=1e-6)
    loss.backward()
    # d/dlogp of -(w * u * A)/T at u = 1 is -w*A/T: -1*2/2 = -1 and -2*2/2 = -2
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -2.0]]))
    capped, _ = policy_loss(
        logp, logp.detach(), behav, adv, mask, dapo(mask), PolicyObjective(behaviour_weight_cap=1.5)
    )
    assert math.isclose(float(capped.detach()), -2.5, rel_tol=1e-6)


def test_behaviour_weight_mask_leaves_the_token_out() -> None:
    # weights 1 and 2, threshold 1.5, mask: token 2 gets weight 0 -> -(1*2 + 0) / 2 tokens = -1
    logp = torch.tensor([[-1.0, -2.0]])
    behav = torch.tensor([[-1.0, -2.0 - math.log(2)]])
    mask = torch.ones(1, 2)
    objective = PolicyObjective(behaviour_weight=BehaviourWeight.MASK, behaviour_weight_cap=1.5)
    loss, stats = policy_loss(logp, logp, behav, torch.tensor([2.0]), mask, dapo(mask), objective)
    assert math.isclose(float(loss), -1.0, rel_tol=1e-6)
    assert policy_stats(stats)["weight_masked_fraction"] == 0.5


def test_naive_ppo_clips_against_the_behaviour_policy() -> None:
    # u = π_θ / π_behav: token 1 u = 1, token 2 u = e^{ln 2} = 2 > 1.28 with A = +1 -> 1.28 (no gradient)
    # loss = -(1 + 1.28) / 2 = -1.14; d/dlogp1 = -1/2, d/dlogp2 = 0; no behaviour weight
    logp = torch.tensor([[-1.0, -2.0 + math.log(2)]], requires_grad=True)
    behav = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    objective = PolicyObjective(correction=Correction.NAIVE)
    loss, stats = policy_loss(logp, logp.detach(), behav, torch.tensor([1.0]), mask, dapo(mask), objective)
    assert math.isclose(float(loss.detach()), -1.14, rel_tol=1e-6)
    assert policy_stats(stats)["clip_fraction"] == 0.5
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, 0.0]]))


def test_clip_higher_stops_the_gradient() -> None:
    # u = 2 > 1 + 0.28 with A = +1: surrogate = min(2, 1.28) = 1.28 -> loss -1.28, no gradient
    prox = torch.tensor([[-1.0]])
    logp = (prox + math.log(2)).requires_grad_(True)
    mask = torch.ones(1, 1)
    loss, stats = policy_loss(logp, prox, prox, torch.tensor([1.0]), mask, dapo(mask), PolicyObjective())
    assert math.isclose(float(loss.detach()), -1.28, rel_tol=1e-6)
    assert policy_stats(stats)["clip_fraction"] == 1.0
    loss.backward()
    assert float(logp.grad.abs().sum()) == 0.0
    # with A = -1 the min takes the unclipped -2 (the gradient flows): not counted as clipped
    _, stats = policy_loss(logp, prox, prox, torch.tensor([-1.0]), mask, dapo(mask), PolicyObjective())
    assert policy_stats(stats)["clip_fraction"] == 0.0


def test_grpo_averages_sequences_dapo_averages_tokens() -> None:
    # row 0: A = 1 over two tokens, row 1: A = 4 over one token, u = w = 1
    # DAPO: -(1 + 1 + 4) / 3 tokens = -2 ; GRPO: -((1 + 1)/2 + 4/1) / 2 rows = -2.5
    logp = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, 4.0])
    lengths = mask.sum(-1)
    for loss_kind, expected in ((PolicyLoss.DAPO, -2.0), (PolicyLoss.GRPO, -2.5)):
        scale = row_scale(lengths, loss_kind, tokens=3.0, rows=2.0)
        loss, _ = policy_loss(logp, logp, logp, adv, mask, scale, PolicyObjective(loss=loss_kind))
        assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_kl_k3_by_hand() -> None:
    # ref = logp + ln 2: k3 = e^{ln 2} - ln 2 - 1 = 0.30685; with β = 0.1, A = 0, one token: 0.030685
    logp = torch.tensor([[-1.0]])
    ref = logp + math.log(2)
    assert math.isclose(float(kl_k3(logp, ref)), 2 - math.log(2) - 1, rel_tol=1e-6)
    assert float(kl_k3(logp, logp)) == 0.0
    mask = torch.ones(1, 1)
    loss, stats = policy_loss(
        logp, logp, logp, torch.tensor([0.0]), mask, dapo(mask), PolicyObjective(kl_coef=0.1), ref_logp=ref
    )
    assert math.isclose(float(loss), 0.1 * (1 - math.log(2)), rel_tol=1e-6)
    assert math.isclose(policy_stats(stats)["kl"], 1 - math.log(2), rel_tol=1e-6)


def test_masked_tokens_do_not_count() -> None:
    # token 2 is masked: loss = -(1 * 1 * 3) / 1 token = -3
    logp = torch.tensor([[-1.0, -5.0]])
    mask = torch.tensor([[1.0, 0.0]])
    loss, _ = policy_loss(logp, logp, logp, torch.tensor([3.0]), mask, dapo(mask), PolicyObjective(clip_high=0.2))
    assert math.isclose(float(loss), -3.0, rel_tol=1e-6)


def test_a_batch_token_count_splits_the_mean_across_calls() -> None:
    # one call over both rows == two calls (one row each) scaled by the batch's 3 tokens:
    # row 0: A = 1, two tokens -> -2; row 1: A = 4, one token -> -4; sum -6 / 3 tokens = -2
    logp = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, 4.0])
    whole, _ = policy_loss(logp, logp, logp, adv, mask, dapo(mask), PolicyObjective())
    parts = [
        policy_loss(
            logp[i : i + 1],
            logp[i : i + 1],
            logp[i : i + 1],
            adv[i : i + 1],
            mask[i : i + 1],
            torch.tensor([1 / 3]),
            PolicyObjective(),
        )[0]
        for i in range(2)
    ]
    assert math.isclose(float(whole), -2.0, rel_tol=1e-6)
    assert math.isclose(float(sum(parts)), -2.0, rel_tol=1e-6)


def test_tokens_outside_the_nucleus_are_left_out() -> None:
    # token 2's proximal log-prob is -inf (outside top-p): no NaN, counted, loss from token 1 only
    logp = torch.tensor([[-1.0, -math.inf]], requires_grad=True)
    mask = torch.ones(1, 2)
    loss, stats = policy_loss(
        logp,
        logp.detach(),
        torch.tensor([[-1.0, -2.0]]),
        torch.tensor([2.0]),
        mask,
        torch.tensor([1.0]),
        PolicyObjective(clip_high=0.2),
    )
    assert math.isclose(float(loss.detach()), -2.0, rel_tol=1e-6)
    assert stats["outside_nucleus_tokens"] == 1.0 and stats["tokens"] == 1.0
    loss.backward()
    assert torch.isfinite(logp.grad).all()


def reference_loss(logp, prox, behav, adv, mask, objective: PolicyObjective, ref) -> float:
    """The papers' formulas token by token in plain Python floats (AReaL's decoupled PPO, PPO,
    DAPO's token mean or GRPO's sequence mean, the k3 KL)."""
    rows = [[t for t in range(len(mask[i])) if mask[i][t]] for i in range(len(mask))]
    tokens = sum(len(r) for r in rows)
    total = 0.0
    for i, ts in enumerate(rows):
        for t in ts:
            old = prox[i][t] if objective.correction is Correction.DECOUPLED else behav[i][t]
            u = math.exp(logp[i][t] - old)
            clipped = min(max(u, 1 - objective.clip_low), 1 + objective.clip_high)
            term = min(u * adv[i], clipped * adv[i])
            w = 1.0
            if objective.correction is Correction.DECOUPLED:
                w = math.exp(prox[i][t] - behav[i][t])
                if objective.behaviour_weight is BehaviourWeight.CAP:
                    w = min(w, objective.behaviour_weight_cap)
                elif w > objective.behaviour_weight_cap:
                    w = 0.0
            d = ref[i][t] - logp[i][t]
            per = -w * term + objective.kl_coef * (math.exp(d) - d - 1)
            total += per / tokens if objective.loss is PolicyLoss.DAPO else per / (len(ts) * len(rows))
    return total


@pytest.mark.parametrize("loss_kind", list(PolicyLoss))
@pytest.mark.parametrize("correction", list(Correction))
@pytest.mark.parametrize("weight", list(BehaviourWeight))
def test_agrees_with_a_per_token_reimplementation(loss_kind, correction, weight) -> None:
    rng = random.Random(7)
    B, T = 4, 6
    logp = [[-rng.uniform(0.1, 3) for _ in range(T)] for _ in range(B)]
    prox = [[x + rng.uniform(-0.3, 0.3) for x in row] for row in logp]
    behav = [[x + rng.uniform(-1.5, 0.5) for x in row] for row in prox]
    ref = [[x + rng.uniform(-0.5, 0.5) for x in row] for row in logp]
    adv = [rng.uniform(-2, 2) for _ in range(B)]
    mask = [[1.0 if t < rng.randint(2, T) else 0.0 for t in range(T)] for _ in range(B)]
    objective = PolicyObjective(loss_kind, correction, 0.2, 0.28, weight, 2.0, kl_coef=0.05)
    m = torch.tensor(mask, dtype=torch.float64)
    scale = row_scale(m.sum(-1), loss_kind, float(m.sum()), float(B)).double()
    got, _ = policy_loss(
        *(torch.tensor(x, dtype=torch.float64) for x in (logp, prox, behav, adv)),
        m,
        scale,
        objective,
        torch.tensor(ref, dtype=torch.float64),
    )
    assert abs(float(got) - reference_loss(logp, prox, behav, adv, mask, objective, ref)) < 1e-6


# -- AEPO ---------------------------------------------------------------------------------------
def test_aepo_hysteresis_across_the_band() -> None:
    # band (0.05, 0.15): 0.10 in band from off stays off; 0.20 above -> on; back into the band
    # (0.10, 0.06) stays on; 0.04 below -> off; 0.10 in band stays off; 0.16 -> on; NaN holds
    entropies = [0.10, 0.20, 0.10, 0.06, 0.04, 0.10, 0.16, float("nan")]
    states, masking = [], False
    for h in entropies:
        masking = next_masking(masking, h, 0.05, 0.15)
        states.append(masking)
    assert states == [False, True, True, True, False, False, True, True]


def test_entropy_clips_by_token_and_by_sequence() -> None:
    # row 0 (A = -1): token entropies 0.9, 0.1 -> token mode (τ 0.5) drops token 0;
    #   sequence mean 0.5 > τ_seq 0.3 -> sequence mode drops both
    # row 1 (A = +1): entropies 0.9, 0.9: positive, kept in both modes
    entropy = torch.tensor([[0.9, 0.1], [0.9, 0.9]])
    mask = torch.ones(2, 2)
    adv = torch.tensor([-1.0, 1.0])
    token = entropy_clip_mask(entropy, mask, adv, AepoConfig(mode=AepoMode.TOKEN, tau_token=0.5))
    assert token.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    seq = entropy_clip_mask(entropy, mask, adv, AepoConfig(mode=AepoMode.SEQUENCE, tau_sequence=0.3))
    assert seq.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert entropy_clip_mask(entropy, mask, adv, AepoConfig()).tolist() == mask.tolist()


def test_aepo_band_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"learner\.aepo\.h_low .* below learner\.aepo\.h_high"):
        AepoConfig(h_low=0.3, h_high=0.2)


# -- updates --------------------------------------------------------------------------------------
def test_plan_updates_keeps_groups_whole_and_covers_each_epoch_once() -> None:
    row_groups = [0, 0, 1, 1, 2, 3, 3, 3]
    assert plan_updates(row_groups, 1, 1, torch.Generator().manual_seed(0)) is None
    updates = plan_updates(row_groups, 2, 2, torch.Generator().manual_seed(0))
    assert len(updates) == 4
    for epoch in (updates[:2], updates[2:]):
        assert sorted(i for u in epoch for i in u) == list(range(8))
        for u in epoch:  # 2 groups per minibatch, each group's rows together
            assert len({row_groups[i] for i in u}) == 2
            assert all(j in u for i in u for j in range(8) if row_groups[j] == row_groups[i])
