"""The running service's state file (`<run_dir>/state.json`): the broker, every metrics
endpoint, the memory endpoint and the restart counts, which the launcher rewrites on every change
and the CLI (`status`, `ingest`, `ask`) reads to find a local service without Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.kafka import StreamsConfig

STATE_FILE = "state.json"


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
