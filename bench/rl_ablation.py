"""The stabilized-RL ablation (issue 10): the `world` demo's task mix (kv_retrieval and two_hop
from the committed base, 500 RL steps; `longtide demo --scenario world`) under each objective
variant, over several seeds, held-out accuracy per task type as mean ± std, and samples/s.

Each run is a whole `longtide demo` (the real broker, Ray, vLLM rollouts, the torch learner)
with `--feed.seed=100·S --synthesis.seed=S` and the variant's overrides, in its own run
directory; its `summary.json` gives the numbers. On 2 cores one run takes about 6 minutes.

    .venv/bin/python bench/rl_ablation.py [--seeds 3] [--only NAME ...] [--rl-steps 500] [--out bench/ablation]

Variants (every other setting at its default):
- `grpo`: plain GRPO (sequence-level loss, group-std advantages, batches in arrival order);
- `dapo`: the default token-level loss;
- `balanced+task_std`: + task-balanced batches + task-batch std advantages;
- `+aepo`: + AEPO's batch-entropy hysteresis (the measured defaults);
- `decoupled eta=4`, `naive eta=4`, `eta=0`: the staleness ablation (two updates per batch, so
  that the correction and the clip have something to act on).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STALE = ["--learner.minibatches=2", "--learner.weights_keep=6"]
VARIANTS: dict[str, list[str]] = {
    "grpo": ["--learner.objective=grpo"],
    "dapo": [],
    "balanced+task_std": ["--learner.sampler.task_balanced=true", "--learner.advantage_norm=task_batch"],
    "+aepo": [
        "--learner.sampler.task_balanced=true",
        "--learner.advantage_norm=task_batch",
        "--learner.aepo.mode=batch",
    ],
    "decoupled eta=4": [*STALE, "--learner.max_staleness=4", "--learner.correction=decoupled"],
    "naive eta=4": [*STALE, "--learner.max_staleness=4", "--learner.correction=naive"],
    "eta=0": [*STALE, "--learner.max_staleness=0"],
}


def run_demo(run_dir: Path, *, scenario: str, seed: int, rl_steps: int, overrides: list[str]) -> dict:
    """One whole `longtide demo` in `run_dir`, its `summary.json`; a finished run is kept, so a
    stopped bench resumes."""
    summary = run_dir / "summary.json"
    if summary.exists() and json.loads(summary.read_text())["rl_steps"] != rl_steps:
        summary.unlink()  # a run the demo's timeout cut short is not a result
    if not summary.exists():
        shutil.rmtree(run_dir, ignore_errors=True)  # what a stopped run left
        command = [
            str(ROOT / ".venv" / "bin" / "longtide"),
            "demo",
            f"--scenario={scenario}",
            f"--run_dir={run_dir}",
            f"--feed.seed={100 * seed}",
            f"--synthesis.seed={seed}",
            f"--learner.rl_steps={rl_steps}",
            "--timeout=7200",  # the demo's own 14 minutes could cut a slow variant short
            *overrides,
        ]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    done = json.loads(summary.read_text())
    if done["rl_steps"] != rl_steps:
        raise SystemExit(f"{run_dir}: the demo stopped after {done['rl_steps']} of {rl_steps} RL steps")
    return done


def run(name: str, seed: int, rl_steps: int, out: Path) -> dict:
    run_dir = out / name.replace(" ", "_").replace("=", "") / f"seed{seed}"
    return run_demo(run_dir, scenario="world", seed=seed, rl_steps=rl_steps, overrides=VARIANTS[name])


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--rl-steps", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "ablation")
    args = parser.parse_args()
    done = {(name, seed): run(name, seed, args.rl_steps, args.out) for seed in range(args.seeds) for name in args.only}
    rows = []  # every variant's seed 0 first, then seed 1, ...: a stopped ablation stays balanced
    for name in args.only:
        summaries = [done[(name, seed)] for seed in range(args.seeds)]
        types = sorted(summaries[0]["heldout_after_rl"])
        accuracy = {t: spread([s["heldout_after_rl"][t] for s in summaries]) for t in types}
        speed = spread([s["samples_per_second"] for s in summaries])
        stale = sum(s["stale_dropped"] for s in summaries)
        rows.append((name, accuracy, speed, stale))
    types = sorted(rows[0][1])
    print(f"| variant | {' | '.join(types)} | samples/s | stale dropped (all seeds) |")
    print("|" + " --- |" * (len(types) + 3))
    for name, accuracy, speed, stale in rows:
        print(f"| {name} | {' | '.join(accuracy[t] for t in types)} | {speed} | {stale} |")
    print(f"held-out accuracy after RL, mean ± std over {args.seeds} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
