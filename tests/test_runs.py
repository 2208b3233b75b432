"""Runs on a broker that outlives them: a fresh run ignores an older run's records (counted),
and a resumed run continues from its checkpoint with its own policy versions."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from actors.learner import checkpoint
from actors.learner.actor import Learner
from actors.reward.actor import RewardActor
from actors.reward.config import RewardConfig
from actors.rollout.actor import RolloutActor
from actors.rollout.config import RolloutConfig
from actors.settings import EngineKind
from ops.config import ConfigError, LongtideConfig
from ops.launcher import Service
from ops.runs import Run, new_run, new_run_id, newest_run
from streams.blobs import ClaimCheck
from streams.kafka import StreamsConfig
from streams.logs import exact_end_offsets
from tests.conftest import Running, make_learner, send_tasks, wait_for

GROUP, PER_STEP = 2, 2


def _run(
    streams: StreamsConfig, claim: ClaimCheck, model: str, run: Run, steps: int, leftovers: bool = False
) -> tuple[Learner, RolloutActor]:
    learner = make_learner(
        streams,
        claim,
        model,
        run.directory,
        name="learner-r",
        run_id=run.run_id,
        rl_steps=steps,
        groups_per_step=PER_STEP,
        max_staleness=1,
        checkpoint_every=1,
    )
    rollout = RolloutActor(
        name="rollout-r",
        config=RolloutConfig(group_size=GROUP, max_new_tokens=2, engine=EngineKind.TRANSFORMERS),
        streams=streams,
        model_path=model,
        claim=claim,
        max_staleness=1,
        groups_per_step=PER_STEP,
        run_id=run.run_id,
        rollouts_base=run.rollouts_base,
    )
    reward = RewardActor(name="reward-r", config=RewardConfig(), streams=streams)
    with Running(learner, rollout, reward) as running:
        wait_for(lambda: learner.done or bool(running.errors), 120, "the learner to finish")
        # rollouts run ahead (η = 1): wait for groups the learner never trained, left on `scored`
        trained = steps * PER_STEP * GROUP
        if leftovers:  # a fresh run's rollouts made every group the learner trained on
            wait_for(lambda: rollout.processor.counts["produced"] >= trained + 2 * GROUP, 60, "groups beyond training")
            wait_for(lambda: reward.processor.counts["produced"] >= trained + 2 * GROUP, 60, "scored leftovers")
        running.check()
    return learner, rollout


def test_run_ids_sort_by_start_and_the_newest_run_is_found(tmp_path: Path) -> None:
    assert new_run_id(0).startswith("19700101-000000-") and new_run_id(86400) > new_run_id(0)
    assert newest_run(tmp_path) is None
    first = new_run(tmp_path, {0: 3})
    second = new_run(tmp_path, {0: 9, 1: 2})
    assert newest_run(tmp_path) == second != first
    assert Run.load(first.directory).rollouts_base == {0: 3}


def test_a_fresh_run_ignores_an_older_runs_records_and_a_resumed_run_continues(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    send_tasks(streams, claim, 14, seed=1)
    run_a = new_run(tmp_path, exact_end_offsets(streams, "rollouts"))
    learner_a, _ = _run(streams, claim, tiny_model, run_a, steps=2, leftovers=True)
    assert learner_a.version == 2

    send_tasks(streams, claim, 14, seed=2)
    run_b = new_run(tmp_path, exact_end_offsets(streams, "rollouts"))
    assert sum(run_b.rollouts_base.values()) >= 6, "run A's groups are on `rollouts`, counted as the base"
    learner_b, rollout_b = _run(streams, claim, tiny_model, run_b, steps=2)
    # run B starts at version 0 although `policy` holds run A's versions up to 2
    assert learner_b.version == 2 and learner_b.rl_step == 2
    assert min(learner_b.intake.staleness_hist) >= 0 and max(learner_b.intake.staleness_hist) <= 1
    assert learner_b.intake.other_run_skipped > 0, "run A's untrained groups on `scored` were skipped, and counted"
    print(f"run B skipped {learner_b.intake.other_run_skipped} of run A's scored rollouts")

    send_tasks(streams, claim, 14, seed=3)
    resumed = newest_run(tmp_path)
    assert resumed is not None and resumed.run_id == run_b.run_id
    learner_c, rollout_c = _run(streams, claim, tiny_model, resumed, steps=4)
    # continued from step 2 of run B: the restored weights are announced as version 3
    assert learner_c.rl_step == 4 and learner_c.version == 5, "continued from step 2 of run B"
    assert not [h for h in learner_c.history if h["label"] in ("start", "after sft")], "nothing repeated"
    assert rollout_c.policy.version is not None and 3 <= rollout_c.policy.version <= 5


def _checkpoint(run: Run, offsets: dict[str, int]) -> None:
    state = checkpoint.LearnerState(3, 3, 6, 12, 100, 0, offsets=offsets, run_id=run.run_id)
    checkpoint.commit(checkpoint.begin(run.directory / "checkpoints", state), state, keep=2)


def test_resume_takes_the_newest_run_with_a_checkpoint_and_refuses_in_one_line(
    streams: StreamsConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An aborted start (no checkpoint) is passed over, with the reason logged; no resumable
    run, or a run whose checkpoint is past the end of the log, is a ConfigError naming the run
    and why (the CLI prints it as one line and exits 2); --resume=if-any starts a fresh run."""
    config = LongtideConfig(streams=streams, run_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"no run in .* can be resumed \(there is none\)"):
        Service(config, resume=True)._open_run()
    older = new_run(tmp_path, exact_end_offsets(streams, "rollouts"))
    _checkpoint(older, {"scored/0": 0})
    aborted = new_run(tmp_path, {})
    caplog.set_level(logging.WARNING, logger="ops.launcher")
    assert Service(config, resume=True)._open_run() == older
    assert f"passed over run {aborted.run_id}: no checkpoint" in caplog.text

    _checkpoint(older, {"scored/0": 7})  # trained through offset 7 of a log that has none
    with pytest.raises(
        ConfigError, match=rf"run {older.run_id} cannot be resumed: .*scored/0 ends at 0, below offset 7"
    ):
        Service(config, resume=True)._open_run()

    only_aborted = tmp_path / "other"
    lone = new_run(only_aborted, {})
    fresh_config = LongtideConfig(streams=streams, run_dir=str(only_aborted))
    with pytest.raises(ConfigError, match=rf"can be resumed \({lone.run_id}: no checkpoint in "):
        Service(fresh_config, resume=True)._open_run()
    started = Service(fresh_config, resume="if-any")._open_run()
    assert started.run_id != lone.run_id and newest_run(only_aborted) == started
