"""A server the service runs as a child process (the broker, the object store): whether it is
wanted and running, and a stop that interrupts it (SIGINT, so it can flush) and kills it if it
lingers. Subclasses start it (with `_popen`, setting `wanted`) and say how long a stop may take.

A child dies with the thread that started it (Linux's parent-death signal): a launcher killed with
SIGKILL, which can run no stop of its own, leaves no broker or store behind holding the run's ports
and data directory. So a child must be started from a thread that lives until the child is stopped.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send SIGTERM to the child when the thread that forked it
    exits (None off Linux). Resolved here, not in the child, where only the call itself runs."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return preexec


DIE_WITH_PARENT = _die_with_parent()


class ChildProcess:
    STOP_TIMEOUT_S = 5.0
    """How long a stop waits after SIGINT before SIGKILL (and again after it)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.wanted = False
        """Started and not stopped on purpose: a child that exited or failed to restart is dead."""

    def start(self) -> Self:
        raise NotImplementedError

    def _popen(self, command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        """Start the child in its own session (a Ctrl-C at the terminal reaches the launcher only,
        which stops it in order), ended by the kernel if the launcher dies first."""
        self._proc = subprocess.Popen(command, start_new_session=True, preexec_fn=DIE_WITH_PARENT, **options)  # noqa: PLW1509 - prctl only, resolved before the fork
        return self._proc

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
