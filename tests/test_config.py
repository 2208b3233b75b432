from __future__ import annotations

from pathlib import Path

import pytest

from actors.learner.config import AdvantageNorm
from actors.tasks import TaskType
from ops.config import ConfigError, load_config, parse_overrides


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


def test_the_gpu_config_fits_one_8_gpu_node_and_not_4() -> None:
    from ops.plan import Cluster, problems

    config = load_config(Path("ops/configs/qwenlong-l15.yaml"))
    assert problems(config, Cluster(nodes=1, cpus=64, gpus=8)) == []
    found = problems(config, Cluster(nodes=1, cpus=64, gpus=4))
    assert len(found) == 1 and "no room for rollout-" in found[0]


def test_plan_names_contradictions() -> None:
    from ops.plan import Cluster, problems

    gpu = Cluster(nodes=1, cpus=16, gpus=2)
    config = load_config(None, ["--learner.device=cuda"])
    assert any("learner.resources.num_gpus=1" in p for p in problems(config, gpu))
    config = load_config(None, ["--rollout.vllm.max_model_len=16", "--synthesis.context_tokens=32"])
    assert any("max_model_len (16)" in p for p in problems(config, Cluster(1, 2, 0)))
    assert problems(load_config(), Cluster(nodes=1, cpus=2, gpus=0)) == [], "the demo fits this machine"


def test_backend_and_rank_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"learner.ranks \(2\) needs learner.backend=deepspeed"):
        load_config(None, ["--learner.ranks=2"])
    with pytest.raises(ValueError, match=r"learner.zero_stage \(4\) must be 0, 1, 2 or 3"):
        load_config(None, ["--learner.backend=deepspeed", "--learner.zero_stage=4"])
    with pytest.raises(ValueError, match="model.dtype 'fp8' must be one of float32, bfloat16, float16"):
        load_config(None, ["--model.dtype=fp8"])


def test_liger_head_kernel_is_checked_at_start_up() -> None:
    with pytest.raises(ValueError, match="head_kernel=liger runs on CUDA only"):
        load_config(None, ["--learner.head_kernel=liger", "--learner.device=cpu"])
    with pytest.raises(ValueError, match="ZeRO-3 partitions"):
        load_config(None, ["--learner.head_kernel=liger", "--learner.backend=deepspeed", "--learner.zero_stage=3"])
    with pytest.raises(ValueError, match="liger-kernel is not installed|has no top-p nucleus"):
        load_config(None, ["--learner.head_kernel=liger", "--rollout.top_p=0.9"])


def test_memory_settings_fail_at_start_up_naming_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"memory_agent.chunk_tokens \(600\) \+ 2 × memory_tokens \(16\) \+ 32 must fit"
    ):
        load_config(None, ["--model.path=", "--memory_agent.chunk_tokens=600"])
    # the committed base's own limit (its config.json: 512 positions) applies too
    with pytest.raises(ConfigError, match=r"tiny-base/config.json: max_position_embeddings \(512\)"):
        load_config(None, ["--memory_agent.chunk_tokens=480"])
    with pytest.raises(ConfigError, match="learner.batch_by_rollout_kind needs learner.max_staleness >= 1"):
        load_config(None, ["--learner.batch_by_rollout_kind=true", "--learner.max_staleness=0"])
    with pytest.raises(ConfigError, match="learner.heldout_memory_windows"):
        load_config(None, ["--learner.heldout_memory_windows=[0]"])
    with pytest.raises(ConfigError, match="memory.http_port"):
        load_config(None, ["--memory.http_port=70000"])
    with pytest.raises(ConfigError, match="memory_agent.update_template"):
        load_config(None, ["--memory_agent.update_template='{memory} {question}'"])


def test_rl_objective_misconfigurations_fail_at_start_up() -> None:
    with pytest.raises(ValueError, match=r"learner.objective: 'ppo' is not one of dapo, grpo"):
        load_config(None, ["--learner.objective=ppo"])
    with pytest.raises(ValueError, match=r"learner.aepo.mode: 'both' is not one of off, batch, token, sequence"):
        load_config(None, ["--learner.aepo.mode=both"])
    with pytest.raises(
        ValueError, match=r"learner.minibatches \(3\) must divide learner.groups_per_step \(16\).*minibatches=2"
    ):
        load_config(None, ["--learner.minibatches=3"])
    with pytest.raises(
        ValueError, match=r"learner.aepo.h_low \(0.2\) must be >= 0 and below learner.aepo.h_high \(0.2\)"
    ):
        load_config(None, ["--learner.aepo.h_low=0.2", "--learner.aepo.h_high=0.2"])
    with pytest.raises(ValueError, match=r"sampler.buffer_groups \(64\) must lie between .* set it to 32"):
        load_config(
            None,
            [
                "--learner.sampler.task_balanced=true",
                "--learner.sampler.when_dry=wait",
                "--learner.sampler.buffer_groups=64",
            ],
        )
    with pytest.raises(ValueError, match=r"kl_coef > 0 .* ZeRO-3"):
        load_config(None, ["--learner.kl_coef=0.01", "--learner.backend=deepspeed", "--learner.zero_stage=3"])
    config = load_config(None, ["--learner.ppo_epochs=2", "--learner.minibatches=4", "--learner.aepo.mode=batch"])
    assert config.learner.step_settings().objective.clip_high == 0.28
