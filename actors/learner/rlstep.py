"""One RL step on complete groups, and the AEPO state it carries from step to step.

Advantages are computed over trajectories (one reward each: a full-context rollout, or a
memory-agent trajectory whose every turn carries its answer's reward), then given to every
turn of the trajectory; each turn is its own training row (MemAgent's multi-conversation
GRPO). AEPO's batch mode masks negative-advantage samples while the batch entropy is low
(hysteresis between `h_low` and `h_high`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from actors.learner.aepo import next_masking
from actors.learner.config import AepoMode, LearnerConfig
from actors.learner.metrics import AEPO_MASKED, AEPO_STATE, AEPO_SWITCHES, CLIP_FRACTION, ENTROPY, KL, REWARD, SAMPLES
from actors.learner.microbatch import TrainRow
from actors.learner.rlbatch import Advantages, Shaping, Trajectory, plan_updates, train_rows, trajectory_advantages
from actors.tasks import MEMORY_TASK_TYPES
from schemas import ScoredRollout

log = logging.getLogger(__name__)

Train = Callable[[list[TrainRow], Sequence[Sequence[int]]], dict[str, float]]


class RLStep:
    """The learner's RL step (`__call__`); `masking` and `switches` are AEPO's state, which a
    checkpoint keeps."""

    def __init__(
        self,
        name: str,
        config: LearnerConfig,
        *,
        max_new_tokens: int,
        answer_tokens: int,
        prompt_of: Callable[[ScoredRollout], Sequence[int]],
        train: Train,
    ) -> None:
        """`max_new_tokens`, `answer_tokens`: the response caps of full-context and memory-agent
        turns (the overlong penalty's); `prompt_of`: a rollout's prompt ids; `train`: one
        optimizer step per update on the rows."""
        self.name = name
        self.config = config
        self.shaping = Shaping(config.advantage_norm, config.overlong_buffer, config.overlong_penalty)
        self.caps = {True: answer_tokens, False: max_new_tokens}
        self.prompt_of = prompt_of
        self.train = train
        self.masking = False
        self.switches = 0

    def restore(self, masking: bool, switches: int) -> None:
        self.masking, self.switches = masking, switches
        AEPO_STATE.labels(self.name).set(float(masking))

    def __call__(self, groups: list[list[ScoredRollout]], rl_step: int) -> dict[str, float]:
        """One RL step on complete groups (`rlbatch.py`); returns batch metrics."""
        finals = [(i, r) for i, g in enumerate(groups) for r in g if r.final]
        found = self.advantages(finals)
        rewards = torch.tensor([r.reward for _, r in finals])
        metrics = {
            "reward_mean": float(rewards.mean()),
            "shaped_reward_mean": sum(found.shaped) / len(found.shaped),
            "informative_fraction": sum(found.informative) / len(found.informative),
        }
        for task_type in sorted({r.task_type for _, r in finals}):
            mean = float(rewards[[r.task_type == task_type for _, r in finals]].mean())
            metrics[f"reward_{task_type}"] = mean
            REWARD.labels(self.name, task_type).set(mean)
        rows, row_groups, masked = train_rows(groups, found, self.masking, self.prompt_of)
        AEPO_MASKED.labels(self.name).inc(masked)
        metrics |= {"aepo_masking": float(self.masking), "aepo_masked": float(masked)}
        if any(r.trained for r in rows):
            order = torch.Generator().manual_seed(rl_step)  # minibatch shuffling, replayable
            stats = self.train(rows, plan_updates(row_groups, self.config.ppo_epochs, self.config.minibatches, order))
            ENTROPY.labels(self.name).set(stats["batch_entropy"])
            CLIP_FRACTION.labels(self.name).set(stats["clip_fraction"])
            KL.labels(self.name).set(stats["kl"])
            metrics |= stats
            if self.config.aepo.mode is AepoMode.BATCH:
                self._measured(stats["batch_entropy"])
        for _, r in finals:
            SAMPLES.labels(self.name, r.task_type).inc()
        return metrics

    def advantages(self, finals: list[tuple[int, ScoredRollout]]) -> Advantages:
        """Shaped rewards and advantages of trajectories, given as (group index, final turn)."""
        return trajectory_advantages(
            [
                Trajectory(i, r.task_type, r.reward, len(r.response_ids), self.caps[r.task_type in MEMORY_TASK_TYPES])
                for i, r in finals
            ],
            self.shaping,
        )

    def informative(self, group: list[ScoredRollout]) -> bool:
        """Whether any trajectory of `group` has a non-zero advantage (DAPO's dynamic sampling)."""
        return any(self.advantages([(0, r) for r in group if r.final]).informative)

    def _measured(self, entropy: float) -> None:
        """AEPO's batch mode: the next step masks negatives or not (hysteresis on `entropy`)."""
        aepo = self.config.aepo
        masking = next_masking(self.masking, entropy, aepo.h_low, aepo.h_high)
        if masking != self.masking:
            self.switches += 1
            AEPO_SWITCHES.labels(self.name, "on" if masking else "off").inc()
            log.info("%s: AEPO %s at batch entropy %.4f", self.name, "masks negatives" if masking else "off", entropy)
        self.masking = masking
        AEPO_STATE.labels(self.name).set(float(masking))
