"""`longtide demo`: the whole loop on one machine, with progress lines and a final summary.

longtide demo                       # embedded broker, local Ray, ops/configs/demo.yaml (the default scenario)
longtide demo --learner.rl_steps=50 --feed.worlds=100
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.config import LongtideConfig
from ops.feed import SAMPLE_CORPUS, documents_from_path, send_json, send_malformed, world_documents
from ops.launcher import Service
from ops.report import write_report
from ops.slots import LEARNER_NAME
from schemas import DeadLetter, SchemaError, decode
from streams.logs import read_all
from streams.topics import DLQ


def _scores(entry: dict[str, Any] | None) -> dict[str, float]:
    """The accuracies of a learner history entry, without its label, version and step."""
    return {k: v for k, v in (entry or {}).items() if k not in ("label", "version", "rl_step")}


def _fmt(entry: dict[str, Any] | None) -> str:
    scores = _scores(entry)
    return " ".join(f"{k}={scores[k]:.3f}" for k in sorted(scores)) or "-"


def _history(learner: dict[str, Any], label: str) -> dict[str, Any] | None:
    found = [h for h in learner["history"] if h["label"] == label]
    return found[-1] if found else None


def _tasks_by_type(snaps: dict[str, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, snap in snaps.items():
        if name.startswith("synthesis"):
            for task_type, n in snap.get("tasks_by_type", {}).items():
                out[task_type] = out.get(task_type, 0) + n
    return dict(sorted(out.items()))


def summarize(snaps: dict[str, dict[str, Any]], *, dead_letters: int, wall_s: float) -> dict[str, Any]:
    learner = snaps[LEARNER_NAME]
    final = learner["history"][-1] if learner["history"] else None
    engines = sorted({s["engine"] for n, s in snaps.items() if n.startswith("rollout") and "engine" in s})
    return {
        "rollout_engine": ",".join(engines),
        "learner_backend": learner.get("backend", ""),
        "tasks_by_type": _tasks_by_type(snaps),
        "heldout_before": _scores(_history(learner, "start")),
        "heldout_after_sft": _scores(_history(learner, "after sft")),
        "heldout_after_rl": _scores(final),
        "rl_steps": learner["rl_step"],
        "policy_version": learner["policy_version"],
        "samples_trained": learner["samples_trained"],
        "samples_per_second": round(learner["samples_per_second"], 2),
        "staleness_histogram": learner["staleness_histogram"],
        "stale_dropped": learner["stale_dropped"],
        "dead_letters": dead_letters,
        "restarts": {n: s["restarts"] for n, s in snaps.items() if s.get("restarts")},
        "wall_seconds": round(wall_s, 1),
        "history": learner["history"],
    }


def run_demo(
    config: LongtideConfig,
    *,
    echo: Callable[[str], None] = print,
    timeout_s: float = 14 * 60,
    progress_every_s: float = 10.0,
) -> dict[str, Any]:
    start = time.monotonic()
    echo(f"[demo] starting broker, Ray and {config.rollout.instances} rollout actor(s); run dir {config.run_dir}")
    with Service(config) as service:
        streams = service.config.streams
        echo(
            f"[demo] broker at {streams.bootstrap_servers}; metrics endpoints: "
            + ", ".join(f"{k}={v}" for k, v in service.endpoints.items())
        )
        feed = config.feed
        sent = send_json(
            streams, world_documents(worlds=feed.worlds, entities_per_world=feed.entities_per_world, seed=feed.seed)
        )
        if feed.corpus:
            folder = SAMPLE_CORPUS if feed.corpus == "sample" else Path(feed.corpus)
            sent += send_json(streams, documents_from_path(folder, "corpus"))
        bad = send_malformed(streams) if feed.malformed else 0
        echo(f"[demo] sent {sent} documents ({feed.worlds} worlds) and {bad} malformed records to docs.raw")
        answered: dict[str, dict[str, Any]] = {}  # each actor's last answer (a restarting one keeps it)
        while True:
            time.sleep(progress_every_s)
            service.check()  # a crash loop ends the demo; single deaths are restarted
            snaps = service.snapshots()
            answered.update({n: s for n, s in snaps.items() if "restarting" not in s})
            learner = snaps[LEARNER_NAME]
            if "restarting" in learner:
                echo(f"[demo {time.monotonic() - start:5.0f}s] learner restarting: {learner['restarting'][:200]}")
                if time.monotonic() - start > timeout_s:
                    echo("[demo] time budget reached; stopping before the learner finished")
                    break
                continue
            tasks = sum(s.get("produced", 0) for n, s in snaps.items() if n.startswith("synthesis"))
            last = learner["last_metrics"]
            echo(
                f"[demo {time.monotonic() - start:5.0f}s] phase={learner['phase']} "
                f"version={learner['policy_version']} rl_step={learner['rl_step']}/{config.learner.rl_steps} "
                f"tasks={tasks} samples/s={learner['samples_per_second']:.1f} "
                f"reward={last.get('reward_mean', float('nan')):.3f} "
                f"stale_dropped={learner['stale_dropped']} heldout[{_fmt(learner['history'][-1] if learner['history'] else None)}]"
            )
            if learner["done"]:
                break
            if time.monotonic() - start > timeout_s:
                echo("[demo] time budget reached; stopping before the learner finished")
                break
        messages = read_all(streams, DLQ.name)
        for message in messages:
            try:
                [letter] = decode(message.value, DeadLetter, message.headers)
            except (SchemaError, ValueError) as exc:  # anyone may write to dlq
                echo(f"[demo] dlq@{message.offset}: not a dead letter this build reads ({exc})")
                continue
            echo(
                f"[demo] dead letter from {letter.source_topic}@{letter.source_offset} "
                f"({letter.consumer_group}): {letter.error[:100]}"
            )
        if LEARNER_NAME not in answered:
            raise RuntimeError("the learner never answered; see the log")
        final = {n: {**answered.get(n, {}), **s} if "restarting" in s else s for n, s in snaps.items()}
        summary = summarize(final, dead_letters=len(messages), wall_s=time.monotonic() - start)
    (service.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    echo(render_summary(summary))
    if service.run is not None and (service.run.directory / "metrics.jsonl").exists():
        png, page = write_report(service.run.directory)
        echo(f"[demo] curves: {png} and {page} (`longtide report`)")
    return summary


def render_summary(summary: dict[str, Any]) -> str:
    lines = [
        "",
        "================ Longtide demo summary ================",
        f"tasks made by type                : {' '.join(f'{k}={v}' for k, v in summary['tasks_by_type'].items())}",
        f"held-out accuracy before training : {_fmt(summary['heldout_before'])}",
        *(
            [f"held-out accuracy after SFT       : {_fmt(summary['heldout_after_sft'])}"]
            if summary["heldout_after_sft"]
            else []
        ),
        f"held-out accuracy after RL        : {_fmt(summary['heldout_after_rl'])}",
        f"rollout engine / learner backend  : {summary['rollout_engine']} / {summary['learner_backend']}",
        f"RL steps / policy version         : {summary['rl_steps']} / {summary['policy_version']}",
        f"samples trained, samples/s        : {summary['samples_trained']}, {summary['samples_per_second']}",
        f"staleness (versions: trajectories): {summary['staleness_histogram']}",
        f"stale samples dropped             : {summary['stale_dropped']}",
        f"dead letters                      : {summary['dead_letters']}",
        f"actor restarts                    : {summary['restarts'] or 'none'}",
        f"wall time                         : {summary['wall_seconds']} s",
        "========================================================",
    ]
    return "\n".join(lines)
