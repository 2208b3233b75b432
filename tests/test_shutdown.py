"""`longtide run` stops cleanly on SIGTERM: actors, Ray and the embedded broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline


def test_sigterm_stops_everything(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "run",
            f"--run_dir={run_dir}",
            "--ray.num_cpus=2",
            "--learner.sft_steps=0",
            "--learner.heldout_tasks=8",
            "--model.path=",
            "--model.tiny.num_layers=1",
            "--model.tiny.hidden_size=64",
            "--model.tiny.num_heads=2",
            "--model.tiny.intermediate_size=64",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    state = run_dir / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if not state.exists():
        proc.kill()
        pytest.fail(f"service did not start:\n{(tmp_path / 'run.log').read_text()[-3000:]}")
    broker_port = int(json.loads(state.read_text())["bootstrap_servers"].rsplit(":", 1)[1])
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    output = (tmp_path / "run.log").read_text()
    assert proc.returncode == 130, output[-3000:]
    assert "stopped cleanly" in output
    assert not state.exists(), "state file removed"
    import socket

    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker_port), timeout=1).close()
