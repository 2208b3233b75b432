"""The service's processes on this machine, found by a tag in their environment.

Every process the service starts inherits the launcher's environment: the embedded broker,
Ray's own processes, every actor's worker and what a worker starts (a vLLM engine's
processes). The launcher sets `LONGTIDE_SERVICE=<id>` before it starts anything (keeping an id given in
its own environment, so a supervisor of the launcher can find them too), so when it stops it
can find what is still running under its id (a worker Ray was slow to end, an engine
process whose parent was killed, a broker whose stop was interrupted) and end it: a stop at any
moment, start-up included, leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os

import psutil

log = logging.getLogger(__name__)

TAG = "LONGTIDE_SERVICE"


def tagged(service_id: str) -> list[psutil.Process]:
    """The processes on this machine tagged with `service_id`, other than this one and its
    ancestors (a shell that exported the tag is not the service's)."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in mine:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(TAG) == service_id:
                found.append(proc)
    return found


def end(processes: list[psutil.Process], grace_s: float = 5.0) -> list[str]:
    """SIGTERM, then SIGKILL what is left after `grace_s`; what had to be ended, as 'pid name'."""
    ended = []
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            ended.append(f"{proc.pid} {proc.name()}")
            proc.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return ended
