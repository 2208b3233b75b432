"""The root configuration: one frozen dataclass per component, composed here.

Loaded from YAML (`--config FILE`) with `--section.field=value` overrides; both map onto the
dataclasses (dacite, strict: an unknown key is an error naming it). Each default is defined
once, on its component's dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib.util
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dacite
import yaml

from actors.ingest.config import IngestConfig
from actors.learner.config import Backend, HeadKernel, LearnerConfig
from actors.memory.config import MemoryConfig
from actors.memory_agent import MemoryAgentConfig
from actors.prompts import PromptFormat
from actors.reward.config import RewardConfig
from actors.rollout.config import RolloutConfig
from actors.settings import TinyModelConfig, check_dtype
from actors.synthesis.config import SynthesisConfig
from ops.supervisor import SupervisionConfig
from streams.kafka import StreamsConfig

BASE_MODEL = Path(__file__).resolve().parent / "models" / "tiny-base"
"""The committed tiny base model: pre-trained past the retrieval plateau by `make base-model`."""


@dataclass(frozen=True)
class ModelConfig:
    """Which policy to train."""

    path: str = str(BASE_MODEL)
    """A local directory or hub id. The default is the committed tiny base (`BASE_MODEL`);
    empty builds an untrained tiny model shaped by `tiny` in the run directory."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the tiny model built when `path` is empty."""
    dtype: str = "float32"
    """The policy's inference dtype: rollout engines run it and weights travel in it
    ('float32', 'bfloat16', 'float16'); the learner keeps fp32 master weights."""
    prompt_format: PromptFormat = PromptFormat.AUTO
    """How questions reach the policy (`actors/prompts.py`): raw text (the tiny model), the
    tokenizer's chat template (an instruct model), or auto (chat when it has a template)."""

    def max_positions(self) -> tuple[int | None, str]:
        """The policy's position limit and where it comes from (None for a hub id, unknown here)."""
        if not self.path:
            return self.tiny.max_positions, "model.tiny.max_positions"
        found = Path(self.path) / "config.json"
        if not found.exists():
            return None, ""
        return json.loads(found.read_text()).get("max_position_embeddings"), f"{found}: max_position_embeddings"

    def __post_init__(self) -> None:
        try:
            check_dtype(self.dtype)
        except ValueError as exc:
            raise ValueError(f"model.{exc}") from None


@dataclass(frozen=True)
class RayConfig:
    """Where actors run."""

    address: str = ""
    """Ray cluster address ('auto', 'ray://host:10001'); empty starts a local Ray."""
    num_cpus: int = 0
    """CPUs of a local Ray; 0 lets Ray count them."""
    num_gpus: int = -1
    """GPUs of a local Ray; -1 lets Ray count them."""
    namespace: str = "longtide"
    """Ray namespace of the named actors."""
    node_ip_address: str = ""
    """The address this node's Ray listens on. Empty: a local Ray (no `address`) binds every
    listener (GCS, raylet, workers, agents) to loopback, reachable from this machine only; set it
    to this node's address for other nodes to join it (`ray start --address=HOST:PORT`)."""


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus export."""

    enabled: bool = True
    """Serve /metrics from every actor process and the launcher."""
    host: str = "127.0.0.1"
    """Address the endpoints bind to (0.0.0.0 inside containers)."""


@dataclass(frozen=True)
class FeedConfig:
    """The demo's document feed: synthetic-world documents sent to `docs.raw` as JSON."""

    worlds: int = 400
    """Worlds (collections) to send; each world is one collection of documents."""
    entities_per_world: int = 8
    """Entities, hence documents, per world."""
    seed: int = 0
    """Seed of the first world."""
    malformed: bool = True
    """Also send one malformed record of each kind, to show dead-lettering."""
    corpus: str = ""
    """A folder (or file) of the user's own documents sent too, as collection 'corpus'; 'sample'
    means the shipped corpus (`ops/corpus`). Empty: worlds only."""


