from __future__ import annotations

from pathlib import Path

import pytest

from actors.learner.grpo import AdvantageNorm
from actors.tasks import TaskType
from ops.config import load_config, parse_overrides


def test_overrides_map_onto_dataclasses(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("learner:\n  lr: 0.01\n  groups_per_step: 4\nsynthesis:\n  task_types: [two_hop]\n")
    config = load_config(path, ["--learner.lr=3e-3", "--learner.advantage_norm=task_batch"])
    assert config.learner.lr == 0.003 and config.learner.groups_per_step == 4
    assert config.learner.advantage_norm is AdvantageNorm.TASK_BATCH
    assert config.synthesis.task_types == (TaskType.TWO_HOP,)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="bogus"):
        load_config(None, ["--learner.bogus=1"])
    with pytest.raises(ValueError, match=r"learner.max_staleness \(-1\) must be >= 0"):
        load_config(None, ["--learner.max_staleness=-1"])
    with pytest.raises(ValueError, match=r"weights_keep \(2\) must be >= max_staleness \+ 2 \(6\)"):
        load_config(None, ["--learner.max_staleness=4", "--learner.weights_keep=2"])
    with pytest.raises(ValueError, match="must look like"):
        parse_overrides(["--learner.lr"])


def test_shipped_configs_load() -> None:
    configs = sorted(Path("ops/configs").glob("*.yaml"))
    assert configs, "ops/configs holds at least one config"
    for path in configs:
        load_config(path)


def test_default_model_is_the_committed_base_and_empty_builds_one() -> None:
    from ops.config import BASE_MODEL

    assert load_config().model.path == str(BASE_MODEL)
    assert (BASE_MODEL / "config.json").is_file() and (BASE_MODEL / "pretrain.json").is_file()
    assert load_config(None, ["--model.path="]).model.path == ""
