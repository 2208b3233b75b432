"""Step profile: where each second of the default demo's loop goes, per actor.

    .venv/bin/python bench/step_profile.py                      # 20 RL steps after 5 of warm-up
    .venv/bin/python bench/step_profile.py --steps 40 --scenario default

Starts `longtide demo` (the default demo: its document feed, SFT warm-up then RL; more RL steps
than the profile needs), waits until the learner has made `--warmup-steps` RL steps, reads every actor's metrics
endpoint (from `state.json`), waits for `--steps` more and reads them again. Over the wall time
between the two readings, each phase's share of an actor's time is the growth of its
`longtide_<kind>_phase_seconds_total{phase}` (the service's own counters: streams/metrics.py
`Phases`) divided by that time:

- every stream actor: poll (reading input, waiting for it included), decode, handle, encode,
  produce, commit; the rollout actor's sync (loading new weights), gate (waiting for the learner,
  bounded staleness, with its offset queries) and, inside handle, generate (the engine call,
  prompts built); blob (claim-check reads and writes) runs inside handle and generate;
- the learner: poll, intake (decode, prompt blobs), rl_update (log-probs, advantages, and train:
  forward, backward, optimizer), state (the weights gathered), evaluate, publish (weights and
  the `policy` record), checkpoint.

"other" is what no phase covers (the loop's own work). Then samples/s and tokens/s over the same
time. The last line is the largest share of the learner's and the rollout actor's time that is
not the model's own compute (train, generate).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

from service import BenchService  # bench/service.py, beside this script

from ops.slots import LEARNER_NAME
from ops.status import scrape

PHASE = re.compile(r'^longtide_(\w+?)_phase_seconds_total\{actor="([^"]*)",phase="([^"]*)"\}$')
NESTED = {  # kind -> phase -> the phase it runs inside
    "rollout": {"generate": "handle"},
    "learner": {"train": "rl_update"},
}
COMPUTE = {"rollout": "generate", "learner": "train"}


def phases(samples: dict[str, float]) -> dict[tuple[str, str, str], float]:
    """(kind, actor, phase) -> seconds, from one endpoint's samples."""
    out = {}
    for name, value in samples.items():
        found = PHASE.match(name)
        if found:
            out[(found[1], found[2], found[3])] = value
    return out


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k.split("{")[0] == name)


def read_all(state: dict) -> dict[str, float]:
    merged: dict[str, float] = {}
    for address in state.get("endpoints", {}).values():
        try:
            merged.update(scrape(address))
        except OSError:
            continue
    return merged


def rl_steps(state: dict) -> float:
    try:
        samples = scrape(state["endpoints"][LEARNER_NAME])
    except (OSError, KeyError):
        return 0.0
    return samples.get('longtide_learner_steps_total{actor="longtide-learner",phase="rl"}', 0.0)


def wait_state(run_dir: Path, proc: subprocess.Popen, log: str) -> dict:
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"longtide run exited with {proc.returncode}; see {log}")
        try:
            state = json.loads((run_dir / "state.json").read_text())
            if LEARNER_NAME in state.get("endpoints", {}):
                return state
        except (OSError, ValueError):
            pass
        time.sleep(2)


def wait_steps(run_dir: Path, proc: subprocess.Popen, log: str, steps: float) -> dict:
    while True:
        state = wait_state(run_dir, proc, log)
        if rl_steps(state) >= steps:
            return state
        time.sleep(1)


def own(spent: dict[str, float], nested: dict[str, str], phase: str) -> float:
    """A phase's seconds less those of the phases inside it."""
    return spent[phase] - sum(spent.get(c, 0.0) for c, parent in nested.items() if parent == phase)


def rows(spent: dict[str, float], nested: dict[str, str], phase: str, depth: int, wall: float) -> list[tuple[str, str]]:
    """The line of `phase` and, indented under it, those of the phases inside it."""
    seconds = own(spent, nested, phase)
    label = "  " * depth + phase + (" (rest)" if seconds != spent[phase] else "")
    out = [(f"  {label}", f"{seconds:8.1f} s {100 * seconds / wall:5.1f}%")]
    for child, parent in nested.items():
        if parent == phase and child in spent:
            out += rows(spent, nested, child, depth + 1, wall)
    return out


