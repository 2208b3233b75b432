"""Finding the launcher that wrote a run directory's state (`ops.processes.running_launcher`):
a second service in that directory is refused while it runs, and only while it runs."""

from __future__ import annotations

import os
import time

import psutil

from ops.processes import running_launcher


def test_a_running_launcher_is_found_by_its_pid_and_start_time() -> None:
    parent = psutil.Process(os.getppid())
    assert running_launcher({"pid": parent.pid, "started_at": time.time()}) == parent.pid


def test_a_later_process_on_the_same_pid_is_not_the_launcher() -> None:
    parent = psutil.Process(os.getppid())
    before_it_started = parent.create_time() - 60
    assert running_launcher({"pid": parent.pid, "started_at": before_it_started}) is None


def test_a_gone_or_unreadable_launcher_is_none() -> None:
    gone = psutil.Popen(["true"])
    gone.wait()
    assert running_launcher({"pid": gone.pid, "started_at": time.time()}) is None
    assert running_launcher({"pid": "x", "started_at": time.time()}) is None
    assert running_launcher({}) is None
