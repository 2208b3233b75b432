"""One service per run directory (`ops.state.claim_run_dir`): a lock held for the service's
life, refused while held, and what a killed service left behind ended before the reuse."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from ops.config import ConfigError
from ops.processes import TAG
from ops.state import STATE_FILE, claim_run_dir


def test_a_held_run_dir_is_refused_in_one_line_and_free_again_once_let_go(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 4242}))
    held = claim_run_dir(tmp_path)
    with pytest.raises(
        ConfigError, match=rf"^run_dir: a service \(pid 4242\) is already running in {tmp_path}; stop it"
    ):
        claim_run_dir(tmp_path)
    held.close()  # as the kernel does when the process ends, SIGKILL included
    claim_run_dir(tmp_path).close()


def test_what_a_killed_service_left_is_ended_before_the_run_dir_is_reused(tmp_path: Path) -> None:
    left = subprocess.Popen(["sleep", "60"], env={**os.environ, TAG: "killed-service-1"})
    try:
        (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 999999, "service_id": "killed-service-1"}))
        claim_run_dir(tmp_path).close()
        assert left.wait(10) is not None, "the left-behind process was ended"
    finally:
        if left.poll() is None:
            left.kill()
    assert not psutil.pid_exists(left.pid) or psutil.Process(left.pid).status() == psutil.STATUS_ZOMBIE