def table(before: dict[str, float], after: dict[str, float], wall: float) -> tuple[list[tuple[str, str]], str]:
    """Per actor: lines of (phase, seconds and share), nested phases indented under their parent;
    and the largest share of a learner or rollout phase that is not the model's compute."""
    grown = phases({key: after[key] - before.get(key, 0.0) for key in after})
    by_actor: dict[tuple[str, str], dict[str, float]] = {}
    for (kind, actor, phase), seconds in grown.items():
        by_actor.setdefault((kind, actor), {})[phase] = seconds
    lines = []
    worst: tuple[float, str] = (0.0, "")
    for (kind, actor), spent in sorted(by_actor.items()):
        nested = NESTED.get(kind, {})
        top = {p: s for p, s in spent.items() if p not in nested and p != "blob"}
        lines.append((f"{actor} ({kind})", ""))

        for phase in sorted(top, key=lambda p: -top[p]):
            lines += rows(spent, nested, phase, 0, wall)
        if "blob" in spent:  # inside several phases (rollout: handle and generate; learner: intake, rl_update)
            lines.append(
                ("    blob (inside the phases above)", f"{spent['blob']:8.1f} s {100 * spent['blob'] / wall:5.1f}%")
            )
        other = wall - sum(top.values())
        lines.append(("  other", f"{other:8.1f} s {100 * other / wall:5.1f}%"))
        if kind in COMPUTE:
            for phase in spent:
                share = own(spent, nested, phase) / wall
                if phase != COMPUTE[kind] and share > worst[0]:
                    worst = (share, f"{actor} {phase}")
    return (
        lines,
        f"largest share of the learner's or rollout's time that is not the model's compute: {100 * worst[0]:.1f}% ({worst[1]})",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default", help="the `longtide demo` scenario")
    parser.add_argument("--warmup-steps", type=int, default=5, help="RL steps before the first reading")
    parser.add_argument("--steps", type=int, default=20, help="RL steps between the readings")
    args, extra = parser.parse_known_args()
    rl_steps_wanted = args.warmup_steps + args.steps + 1000
    service = BenchService(
        "profile", ["demo", "--scenario", args.scenario, f"--learner.rl_steps={rl_steps_wanted}", *extra]
    )
    run_dir, proc, log = service.run_dir, service.proc, service.log
    print(f"step profile: {' '.join(service.command)}\n  log {log}", flush=True)
    try:
        state = wait_steps(run_dir, proc, log, args.warmup_steps)
        before, start = read_all(state), time.monotonic()
        first = rl_steps(state)
        print(f"  reading 1 at RL step {first:.0f}", flush=True)
        state = wait_steps(run_dir, proc, log, first + args.steps)
        after, wall = read_all(state), time.monotonic() - start
        steps = rl_steps(state) - first
    finally:
        service.stop()
    samples = total(after, "longtide_learner_samples_trained_total") - total(
        before, "longtide_learner_samples_trained_total"
    )
    trained = after.get('longtide_learner_tokens_trained_total{actor="longtide-learner",phase="rl"}', 0.0)
    trained -= before.get('longtide_learner_tokens_trained_total{actor="longtide-learner",phase="rl"}', 0.0)
    generated = total(after, "longtide_rollout_tokens_total") - total(before, "longtide_rollout_tokens_total")
    print(f"\n{steps:.0f} RL steps in {wall:.1f} s ({wall / max(steps, 1):.2f} s a step); shares of that wall time:\n")
    lines, worst = table(before, after, wall)
    for left, right in lines:
        print(f"{left:<48} {right}")
    print(
        f"\nsamples trained {samples / wall:.2f}/s; tokens trained {trained / wall:.0f}/s; "
        f"tokens generated {generated / wall:.0f}/s"
    )
    print(worst)


if __name__ == "__main__":
    main()
