"""Soak: `longtide run` for a long while under a steady document feed; does anything grow?

    .venv/bin/python bench/soak.py                      # 30 minutes, the default demo's config
    .venv/bin/python bench/soak.py --minutes 6 --docs-per-minute 240
    .venv/bin/python bench/soak.py --retention-min 5     # with streams.retention_ms on the busy topics
    .venv/bin/python bench/soak.py --supervision.stall_s=180   # any further --section.field=VALUE: the service's

Starts `longtide run --config ops/configs/demo.yaml` (durable embedded storage, the default;
a learner that trains until stopped) in a run directory of its own, feeds `--docs-per-minute`
new world documents to `docs.raw` spread over each minute, and every minute prints, from
outside the service: the RSS of every process of the service (found by its
`LONGTIDE_SERVICE` tag; actors named from `state.json`), the disk used by the run directory,
and the lag of each consumer group on its input topic (end offset minus committed offset).

After the run it compares the last minute with the first minute after `--warmup` minutes:
RSS growth per process (target < 10%), disk growth per minute over that stretch, and the lag
at both ends (flat: bounded by backpressure, not growing). The last line is the largest RSS
growth after warm-up. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import psutil
from service import BenchService  # bench/service.py, beside this script

from ops.feed import send_json, world_documents
from ops.processes import tagged
from ops.slots import LEARNER_NAME
from ops.status import scrape, total
from streams.kafka import StreamsConfig
from streams.logs import OffsetReader, group_offsets

RETAINED = ("docs.raw", "tasks", "rollouts", "scored")
"""The topics `--retention-min` applies to: each read by one consumer group (`docs` and `policy`
are kept: documents are the user's, and the policy's history is how actors find the newest)."""
INPUTS = {  # consumer group -> the topic it reads
    "longtide-ingest": "docs.raw",
    "longtide-synthesis": "docs",
    "longtide-rollout": "tasks",
    "longtide-reward": "rollouts",
    "longtide-learner": "scored",
}


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def process_names(procs: list[psutil.Process], state: dict) -> dict[int, str]:
    by_pid = {pid: actor for actor, pid in state.get("pids", {}).items()}
    names = {}
    for proc in procs:
        try:
            name = by_pid.get(proc.pid) or proc.name()
            if proc.pid == state.get("pid"):
                name = "launcher"
        except psutil.Error:
            continue
        names[proc.pid] = name
    return names


def rss_by_name(service_id: str, state: dict) -> dict[str, float]:
    procs = tagged(service_id)
    names = process_names(procs, state)
    out: dict[str, float] = {}
    for proc in procs:
        try:
            rss = proc.memory_info().rss / 2**20
        except psutil.Error:
            continue
        name = names.get(proc.pid, str(proc.pid))
        out[name] = out.get(name, 0.0) + rss  # Ray's several raylet/agent processes add up
    return out


def lags(streams: StreamsConfig, reader: OffsetReader) -> dict[str, int]:
    out = {}
    for group, topic in INPUTS.items():
        ends = reader.end_offsets(topic)
        committed = group_offsets(streams, group)
        out[group.removeprefix("longtide-")] = sum(
            max(0, end - committed.get((topic, p), 0)) for p, end in ends.items()
        )
    return out


def deleted_batches(state: dict) -> float:
    """Record batches the launcher's retention deleted so far; NaN when it does not answer."""
    try:
        return total(scrape(state.get("endpoints", {}).get("launcher", "")), "retention_deleted_batches_total") or 0.0
    except OSError:
        return float("nan")


