"""The CLI shows itself: `--help` lists every config field as a flag with its docstring, and a
flag that names no field is refused naming the nearest one."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from ops.cli import demo_config
from ops.cli import main as cli_main
from ops.config import ConfigError, LongtideConfig, load_config


def fields(cls: type, path: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        kind = typing.get_type_hints(cls)[f.name]
        out += fields(kind, f"{path}{f.name}.") if dataclasses.is_dataclass(kind) else [f"{path}{f.name}"]
    return out


def test_demo_help_lists_every_field_with_its_docstring(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # one column: a field's flag and its docstring stay together
    with pytest.raises(SystemExit) as done:
        cli_main(["demo", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    missing = [name for name in fields(LongtideConfig) if f"--{name} " not in text and f"--{name}\n" not in text]
    assert not missing, missing
    assert "--learner.objective {dapo,grpo}" in text and "token-level mean over the update" in text
    assert len(fields(LongtideConfig)) > 150


def test_a_flag_that_names_no_field_is_refused_naming_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"learner\.lrr: no such field \(did you mean learner\.lr\?"):
        load_config(None, ["--learner.lrr=1"])
    assert cli_main(["demo", "--learner.lrr=1"]) == 2


def test_the_demo_runs_the_default_scenario_unless_told_otherwise() -> None:
    """`longtide demo` loads ops/configs/demo.yaml (memory_kv beside the world's types, from the
    memory-agent checkpoint); `--scenario world` loads nothing (the service's defaults)."""
    default = load_config(demo_config("", None))
    assert default.synthesis.task_types == ("kv_retrieval", "two_hop", "memory_kv")
    assert default.model.path.endswith("ops/models/tiny-memory")
    assert demo_config("world", None) is None
    assert demo_config("", "mine.yaml") == "mine.yaml"
    with pytest.raises(ConfigError, match="--scenario and --config both name a config"):
        demo_config("memory", "mine.yaml")
