"""`longtide report RUN`: a run's curves as a PNG and an HTML page.

Reads `<RUN>/runs/<run id>/metrics.jsonl` (one line per published policy version, written by
the learner; RUN is a run directory, the newest run in it is taken, or a `runs/<id>` directory)
and plots held-out accuracy and reward per task type, batch entropy (with AEPO's masking), the
staleness of trained groups, and throughput, against RL steps. The demo ends by writing one.

    longtide report [.longtide/run]        # writes report.png and report.html beside metrics.jsonl
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def metrics_file(run: Path) -> Path:
    """The metrics of `run` (a run directory's newest run, or one run's own directory)."""
    if (run / "metrics.jsonl").exists():
        return run / "metrics.jsonl"
    runs = sorted((run / "runs").glob("*/metrics.jsonl"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"{run}: no metrics.jsonl (in it or under {run / 'runs'})")
    return runs[-1]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["rl_step"], float(r[key])) for r in rows if key in r and r[key] == r[key]]  # (NaN left out)
    return [s for s, _ in pairs], [v for _, v in pairs]


def _throughput(rows: list[dict[str, Any]], window: int = 20) -> tuple[list[int], list[float]]:
    """Trajectories trained per second, over the last `window` versions (fewer in a run that
    has fewer)."""
    out: tuple[list[int], list[float]] = ([], [])
    trained = [r for r in rows if "samples_trained" in r]
    window = max(1, min(window, len(trained) - 1))
    for a, b in zip(trained, trained[window:], strict=False):
        if b["time"] > a["time"]:
            out[0].append(b["rl_step"])
            out[1].append((b["samples_trained"] - a["samples_trained"]) / (b["time"] - a["time"]))
    return out


def write_report(run: Path) -> tuple[Path, Path]:
    """Write report.png and report.html beside the run's metrics.jsonl; their paths."""
    source = metrics_file(run)
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r})
    heldout = [k for k in keys if k.startswith("heldout_") and k != "heldout_all"]
    rewards = [k for k in keys if k.startswith("reward_") and k != "reward_mean"]
    fig, axes = plt.subplots(5, 1, figsize=(9, 15), sharex=True)
    panels = [
        ("held-out accuracy", heldout or ["heldout_all"]),
        ("reward of the batch", rewards or ["reward_mean"]),
        ("batch entropy (nats)", ["batch_entropy", "aepo_masking"]),
        ("staleness of trained groups (versions)", ["staleness_mean"]),
    ]
    for ax, (title, series) in zip(axes, panels, strict=False):
        for key in series:
            steps, values = _series(rows, key)
            if steps:
                ax.plot(steps, values, marker="o" if key.startswith("heldout") else None, ms=3, lw=1, label=key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    steps, values = _throughput(rows)
    axes[4].plot(steps, values, lw=1, label="trajectories/s (over 20 versions)")
    axes[4].set_title("throughput (trajectories trained per second)")
    axes[4].set_xlabel("RL step")
    axes[4].grid(alpha=0.3)
    fig.suptitle(f"Longtide run {source.parent.name}")
    fig.tight_layout()
    png = source.parent / "report.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    last: dict[str, Any] = {}
    for r in rows:  # each metric's latest value (held-out accuracy is only in evaluation steps)
        last |= r
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{last[k]:.4g}</td></tr>"
        for k in keys
        if isinstance(last.get(k), (int, float)) and k not in ("time",)
    )
    page = source.parent / "report.html"
    page.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Longtide run {html.escape(source.parent.name)}"
        f"</title></head><body><h1>Longtide run {html.escape(source.parent.name)}</h1>"
        f"<p>{len(rows)} versions from {html.escape(str(source))}</p>"
        f"<img alt='curves' src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>"
        f"<h2>Latest values</h2><table>{table}</table></body></html>"
    )
    return png, page
