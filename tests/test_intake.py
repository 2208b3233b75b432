"""The learner's intake, by hand: a group sent twice (a rollout actor that died between sending
it and committing its task sends it again) frees its staleness-gate slot by counting as
consumed, once per extra message, and is never trained twice; the same message read again
after a restart counts nothing."""

from __future__ import annotations

from actors.learner.intake import Intake
from schemas import ScoredRollout, encode, headers_for
from streams.kafka import Message
from streams.processor import arrow_decoder
from tests.conftest import scored_rollout

RUN = "run-a"


def message(offset: int, group: str, rewards: tuple[float, ...] = (1.0, 0.0)) -> Message:
    rollouts = [
        scored_rollout(group, i, len(rewards), [5, 6], [7], reward=r, run_id=RUN) for i, r in enumerate(rewards)
    ]
    return Message("scored", 0, offset, group.encode(), encode(rollouts), headers_for(rollouts[0]))


def intake() -> Intake:
    return Intake(
        "learner-t",
        max_staleness=1,
        dynamic_sampling=False,
        run_id=RUN,
        source_run_id=RUN,
        dedup_window=100,
        informative=lambda group: True,
        dead_letter=lambda message, exc: (_ for _ in ()).throw(AssertionError(f"dead-lettered: {exc}")),
    )


def test_a_group_sent_twice_counts_as_consumed_once_more_and_is_not_taken_again() -> None:
    got = intake()
    decode = arrow_decoder(ScoredRollout)
    first = got.take(message(0, "g1"), decode, version=0)
    assert first is not None and [r.rollout_id for r in first] == ["g1/0", "g1/1"]
    got.trained([first], version=0)
    assert got.groups_consumed == 1
    # the rollout actor re-sent g1 after a crash: a new message (offset 5) with the same rollouts
    assert got.take(message(5, "g1"), decode, version=0) is None
    assert (got.groups_consumed, got.duplicate_groups) == (2, 1), "the copy's gate slot is freed"
    # after a learner restart, offset 0 is read again below the checkpoint's read-through: no count
    assert got.take(message(0, "g1"), decode, version=0, read_before=True) is None
    assert (got.groups_consumed, got.duplicate_groups) == (2, 1)
    # a new group is taken as before
    assert got.take(message(6, "g2"), decode, version=0) is not None
