"""`longtide run` driven as an operator drives it: the CLI in a process of its own, found again
through its state file, its processes through the tag every one of them carries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from ops.processes import TAG, tagged

LONGTIDE = str(Path(sys.executable).parent / "longtide")
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One `longtide` command, as a person types it."""
    return subprocess.run(
        [LONGTIDE, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}
    )


class CliService:
    """`longtide run ARGS` in its own session, with a service id of the test's choosing."""

    def __init__(self, run_dir: Path, *args: str) -> None:
        self.run_dir = run_dir
        self.args = ["run", f"--run_dir={run_dir}", *args]
        self.service_id = f"test-{uuid.uuid4().hex[:8]}"
        self.log_path = run_dir.parent / f"{run_dir.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> CliService:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [LONGTIDE, *self.args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, TAG: self.service_id, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, lines: int = 10_000) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = 600) -> dict[str, Any]:
        """The state file once every actor has started."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"longtide run exited with {self.proc.returncode}:\n{self.log()}")
            state = self.state()
            if state is not None:
                return state
            time.sleep(1)
        raise AssertionError(f"longtide run not ready after {timeout_s} s:\n{self.log()}")

    def processes(self) -> list[psutil.Process]:
        """Every process carrying this service's tag, the launcher's included (the tag is in its
        environment from the start)."""
        return tagged(self.service_id)

    def worker(self, actor: str) -> psutil.Process:
        """The Ray worker process hosting `actor`, from the state file's `pids`."""
        state = self.state() or {}
        pid = state.get("pids", {}).get(actor)
        if pid is None:
            raise AssertionError(f"no pid of {actor} in the state file: {state.get('pids')}")
        return psutil.Process(pid)

    def loading(self, library: str) -> list[psutil.Process]:
        """The service's processes that have `library` (a path fragment, e.g. '/vllm/') mapped."""
        found = []
        for proc in self.processes():
            try:
                if any(library in m.path for m in proc.memory_maps()):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def stop(self, timeout_s: float = 120) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill_leftovers(self) -> list[str]:
        """SIGKILL whatever of the service is still running (a failed test's cleanup); what was."""
        left = self.processes()
        for proc in left:
            try:
                proc.kill()
            except psutil.Error:
                continue
        return [f"{p.pid} {p.name()}" for p in left]
