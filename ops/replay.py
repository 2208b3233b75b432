"""`longtide replay`: a fresh learner trained on a recorded range of `scored`, generating nothing.

    longtide replay --run RUN [--from 0:120,1:98] [--to 0:400,1:390] [--order recorded|read]
                    [--config FILE] [--section.field=value ...]

What it is: the recorded run's rollouts (made by the recorded run's policies) replayed into a
new learner that starts from the recorded run's RL starting point (its step-0 checkpoint, right
after SFT). For that learner the data is off-policy: the samples came from the recorded
trajectory's policies, not its own, so the decoupled-PPO weight and the staleness rule apply as
they did live, with the replay's own versions. With the same config it reproduces the recorded
learner exactly (`--order recorded` follows the recorded ledger's group order); with another
advantage, objective, learning rate or staleness bound it answers "what would the learner have
done with this data", the cheap half of an ablation (no generation, same samples). It cannot
answer what a different policy would have generated: that needs a live run.

Writes `<run_dir>/replays/<replay_id>/replay.json` (the held-out curve and the counts), plus the
replay's own checkpoints and ledger.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.learner import ledger
from actors.learner.checkpoint import RL_START
from actors.learner.replay import ReplayRange
from actors.settings import Transport
from ops.config import LongtideConfig
from ops.runs import Run, find_run, new_run_id
from ops.slots import build_learner
from streams.kafka import StreamsConfig
from streams.logs import exact_end_offsets
from streams.topics import SCORED

REPLAYS = "replays"
ORDERS = ("recorded", "read")


def parse_offsets(text: str) -> dict[int, int]:
    """'0:120,1:98' → {0: 120, 1: 98}."""
    out: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        partition, sep, offset = item.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"offsets {text!r}: expected partition:offset[,partition:offset...], e.g. 0:120,1:98")
        out[int(partition)] = int(offset)
    return out


def replay(
    config: LongtideConfig,
    run_ref: str,
    *,
    streams: StreamsConfig,
    start: dict[int, int] | None = None,
    end: dict[int, int] | None = None,
    order: str = "recorded",
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a fresh learner on run `run_ref`'s `scored` records in [start, end) and return
    (and write) its held-out curve. `end` defaults to the topic's end now."""
    if order not in ORDERS:
        raise ValueError(f"--order {order!r}: expected one of {ORDERS}")
    run_dir = Path(config.run_dir).resolve()
    source = find_run(run_dir, run_ref)
    model = source.directory / "checkpoints" / RL_START / "model"
    if not (model / "config.json").is_file():
        raise ValueError(f"run {source.run_id} has no RL starting point ({model}); it never finished SFT")
    schedule = None
    if order == "recorded":
        schedule = tuple(ledger.trained_groups(source.directory))
        if not schedule:
            raise ValueError(f"run {source.run_id} has no ledger of trained groups; use --order read")
    now = exact_end_offsets(streams, SCORED.name)
    ends = {p: min(o, now.get(p, 0)) for p, o in end.items()} if end is not None else now  # never wait
    start = {p: (start or {}).get(p, 0) for p in ends}
    bounds = ReplayRange(
        start={(SCORED.name, p): o for p, o in start.items()},
        end={(SCORED.name, p): o for p, o in ends.items()},
        schedule=schedule,
    )
    replay_id = new_run_id()
    target = Run(replay_id, run_dir / REPLAYS / replay_id, time.time())
    target.save()
    learner_cfg = dataclasses.replace(
        config.learner, sft_steps=0, rl_steps=0, ranks=1, weights_transport=Transport.FILE
    )
    cfg = dataclasses.replace(config, streams=streams, learner=learner_cfg)
    echo(f"[replay {replay_id}] run {source.run_id}, scored {start} → {ends}, order {order}")
    learner = build_learner(
        cfg, str(model), target, f"longtide-replay-{replay_id}", replay=bounds, source_run_id=source.run_id
    )
    began = time.monotonic()
    try:
        learner.run(threading.Event())
    finally:
        learner.close()
    result = {
        "replay_id": replay_id,
        "source_run": source.run_id,
        "from": start,
        "to": ends,
        "order": order,
        "rl_steps": learner.rl_step,
        "samples_trained": learner.samples_trained,
        "stale_dropped": learner.intake.stale_dropped,
        "schedule": {
            "trained_or_passed": learner.picker.scheduled,
            "length": len(schedule),
            "unscheduled": learner.picker.unscheduled,
        }
        if schedule is not None
        else None,
        "wall_seconds": round(time.monotonic() - began, 1),
        "config": dataclasses.asdict(config.learner),
        "history": learner.history,
    }
    (target.directory / "replay.json").write_text(json.dumps(result, indent=1, default=str))
    for point in learner.history:
        scores = " ".join(f"{k}={v:.3f}" for k, v in point.items() if k not in ("label", "version", "rl_step"))
        echo(f"[replay {replay_id}] {point['label']:>12}: {scores}")
    echo(f"[replay {replay_id}] {learner.rl_step} steps, {learner.samples_trained} samples; {target.directory}")
    if schedule is not None and learner.picker.scheduled < len(schedule):
        echo(
            f"[replay {replay_id}] warning: the range held {learner.picker.scheduled} of the {len(schedule)} groups the "
            "recorded learner trained; the rest lie outside --from/--to"
        )
    return result
