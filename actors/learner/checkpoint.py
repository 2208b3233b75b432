"""Learner checkpoints: everything a restarted learner needs to continue as if never stopped.

A checkpoint is a directory `<run_dir>/runs/<run_id>/checkpoints/step-<rl_step:08d>` (step 0:
right after SFT, so a restart never repeats it):
- `model/`: the policy in Hugging Face format (loadable by transformers and vLLM as is), with
  its tokenizer;
- `trainer/`: the backend's optimizer state (torch: `optimizer.pt`; DeepSpeed: its own
  per-rank checkpoint, written by every rank) and the RNG states;
- `learner.json`: policy version, step, `groups_consumed`, counters, the staleness
  histogram, the `scored` offsets trained through and the rollout ids seen before them;
- `MANIFEST.json`, written last: every other file with its size.

It is written into `<name>.tmp` and renamed into place, so a crash mid-write leaves a `.tmp`
directory, never a checkpoint that looks complete. On start the newest checkpoint whose files
match its manifest is used; partial (`.tmp`, no manifest) and torn (a file missing or of the
wrong size) ones are skipped with a log line naming what is wrong. The last `keep` are kept,
and step 0 (where RL started, which `longtide replay` starts from) is never pruned.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
RL_START = "step-00000000"
"""The checkpoint right after SFT: never pruned, it is where a replay of the run starts."""
STATE = "learner.json"


@dataclass
class LearnerState:
    """The learner's counters and position, as saved in `learner.json`."""

    version: int
    rl_step: int
    groups_consumed: int
    samples_trained: int
    tokens_trained: int
    stale_dropped: int
    staleness_hist: dict[int, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    """'topic/partition' → next offset to read: every group before it was trained or dropped."""
    run_id: str = ""
    aepo_masking: bool = False
    """AEPO's batch mode: whether the next step masks negative-advantage samples."""
    aepo_switches: int = 0
    uninformative_dropped: int = 0
    """Trajectories dropped by dynamic sampling."""
    sampler_filled: int = 0
    """Batch slots the task-balanced sampler gave to another type."""
    seen_ids: list[str] = field(default_factory=list)
    """Rollout ids before `offsets` (the dedup window): a copy re-sent after them, e.g. by a
    reward actor that crashed before committing, is still recognised after a restart."""
    read_through: dict[str, int] = field(default_factory=dict)
    """'topic/partition' → after the last message read before this checkpoint: a group met
    again below it after a restart is the same message read again; at or above it, a copy."""

    def partition_offsets(self, offsets: dict[str, int] | None = None) -> dict[tuple[str, int], int]:
        """`offsets` (default: the restart position) keyed by (topic, partition)."""
        out = {}
        for key, offset in (self.offsets if offsets is None else offsets).items():
            topic, _, partition = key.rpartition("/")
            out[(topic, int(partition))] = offset
        return out

    @staticmethod
    def offsets_key(offsets: dict[tuple[str, int], int]) -> dict[str, int]:
        return {f"{t}/{p}": o for (t, p), o in sorted(offsets.items())}


def checkpoint_name(state: LearnerState) -> str:
    return f"step-{state.rl_step:08d}"


def write_manifest(directory: Path) -> None:
    files = {
        str(path.relative_to(directory)): path.stat().st_size
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """Every file and every directory entry under `directory`, and `directory` itself."""
    for path in [*directory.rglob("*"), directory]:
        _fsync(path)


def begin(root: Path, state: LearnerState) -> Path:
    """A fresh temporary directory for the checkpoint of `state` (fill it, then `commit`)."""
    tmp = root / f"{checkpoint_name(state)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, state: LearnerState, keep: int) -> Path:
    """Write the state and manifest, make it durable, rename it into place; prune to `keep`."""
    (tmp / STATE).write_text(json.dumps(asdict(state), indent=1))
    write_manifest(tmp)
    _fsync_tree(tmp)
    final = tmp.with_suffix("")
    shutil.rmtree(final, ignore_errors=True)  # a re-save of the same step (e.g. stop right after one)
    os.replace(tmp, final)
    _fsync(final.parent)  # the rename itself
    for old in [c for c in complete_checkpoints(final.parent) if c.name != RL_START][:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Renamed (not .tmp) checkpoint directories, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.suffix != ".tmp")


def problem(directory: Path) -> str | None:
    """Why `directory` is not a usable checkpoint, or None."""
    if directory.suffix == ".tmp":
        return "partial (never renamed into place)"
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return f"partial (no {MANIFEST})"
    try:
        files: dict[str, int] = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"torn ({MANIFEST} unreadable: {exc})"
    for name, size in files.items():
        path = directory / name
        if not path.is_file():
            return f"torn ({name} missing)"
        if path.stat().st_size != size:
            return f"torn ({name} is {path.stat().st_size} bytes, the manifest says {size})"
    if STATE not in files:
        return f"torn (no {STATE})"
    return None


def latest(root: Path) -> tuple[Path, LearnerState] | None:
    """The newest usable checkpoint under `root` and its state; unusable ones are logged."""
    if not root.is_dir():
        return None
    for leftover in sorted(root.glob("*.tmp")):
        log.warning("checkpoint %s skipped: %s", leftover, problem(leftover))
    for directory in reversed(complete_checkpoints(root)):
        reason = problem(directory)
        if reason is not None:
            log.warning("checkpoint %s skipped: %s", directory, reason)
            continue
        raw: dict[str, Any] = json.loads((directory / STATE).read_text())
        raw["staleness_hist"] = {int(k): v for k, v in raw.get("staleness_hist", {}).items()}
        return directory, LearnerState(**raw)
    return None
