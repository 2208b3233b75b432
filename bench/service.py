"""A `longtide` service a bench starts and stops (soak, step profile): its own run directory,
a tag in its environment, and a stop that leaves none of its processes behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ops.processes import TAG, tagged

REPO = Path(__file__).resolve().parents[1]
LONGTIDE = str(Path(sys.executable).parent / "longtide")


class BenchService:
    def __init__(self, prefix: str, command: list[str]) -> None:
        """`command`: the `longtide` subcommand and its arguments; `--run_dir` is added."""
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"longtide-{prefix}-"))
        self.log = str(self.run_dir.parent / f"{self.run_dir.name}.log")
        self.service_id = f"{prefix}-{os.urandom(4).hex()}"
        self.command = [LONGTIDE, *command, f"--run_dir={self.run_dir}"]
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench still stops the service
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, TAG: self.service_id},
                start_new_session=True,
            )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL whatever of it is left; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(180)
        for left in tagged(self.service_id):
            left.kill()
        return self.proc.returncode
