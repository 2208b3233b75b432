"""The learner's ledger: which scored rollouts each checkpointed stretch of training used.

`<run>/ledger.jsonl` gets one line per checkpoint, written (and fsynced) just before the
checkpoint is committed:

    {"at": [rl_step, groups_consumed], "since": [rl_step, groups_consumed] | null,
     "trained": [rollout_id, ...], "stale": [rollout_id, ...],
     "groups": [group_id, ...], "stale_groups": [group_id, ...],     # in training order
     "uninformative": [rollout_id, ...]}     # dropped by dynamic sampling (equal rewards)

`since` is the checkpoint this stretch started from. A crash between a line and its checkpoint,
or after several lines whose checkpoints a restart rolls back past, leaves lines of a lost
trajectory in the file; `surviving` follows the `since` chain back from the newest usable
checkpoint, so only the stretches that the current weights actually contain are counted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from actors.learner import checkpoint

LEDGER = "ledger.jsonl"

Key = tuple[int, int]
"""(rl_step, groups_consumed): what identifies a checkpoint."""


def append(
    path: Path,
    *,
    at: Key,
    since: Key | None,
    trained: list[str],
    stale: list[str],
    groups: list[str] | None = None,
    stale_groups: list[str] | None = None,
    uninformative: list[str] | None = None,
) -> None:
    """Add one stretch's line and make it durable (`groups`: the trained group ids in order)."""
    line = json.dumps(
        {
            "at": list(at),
            "since": list(since) if since else None,
            "trained": trained,
            "stale": stale,
            "groups": groups or [],
            "stale_groups": stale_groups or [],
            "uninformative": uninformative or [],
        }
    )
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def surviving(path: Path, newest: Key | None) -> list[dict[str, Any]]:
    """The lines on the chain ending at checkpoint `newest`, oldest first ([] for None).

    A torn last line (a crash mid-write) is ignored: its checkpoint was never committed.
    """
    if newest is None or not path.is_file():
        return []
    last: dict[Key, dict[str, Any]] = {}
    for raw in path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        last[tuple(line["at"])] = line  # a re-written stretch replaces the lost one
    chain: list[dict[str, Any]] = []
    key: Key | None = newest
    while key is not None and key in last:
        line = last.pop(key)  # pop: a malformed cycle cannot loop forever
        chain.append(line)
        key = tuple(line["since"]) if line["since"] else None
    return chain[::-1]


def chain(run_directory: Path) -> list[dict[str, Any]]:
    """The ledger lines of the run's newest usable checkpoint, oldest first."""
    found = checkpoint.latest(run_directory / "checkpoints")
    newest = (found[1].rl_step, found[1].groups_consumed) if found else None
    return surviving(run_directory / LEDGER, newest)


def outcomes(run_directory: Path) -> list[tuple[str, str]]:
    """(rollout_id, 'trained' | 'stale') for every rollout the run's newest usable checkpoint
    contains, in training order; an id listed twice was trained twice."""
    return [(i, o) for line in chain(run_directory) for o in ("stale", "trained") for i in line[o]]


def trained_groups(run_directory: Path) -> list[str]:
    """The group ids the run's newest usable checkpoint was trained on, in order (a replay's
    schedule)."""
    return [g for line in chain(run_directory) for g in line.get("groups", [])]