@dataclass(frozen=True)
class LongtideConfig:
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    memory_agent: MemoryAgentConfig = field(default_factory=MemoryAgentConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    run_dir: str = ".longtide/run"
    """Where the run keeps its model, blobs, weights, logs and state file."""

    def __post_init__(self) -> None:
        if self.learner.backend is Backend.DEEPSPEED and importlib.util.find_spec("deepspeed") is None:
            raise ValueError(
                "learner.backend=deepspeed but deepspeed is not installed: "
                "pip install 'longtide[cpu]' or 'longtide[gpu]', or set learner.backend=torch"
            )
        self.rollout.engine.resolve()  # vllm named but not installed: fails here, naming the fix
        if self.learner.head_kernel is HeadKernel.LIGER:
            if importlib.util.find_spec("liger_kernel") is None:
                raise ValueError(
                    "learner.head_kernel=liger but liger-kernel is not installed: "
                    "pip install 'longtide[gpu]', or set learner.head_kernel=chunked"
                )
            if self.rollout.top_p < 1:
                raise ValueError(
                    f"learner.head_kernel=liger has no top-p nucleus, but rollout.top_p is {self.rollout.top_p}: "
                    "set rollout.top_p=1 or learner.head_kernel=chunked"
                )
        positions, where = self.model.max_positions()
        agent = self.memory_agent
        turn = agent.chunk_tokens + 2 * agent.memory_tokens + 32  # memory in, chunk, template and question, memory out
        if positions is not None and turn > positions:
            raise ValueError(
                f"memory_agent.chunk_tokens ({agent.chunk_tokens}) + 2 × memory_tokens ({agent.memory_tokens}) + 32 "
                f"must fit {where} ({positions}): a reading turn shows a memory and a chunk and writes a memory"
            )
        if self.learner.heldout_documents and self.synthesis.heldout_fraction == 0:
            raise ValueError(
                f"learner.heldout_documents ({self.learner.heldout_documents!r}) is set but synthesis.heldout_fraction "
                "is 0, so every document trains and none is held out: set synthesis.heldout_fraction, e.g. 0.2"
            )
        longest = max(self.learner.heldout_store_lengths)
        if positions is not None and self.heldout_source() and longest + self.rollout.max_new_tokens + 64 > positions:
            raise ValueError(
                f"learner.heldout_store_lengths ({longest}) + rollout.max_new_tokens + 64 must fit {where} ({positions})"
            )
        if positions is not None and self.synthesis.context_tokens + 16 > positions:
            raise ValueError(
                f"synthesis.context_tokens ({self.synthesis.context_tokens}) + 16 must fit {where} ({positions})"
            )

    def heldout_source(self) -> str:
        """Where held-out store tasks come from: `learner.heldout_documents`, else `feed.corpus`
        when documents are held out of training; '' for none."""
        if self.learner.heldout_documents:
            return self.learner.heldout_documents
        return self.feed.corpus if self.synthesis.heldout_fraction > 0 else ""


class ConfigError(ValueError):
    """Misconfiguration, found before anything starts; the message names the field."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """['--learner.lr=1e-3', 'feed.worlds=10', '--learner.rl_steps', '5'] ->
    {'learner': {'lr': 0.001, 'rl_steps': 5}, 'feed': {...}}: a value after `=` or as the next
    argument, read as YAML."""
    tree: dict[str, Any] = {}
    joined: list[str] = []
    for arg in args:  # '--a.b VALUE' -> '--a.b=VALUE'
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and not arg.startswith("--"):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    for arg in joined:
        key, sep, raw = arg.removeprefix("--").partition("=")
        if not sep:
            raise ValueError(f"override {arg!r} must look like --section.field=value")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw) if raw else ""  # '--model.path=' means the empty string
    return tree


def _to_float(value: Any) -> float:
    return float(value)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> LongtideConfig:
    try:
        return _load(path, overrides)
    except (ValueError, yaml.YAMLError, OSError) as exc:
        raise ConfigError(f"configuration: {exc}") from exc


def _load(path: str | Path | None, overrides: list[str] | None) -> LongtideConfig:
    data: dict[str, Any] = {}
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        model = data.get("model")
        if isinstance(model, dict) and isinstance(model.get("path"), str) and model["path"]:
            beside = Path(path).parent / model["path"]  # a relative path in a file is the file's
            if not Path(model["path"]).is_absolute() and beside.exists():
                data["model"] = {**model, "path": str(beside.resolve())}
    data = _merge(data, parse_overrides(overrides or []))
    _check_choices(LongtideConfig, data, "")
    try:
        return dacite.from_dict(
            LongtideConfig,
            data,
            config=dacite.Config(strict=True, cast=[enum.Enum, tuple], type_hooks={float: _to_float}),
        )
    except dacite.DaciteError as exc:
        raise ConfigError(str(exc)) from exc


def _check_choices(cls: type, data: Any, path: str) -> None:
    """Every key must be a field, and an enum field's value one of its choices: the error names
    the field (with the nearest real one) and the choices (dacite's names neither)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(data, dict)):
        return
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {path}{near[0]}? " if near else ""
            raise ValueError(f"{path}{key}: no such field ({hint}`longtide demo --help` lists every field)")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kind, value, where = hints[f.name], data[f.name], f"{path}{f.name}"
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            choices = [str(c.value) for c in kind]
            if str(value) not in choices:
                raise ValueError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        _check_choices(kind, value, f"{where}.")


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data (enums as their values), e.g. to write next to a run."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
