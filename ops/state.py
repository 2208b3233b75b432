"""The running service's state file (`<run_dir>/state.json`): the broker, every metrics
endpoint, the memory endpoint and the restart counts, which the launcher rewrites on every change
and the CLI (`status`, `ingest`, `ask`) reads to find a local service without Ray.
"""

from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path
from typing import IO, Any

from ops import processes
from ops.config import ConfigError
from streams.kafka import StreamsConfig

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "service.lock"
"""Held by the service running in a run directory (`claim_run_dir`)."""


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The state of the service running in `run_dir`, or None when none is running there."""
    found = Path(run_dir) / STATE_FILE
    return json.loads(found.read_text()) if found.exists() else None


def streams_of(state: dict[str, Any]) -> StreamsConfig:
    """StreamsConfig for a running service, from its state."""
    return StreamsConfig(bootstrap_servers=state["bootstrap_servers"])


def claim_run_dir(run_dir: Path) -> IO[str]:
    """One service per run directory, held by a lock on `<run_dir>/service.lock` for the
    service's life (close the returned file to let go; the kernel lets go when the process ends,
    SIGKILL included). Raises ConfigError while another service holds it; ends what a killed one
    left behind (found by the tag in its state file) before its ports and data are reused."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 - the caller holds it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pid = (read_state(run_dir) or {}).get("pid", "unknown")
        raise ConfigError(
            f"run_dir: a service (pid {pid}) is already running in {run_dir}; stop it first "
            f"(kill -TERM {pid}) or give another --run-dir"
        ) from None
    state = read_state(run_dir)
    left = processes.end(processes.tagged(state["service_id"])) if state and state.get("service_id") else []
    if left:
        log.warning("ended %d processes a killed service left in %s: %s", len(left), run_dir, ", ".join(left))
    return lock
