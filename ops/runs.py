"""Runs: one training run's identity and directory, so a service can start fresh or resume.

`<run_dir>/runs/<run_id>/` holds what belongs to one run: `run.json`, its `secret`, the
learner's checkpoints and published weight files. What outlives runs stays in `<run_dir>` (the built
model, blobs, broker log, the running service's state file).

A fresh run records the end offsets of `rollouts` when it starts (`rollouts_base`): the
staleness gate counts only the groups produced since, so a broker that still holds an older
run's topics needs no cleanup. Records carry `run_id`; actors ignore (and count) other runs'.
`longtide run --resume` continues the newest run in the run directory that has a checkpoint
(`runs_newest_first` lists them; the launcher checks each one's checkpoints and log).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from actors.learner import checkpoint
from ops.config import ConfigError
from streams.kafka import LogLost, StreamsConfig
from streams.logs import check_log_intact
from streams.topics import ROLLOUTS

RUNS = "runs"
RUN_FILE = "run.json"
SECRET_FILE = "secret"


@dataclass(frozen=True)
class Run:
    run_id: str
    directory: Path
    started_at: float
    rollouts_base: dict[int, int] = field(default_factory=dict)
    """End offset of each `rollouts` partition when the run started."""

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        raw = {**asdict(self), "directory": str(self.directory)}
        tmp = self.directory / f"{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(raw, indent=1))
        tmp.replace(self.directory / RUN_FILE)

    def secret(self) -> str:
        """The run's secret (`secret`, readable by its owner only), made on first use: what a
        process must show to be sent the run's weights on the collective path."""
        path = self.directory / SECRET_FILE
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        return path.read_text().strip()

    @staticmethod
    def load(directory: Path) -> Run:
        raw = json.loads((directory / RUN_FILE).read_text())
        base = {int(p): o for p, o in raw.get("rollouts_base", {}).items()}
        return Run(raw["run_id"], directory, raw["started_at"], base)


def new_run_id(now: float | None = None) -> str:
    """Sortable by start time, unique across hosts: 20261123-221500-a1b2c3."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def new_run(run_dir: Path, rollouts_base: dict[int, int]) -> Run:
    run_id = new_run_id()
    run = Run(run_id, run_dir / RUNS / run_id, time.time(), dict(rollouts_base))
    run.save()
    return run


def runs_newest_first(run_dir: Path) -> list[Run]:
    """Every run in `run_dir`, the most recently started first."""
    root = run_dir / RUNS
    runs = [Run.load(d) for d in root.iterdir() if (d / RUN_FILE).is_file()] if root.is_dir() else []
    return sorted(runs, key=lambda r: (r.started_at, r.run_id), reverse=True)


def newest_run(run_dir: Path) -> Run | None:
    """The most recently started run in `run_dir` (None when there is none)."""
    return next(iter(runs_newest_first(run_dir)), None)


def find_run(run_dir: Path, ref: str) -> Run:
    """A run by id, by directory, or 'newest' (ValueError naming what exists otherwise)."""
    if ref == "newest":
        run = newest_run(run_dir)
        if run is None:
            raise ValueError(f"no run in {run_dir / RUNS}")
        return run
    for directory in (run_dir / RUNS / ref, Path(ref)):
        if (directory / RUN_FILE).is_file():
            return Run.load(directory)
    known = sorted(d.name for d in (run_dir / RUNS).iterdir()) if (run_dir / RUNS).is_dir() else []
    raise ValueError(f"run {ref!r} not found in {run_dir / RUNS} (runs there: {known or 'none'})")


def resumable_run(run_dir: Path, streams: StreamsConfig) -> tuple[Run | None, list[str]]:
    """The newest run with a usable checkpoint, and 'run-id: why' for each newer one passed
    over. A run whose log is gone (what its learner trained through is no longer on the
    broker) is refused with a `ConfigError`, not passed over: resuming an older run instead
    would go back in time."""
    skipped: list[str] = []
    for run in runs_newest_first(run_dir):
        found = checkpoint.latest(run.directory / "checkpoints")
        if found is None:
            skipped.append(f"{run.run_id}: no checkpoint in {run.directory / 'checkpoints'}")
            continue
        known = {(ROLLOUTS.name, p): o for p, o in run.rollouts_base.items()} | found[1].partition_offsets()
        try:  # what the learner trained through must still be in the log
            check_log_intact(streams, known, what=f"run {run.run_id}'s")
        except LogLost as exc:
            raise ConfigError(f"--resume: run {run.run_id} cannot be resumed: {exc}") from None
        return run, skipped
    return None, skipped
