"""`longtide report`: a run's metrics.jsonl becomes a PNG and an HTML page."""

from __future__ import annotations

import json
from pathlib import Path

from ops.cli import main as cli_main


def test_report_plots_a_runs_curves(tmp_path: Path) -> None:
    run = tmp_path / "run" / "runs" / "20261202-000000-abcdef"
    run.mkdir(parents=True)
    lines = [
        {
            "version": v,
            "rl_step": v,
            "time": 1000.0 + v,
            "reward_mean": 0.5,
            "reward_kv_retrieval": 0.1 * v,
            "batch_entropy": 0.7 - 0.01 * v,
            "aepo_masking": float(v < 5),
            "staleness_mean": 1.0,
            "samples_trained": 128.0 * v,
            **({"heldout_kv_retrieval": 0.2 + 0.05 * v} if v % 5 == 0 else {}),
        }
        for v in range(30)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert cli_main(["report", str(tmp_path / "run")]) == 0
    png, page = run / "report.png", run / "report.html"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    body = page.read_text()
    assert "data:image/png;base64," in body and "heldout_kv_retrieval" in body
    assert cli_main(["report", str(tmp_path / "nothing")]) == 1  # no metrics: a clear error


def test_a_short_run_still_has_a_throughput_curve() -> None:
    from ops.report import _throughput

    rows = [{"rl_step": v, "time": 100.0 + 10 * v, "samples_trained": 32.0 * v} for v in range(9)]
    steps, rates = _throughput(rows)
    assert steps and all(abs(r - 3.2) < 1e-9 for r in rates), (steps, rates)  # 32 trajectories per 10 s
