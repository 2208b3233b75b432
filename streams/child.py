"""A server the service runs as a child process (the broker, the object store): whether it is
wanted and running, and a stop that interrupts it (SIGINT, so it can flush) and kills it if it
lingers. Subclasses start it (setting `_proc` and `wanted`) and say how long a stop may take."""

from __future__ import annotations

import signal
import subprocess
from types import TracebackType
from typing import Self


class ChildProcess:
    STOP_TIMEOUT_S = 5.0
    """How long a stop waits after SIGINT before SIGKILL (and again after it)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.wanted = False
        """Started and not stopped on purpose: a child that exited or failed to restart is dead."""

    def start(self) -> Self:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Stop it on purpose: it is no longer wanted."""
        self.wanted = False
        self._end()

    def _end(self) -> None:
        """SIGINT, then SIGKILL if it lingers; still wanted (a failed start is a dead child)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(self.STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(self.STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
