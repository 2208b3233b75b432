"""Asynchrony's pay on the default demo: η = 1 (the default) ÷ η = 0 (synchronous), side by side.

    .venv/bin/python bench/async_ratio.py [--seeds 3] [--rl-steps 200] [--out bench/async]

Each run is the whole default demo (`longtide demo`: the real broker, Ray, vLLM rollouts, the
torch learner; SFT then `--rl-steps` GRPO steps) with `--feed.seed=100·S --synthesis.seed=S`,
once at `learner.max_staleness=1` and once at 0, seeds interleaved so that a drift in the
machine's speed hits both alike. Finished runs are kept in `--out`: a stopped bench resumes.
On 2 cores one run takes 6 to 9 minutes.

Samples/s is the RL phase's own, from the run's `metrics.jsonl`: samples trained from RL step 1
to the last, over the time between them (the summary's figure also counts the final
evaluation and the demo's last poll). Prints held-out accuracy after RL per task type (mean ±
std over the seeds) and samples/s per run, then the ratio last: mean samples/s at η = 1 ÷ at η = 0 (issue 24's target: ≥ 1.8, with
accuracy not worse beyond the seeds' spread).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rl_ablation import ROOT, run_demo, spread  # bench/rl_ablation.py, beside this script

ETAS = (1, 0)


def rl_rate(run_dir: Path) -> float:
    """Samples trained a second from RL step 1 to the last (the run's `metrics.jsonl`)."""
    (metrics,) = run_dir.glob("runs/*/metrics.jsonl")
    steps = [r for r in map(json.loads, metrics.read_text().splitlines()) if "samples_trained" in r]
    first, last = steps[0], steps[-1]
    return (last["samples_trained"] - first["samples_trained"]) / (last["time"] - first["time"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rl-steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "async")
    args = parser.parse_args()
    summaries: dict[int, list[dict]] = {eta: [] for eta in ETAS}
    for seed in range(args.seeds):
        for eta in ETAS:
            run_dir = args.out / f"eta{eta}" / f"seed{seed}"
            summary = run_demo(
                run_dir,
                scenario="default",
                seed=seed,
                rl_steps=args.rl_steps,
                overrides=[f"--learner.max_staleness={eta}"],
            )
            summaries[eta].append({**summary, "samples_per_second": rl_rate(run_dir)})
    types = sorted(summaries[ETAS[0]][0]["heldout_after_rl"])
    print(f"| η | {' | '.join(types)} | samples/s per seed | stale dropped |")
    print("|" + " --- |" * (len(types) + 3))
    for eta in ETAS:
        runs = summaries[eta]
        accuracy = " | ".join(spread([s["heldout_after_rl"][t] for s in runs]) for t in types)
        speeds = " / ".join(f"{s['samples_per_second']:.0f}" for s in runs)
        print(f"| {eta} | {accuracy} | {speeds} | {sum(s['stale_dropped'] for s in runs)} |")
    rate = {eta: statistics.mean(s["samples_per_second"] for s in summaries[eta]) for eta in ETAS}
    print(f"samples/s, η = 1 ÷ η = 0 over {args.seeds} seeds: {rate[1]:.1f} / {rate[0]:.1f} = {rate[1] / rate[0]:.2f}x")


if __name__ == "__main__":
    main()
