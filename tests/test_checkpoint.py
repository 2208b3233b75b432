"""Learner checkpoints: atomic, validated on load, and a resumed learner equals an uninterrupted one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from actors.learner import checkpoint, ledger
from actors.learner.actor import Learner
from actors.learner.checkpoint import LearnerState
from actors.modeling import load_policy
from streams.blobs import ClaimCheck
from streams.kafka import StreamsConfig
from streams.logs import group_offsets
from tests.conftest import Running, make_learner, send_scored, wait_for


def _state(step: int) -> LearnerState:
    return LearnerState(
        version=step, rl_step=step, groups_consumed=4 * step, samples_trained=0, tokens_trained=0, stale_dropped=0
    )


def _save(root: Path, step: int, keep: int = 5) -> Path:
    tmp = checkpoint.begin(root, _state(step))
    (tmp / "model").mkdir()
    (tmp / "model" / "weights.bin").write_bytes(bytes(100 + step))
    return checkpoint.commit(tmp, _state(step), keep)


def test_newest_complete_checkpoint_wins_and_broken_ones_are_skipped_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (1, 2, 3):
        _save(tmp_path, step)
    assert checkpoint.latest(tmp_path)[1] == _state(3)
    # torn: a file shorter than the manifest says (3); partial: never renamed (4), no manifest (5)
    (tmp_path / "step-00000003" / "model" / "weights.bin").write_bytes(b"short")
    (tmp_path / "step-00000004.tmp").mkdir()
    (tmp_path / "step-00000005").mkdir()
    with caplog.at_level(logging.WARNING):
        found = checkpoint.latest(tmp_path)
    assert found is not None and found[1] == _state(2)
    log = caplog.text
    assert "step-00000003 skipped: torn (model/weights.bin is 5 bytes, the manifest says 103)" in log
    assert "step-00000004.tmp skipped: partial (never renamed into place)" in log
    assert "step-00000005 skipped: partial (no MANIFEST.json)" in log


def test_only_the_last_keep_checkpoints_stay(tmp_path: Path) -> None:
    for step in range(5):
        _save(tmp_path, step, keep=2)
    # the last 2, and step 0 (where RL started: replays start there)
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path)] == [
        "step-00000000",
        "step-00000003",
        "step-00000004",
    ]
    assert LearnerState.offsets_key({("scored", 1): 7, ("scored", 0): 3}) == {"scored/0": 3, "scored/1": 7}
    assert _state(1).partition_offsets() == {}


def _learner(name: str, run_dir: Path, steps: int, streams: StreamsConfig, claim: ClaimCheck, model: str) -> Learner:
    return make_learner(
        streams,
        claim,
        model,
        run_dir,
        name=name,
        rl_steps=steps,
        groups_per_step=2,
        max_staleness=50,
        weights_keep=52,
        eval_every=1000,
        checkpoint_every=2,
    )


def _train(learner: Learner) -> dict[str, torch.Tensor]:
    with Running(learner) as running:
        wait_for(lambda: learner.done or bool(running.errors), 120, f"{learner.name} to finish")
        running.check()
    return {k: v.detach().clone() for k, v in learner.trainer.full_state().items()}


def test_a_resumed_learner_ends_where_an_uninterrupted_one_does(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    _, tokenizer = load_policy(tiny_model)
    send_scored(streams, tokenizer, groups=12)
    straight = _train(_learner("learner-a", tmp_path / "a", 5, streams, claim, tiny_model))

    first = _learner("learner-b", tmp_path / "b", 3, streams, claim, tiny_model)
    _train(first)  # stops after step 3: the clean stop checkpoints step 3 (step 2 was periodic)
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path / "b" / "checkpoints")] == [
        "step-00000000",
        "step-00000002",
        "step-00000003",
    ]
    committed = group_offsets(streams, "learner-b")
    assert list(committed.values()) == [6], f"committed once step 3's checkpoint was durable: {committed}"
    first.close()
    second = _learner("learner-b", tmp_path / "b", 5, streams, claim, tiny_model)
    resumed = _train(second)
    # both learners announce under the same run id here, so the newest announced version is
    # learner-a's 5: the restored weights go out as version 6, then 7 and 8
    assert second.rl_step == 5 and second.version == 8 and second.intake.groups_consumed == 10
    worst = max(float((straight[k] - resumed[k]).abs().max()) for k in straight)
    print(f"resumed at step 3 vs uninterrupted, after step 5: max |Δ weight| = {worst:.3g}")
    assert worst < 1e-6
    # the model directory is a Hugging Face checkpoint as is
    exported, _ = load_policy(str(tmp_path / "b" / "checkpoints" / "step-00000005" / "model"))
    assert all(torch.equal(exported.state_dict()[k], resumed[k]) for k in resumed)
    # the ledger: g0..g5 trained before the stop, g6..g9 after the resume, each once
    assert _trained_groups(tmp_path / "b") == [f"g{i}" for i in range(10)]
    second.close()

    # every group re-sent (as a reward actor that crashed before committing would): a learner
    # resumed from step 5 trains g10, g11, skips the copies of g0..g11 by id (the ids seen before
    # the checkpoint travel in it), and trains g12, g13
    send_scored(streams, tokenizer, groups=14)
    third = _learner("learner-b", tmp_path / "b", 7, streams, claim, tiny_model)
    _train(third)
    assert _trained_groups(tmp_path / "b") == [f"g{i}" for i in range(14)]


def _trained_groups(run_dir: Path) -> list[str]:
    outcomes = ledger.outcomes(run_dir)
    assert all(o == "trained" for _, o in outcomes)
    groups = [i.split("/")[0] for i, _ in outcomes]
    return list(dict.fromkeys(groups)) if len(groups) == 4 * len(set(groups)) else groups
