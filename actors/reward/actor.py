"""Reward scoring: `rollouts` -> `scored`, by rule verifiers on the extracted final answer.

The task's `answer_kind` picks the verifier, and the one used is recorded on each scored
rollout (`verifier`): text answers by `rule` (`Rule.EXACT`, the normalised exact match, or
`Rule.SUB_EM`, the better of exact and two-way substring match, as in QwenLong-L1); numbers
by numeric match within `numeric_tolerance`; multiple choice by option match; lists
(multi-needle) by the fraction of items recalled. The LLM-judge fallback of the paper is a
later addition.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from actors.base import ProcessorActor
from actors.reward.config import RewardConfig
from actors.reward.metrics import REWARD
from actors.verifiers import Rule, verify
from schemas import Rollout, ScoredRollout
from streams.kafka import Message, StreamsConfig
from streams.processor import Output, arrow_decoder
from streams.topics import ROLLOUTS, SCORED


def score(rollout: Rollout, rule: Rule, numeric_tolerance: float = 1e-4) -> ScoredRollout:
    """Pure: the scored copy of `rollout`."""
    verdict = verify(
        rollout.response_text, rollout.reference, rollout.question, rollout.answer_kind, rule, numeric_tolerance
    )
    fields = {f.name: getattr(rollout, f.name) for f in dataclasses.fields(Rollout)}
    return ScoredRollout(
        **fields,
        reward=verdict.reward,
        exact_match=verdict.exact,
        substring_match=verdict.substring,
        numeric_match=verdict.numeric,
        extracted_answer=verdict.answer,
        verifier=verdict.verifier,
    )


def score_group(rollouts: list[Rollout], rule: Rule, numeric_tolerance: float = 1e-4) -> list[ScoredRollout]:
    """Pure: every row of a group scored. A memory-agent trajectory's reward is its answer's
    (the final turn's), given to each of its turns; a reading turn's own text is a memory, not
    an answer, and is not scored."""
    finals = {r.sample_index: score(r, rule, numeric_tolerance) for r in rollouts if r.final}
    missing = sorted({r.sample_index for r in rollouts} - finals.keys())
    if missing:
        raise ValueError(f"group {rollouts[0].group_id}: samples {missing[:4]} have no final turn")
    verdict = ("reward", "exact_match", "substring_match", "numeric_match", "extracted_answer", "verifier")
    return [
        finals[r.sample_index]
        if r.final
        else ScoredRollout(
            **{f.name: getattr(r, f.name) for f in dataclasses.fields(Rollout)},
            **{name: getattr(finals[r.sample_index], name) for name in verdict},
        )
        for r in rollouts
    ]


class RewardActor(ProcessorActor):
    KIND = "reward"

    def __init__(self, *, name: str, config: RewardConfig, streams: StreamsConfig) -> None:
        self.config = config
        self._first: OrderedDict[str, tuple[int, int]] = OrderedDict()
        """Group id -> the (partition, offset) of the message it first came in (the last
        `streams.dedup_window` groups)."""
        self._window = streams.dedup_window
        decode = arrow_decoder(Rollout)

        def once_per_message(message: Message) -> list[Rollout]:
            """The group of a message, unless this message was handled already (read again
            after a rebalance or a refused commit). A group in a *new* message is a copy (a
            rollout actor that died before committing sent it again): it goes on, and the
            learner counts it as consumed, so the gate slot its message holds is freed."""
            rollouts = decode(message)
            if not rollouts:
                return rollouts
            where, group = (message.partition, message.offset), rollouts[0].group_id
            first = self._first.get(group)
            if first == where:
                return []
            if first is None:
                self._first[group] = where
                while len(self._first) > self._window:
                    self._first.popitem(last=False)
            return rollouts

        self._connect(name=name, streams=streams, topic=ROLLOUTS.name, decoder=once_per_message, dedup_key=lambda _: "")

    def handle(self, rollouts: list[Rollout]) -> list[Output]:
        """A message holds one group (every turn of its trajectories); its scored copy stays
        one message."""
        scored = score_group(rollouts, self.config.rule, self.config.numeric_tolerance)
        for s in scored:
            if s.final:  # one observation per trajectory
                REWARD.labels(self.name, s.task_type).observe(s.reward)
        return [Output(SCORED.name, scored, key=scored[0].group_id.encode())]
