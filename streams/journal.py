"""Which records a consumer group is handling right now, on disk: so that after its actor's
process dies (killed, out of memory, a segfault in an engine, a loop that raised) the restarted
actor knows which records were in flight, and a record that was in flight at `poison_deaths`
deaths is dead-lettered instead of killing its actor again.

One small file per (group, topic, partition) under `<journal_dir>/<group>/`, rewritten in place
(`os.pwrite`, no fsync: it must survive its process's death, not the machine's). It holds the
offsets in flight now and the deaths counted per offset:

    {"inflight": [12, 13], "deaths": {"9": 1}}

A process that opens a partition's file (the first time one of its records is polled) and
finds offsets in flight knows that whoever held the partition before died handling them, and
counts one death for each. Records with a death are handled one at a time from then on, so a
second death names the culprit exactly. Offsets below what the group committed are forgotten.

The directory must be shared by every process of the group (one machine, or a shared file
system); a process that cannot see its predecessor's file counts no deaths, and a record that
kills every process is then bounded only by supervision's crash-loop limit.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

Partition = tuple[str, int]
SLOT_BYTES = 4096
"""The file is rewritten whole at this size (padded), so a shorter state leaves no tail."""


class Journal:
    """In-flight offsets and deaths per partition of one consumer group (see the module docstring).
    `directory` None keeps nothing (deaths are never counted)."""

    def __init__(self, directory: str | Path | None, group: str) -> None:
        self.directory = Path(directory) / group if directory else None
        self._fds: dict[Partition, int] = {}
        self._deaths: dict[Partition, dict[int, int]] = {}
        self._inflight: dict[Partition, list[int]] = {}

    def deaths(self, part: Partition, offset: int) -> int:
        """Deaths of this group's processes counted while `offset` was being handled."""
        self._open(part)
        return self._deaths[part].get(offset, 0)

    def begin(self, offsets: Iterable[tuple[Partition, int]]) -> None:
        """These records are being handled now (until `end`)."""
        for part, offset in offsets:
            self._open(part)
            self._inflight.setdefault(part, []).append(offset)
        for part in list(self._inflight):
            self._write(part)

    def end(self) -> None:
        """Nothing is being handled now."""
        touched, self._inflight = list(self._inflight), {}
        for part in touched:
            self._write(part)

    def committed(self, offsets: dict[Partition, int]) -> None:
        """The group committed these next offsets: deaths counted below them are forgotten."""
        for part, offset in offsets.items():
            deaths = self._deaths.get(part)
            if deaths and any(o < offset for o in deaths):
                self._deaths[part] = {o: n for o, n in deaths.items() if o >= offset}
                self._write(part)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _open(self, part: Partition) -> None:
        if part in self._deaths:
            return
        self._deaths[part] = {}
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{part[0]}.{part[1]}", os.O_RDWR | os.O_CREAT, 0o600)
        self._fds[part] = fd
        raw = os.pread(fd, SLOT_BYTES, 0).decode("utf-8", errors="replace").strip("\0 \n")
        try:
            state = json.loads(raw) if raw else {}
            deaths = {int(o): int(n) for o, n in state.get("deaths", {}).items()}
            inflight = [int(o) for o in state.get("inflight", [])]
        except (ValueError, TypeError, AttributeError):  # a file cut by a machine crash: start over
            log.warning("journal %s/%s.%d unreadable; starting it over", self.directory, *part)
            deaths, inflight = {}, []
        for offset in inflight:  # its holder died handling these
            deaths[offset] = deaths.get(offset, 0) + 1
        if inflight:
            log.error(
                "%s/%d: the previous holder of this partition died handling offsets %s; deaths now %s",
                *part,
                inflight,
                {o: deaths[o] for o in inflight},
            )
        self._deaths[part] = deaths
        self._write(part)

    def _write(self, part: Partition) -> None:
        fd = self._fds.get(part)
        if fd is None:
            return
        deaths = self._deaths[part]
        state = {"inflight": self._inflight.get(part, []), "deaths": {str(o): n for o, n in sorted(deaths.items())}}
        text = json.dumps(state).encode()
        while len(text) > SLOT_BYTES and deaths:  # a pathological pile of suspects: keep the most recent
            oldest = min(deaths)
            del deaths[oldest]
            state["deaths"].pop(str(oldest))
            text = json.dumps(state).encode()
        os.pwrite(fd, text.ljust(SLOT_BYTES), 0)
