"""An ablation made with `longtide replay`: one recorded demo run, its `scored` range replayed
into fresh learners with different learner settings. No generation: every variant trains on the
same samples, so the differences are the learner's alone.

    .venv/bin/python bench/replay_ablation.py                      # 100 RL steps recorded
    .venv/bin/python bench/replay_ablation.py --rl-steps 60 --out /tmp/ablation

Prints one row per variant (held-out accuracy at the end, samples trained, stale drops, wall
time) and the baseline's ratio; the first variant, the recorded config itself, must end on the
recorded learner's weights (max |Δw| printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from actors.learner.checkpoint import latest
from actors.learner.config import AdvantageNorm
from actors.modeling import load_policy
from ops.config import LongtideConfig, load_config
from ops.feed import send_json, world_documents
from ops.launcher import Service
from ops.replay import replay
from ops.slots import LEARNER_NAME
from streams.broker import EmbeddedBroker
from streams.kafka import StreamsConfig


def _learner(config: LongtideConfig, **fields: object) -> LongtideConfig:
    return dataclasses.replace(config, learner=dataclasses.replace(config.learner, **fields))


def _weights(run_directory: Path) -> dict[str, torch.Tensor]:
    directory, _ = latest(run_directory / "checkpoints")
    return load_policy(str(directory / "model"))[0].state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rl-steps", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--out", default=".longtide/ablation")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=out / "broker.log") as broker:
        config = load_config(
            None,
            [
                f"--run_dir={out}",
                f"--streams.bootstrap_servers={broker.bootstrap_servers}",
                f"--learner.rl_steps={args.rl_steps}",
                f"--learner.eval_every={args.eval_every}",
            ],
        )
        start = time.monotonic()
        with Service(config) as service:
            feed = config.feed
            send_json(
                service.config.streams,
                world_documents(worlds=feed.worlds, entities_per_world=feed.entities_per_world, seed=feed.seed),
            )
            while not service.snapshots()[LEARNER_NAME]["done"]:
                service.check()
                time.sleep(5)
            recorded = service.snapshots()[LEARNER_NAME]
            source = service.run
        assert source is not None
        print(f"recorded run {source.run_id}: {recorded['rl_step']} steps in {time.monotonic() - start:.0f} s")
        streams = StreamsConfig(bootstrap_servers=broker.bootstrap_servers)
        variants = {
            "recorded config (GRPO, group std, η=1)": config,
            "task-batch std advantages": _learner(config, advantage_norm=AdvantageNorm.TASK_BATCH),
            "behaviour weight cap 1 (vs 5)": _learner(config, behaviour_weight_cap=1.0),
            "lr × 3 (9e-4)": _learner(config, lr=9e-4),
        }
        rows = []
        for label, variant in variants.items():
            result = replay(variant, source.run_id, streams=streams, echo=lambda _: None)
            final = result["history"][-1]
            rows.append({"variant": label, **{k: result[k] for k in ("rl_steps", "samples_trained", "stale_dropped")}})
            rows[-1] |= {"heldout": final["all"], "wall_s": result["wall_seconds"], "replay_id": result["replay_id"]}
        same = _weights(out / "replays" / rows[0]["replay_id"])
        original = _weights(source.directory)
        drift = max(float((original[k] - same[k]).abs().max()) for k in original)
    after_sft = next(h["all"] for h in recorded["history"] if h["label"] == "after sft")
    print(f"\nheld-out accuracy after SFT (every variant starts here): {after_sft:.3f}")
    print(f"recorded learner at the end: {recorded['history'][-1]['all']:.3f}; replay of it: max |Δw| = {drift:.3g}\n")
    print(f"{'variant':42} {'steps':>5} {'samples':>7} {'stale':>5} {'held-out':>8} {'vs base':>7} {'wall s':>6}")
    base = rows[0]["heldout"]
    for row in rows:
        ratio = row["heldout"] / base if base else float("nan")
        print(
            f"{row['variant']:42} {row['rl_steps']:>5} {row['samples_trained']:>7} {row['stale_dropped']:>5} "
            f"{row['heldout']:>8.3f} {ratio:>7.2f} {row['wall_s']:>6.0f}"
        )
    (out / "ablation.json").write_text(json.dumps({"source_run": source.run_id, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