def learner_steps(state: dict) -> float:
    """The learner's optimizer steps so far (its metrics endpoint); NaN when it does not answer."""
    address = state.get("endpoints", {}).get(LEARNER_NAME, "")
    try:
        return total(scrape(address), "learner_steps_total") or 0.0
    except OSError:
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5, help="minutes before growth is measured")
    parser.add_argument("--docs-per-minute", type=int, default=240)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument(
        "--retention-min",
        type=float,
        default=0,
        help=f"streams.retention_ms of {', '.join(RETAINED)} in minutes (0: keep everything, the default's)",
    )
    args, extra = parser.parse_known_args()  # the rest goes to `longtide run` (--section.field=VALUE)
    if args.warmup >= args.minutes:
        parser.error("--warmup must be shorter than --minutes")

    command = ["run", "--config", "ops/configs/demo.yaml", "--learner.rl_steps=0", "--learner.eval_every=1000000"]
    command += extra
    if args.retention_min:
        ms = int(args.retention_min * 60_000)
        command.append("--streams.retention_ms={" + ", ".join(f"{t}: {ms}" for t in RETAINED) + "}")
    service = BenchService("soak", command)
    run_dir, proc, service_id = service.run_dir, service.proc, service.service_id
    print(
        f"soak: {' '.join(service.command)}\n      log {service.log}, {args.minutes:g} min, {args.docs_per_minute} docs/min"
    )
    samples: list[dict] = []
    try:
        state: dict = {}
        while proc.poll() is None and not state.get("pids"):
            time.sleep(2)
            try:
                state = json.loads((run_dir / "state.json").read_text())
            except (OSError, ValueError):
                state = {}
        if proc.poll() is not None:
            raise SystemExit(f"longtide run exited with {proc.returncode}; see {service.log}")
        streams = StreamsConfig(bootstrap_servers=state["bootstrap_servers"])
        reader = OffsetReader(streams, client_id="soak-offsets")
        start = time.monotonic()
        world = 0
        per_tick = max(1, args.docs_per_minute // 6)  # every 10 s
        next_sample = start
        while time.monotonic() - start < args.minutes * 60 and proc.poll() is None:
            docs = []
            while len(docs) < per_tick:
                docs += list(world_documents(worlds=1, entities_per_world=8, seed=10_000 + world))
                world += 1
            send_json(streams, iter(docs[:per_tick]), client_id="soak-feed")
            if time.monotonic() >= next_sample:
                state = json.loads((run_dir / "state.json").read_text())
                sample = {
                    "minute": round((time.monotonic() - start) / 60, 1),
                    "rss": rss_by_name(service_id, state),
                    "disk_mb": disk_mb(run_dir),
                    "lag": lags(streams, reader),
                    "steps": learner_steps(state),
                    "deleted": deleted_batches(state),
                }
                samples.append(sample)
                rss = " ".join(f"{k}={v:.0f}" for k, v in sorted(sample["rss"].items()))
                steps = sample["steps"] - (samples[-2]["steps"] if len(samples) > 1 else 0.0)
                print(
                    f"[{sample['minute']:5.1f} min] disk {sample['disk_mb']:.0f} MB  learner steps +{steps:.0f}  "
                    f"batches deleted {sample['deleted']:.0f}  "
                    f"lag {sample['lag']}\n    RSS MB: {rss}",
                    flush=True,
                )
                next_sample += 60
            time.sleep(10)
        reader.close()
    finally:
        service.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    if proc.returncode not in (None, 0, 130):
        print(f"longtide run exited with {proc.returncode}; see {service.log}")
    after = [s for s in samples if s["minute"] >= args.warmup]
    if len(after) < 2:
        raise SystemExit("too few samples after the warm-up to compare")
    first, last = after[0], after[-1]
    minutes = last["minute"] - first["minute"]
    growth = {
        name: (last["rss"][name] / first["rss"][name] - 1) * 100
        for name in first["rss"]
        if name in last["rss"] and first["rss"][name] > 0
    }
    print(f"\nafter {args.warmup:g} min of warm-up, over {minutes:.1f} min:")
    for name, pct in sorted(growth.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {first['rss'][name]:8.0f} -> {last['rss'][name]:8.0f} MB  {pct:+6.1f}%")
    print(
        f"  disk: {first['disk_mb']:.0f} -> {last['disk_mb']:.0f} MB ({(last['disk_mb'] - first['disk_mb']) / minutes:.1f} MB/min)"
    )
    print(f"  lag: {first['lag']} -> {last['lag']}")
    print(f"  learner steps a minute: {(last['steps'] - first['steps']) / minutes:.1f} over the stretch")
    worst = max(growth, key=growth.get)
    print(f"largest RSS growth after warm-up: {growth[worst]:+.1f}% ({worst}; target < 10%)")


if __name__ == "__main__":
    main()
