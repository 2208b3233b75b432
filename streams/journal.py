"""Which records a consumer group is handling right now, on disk: so that after its actor's
process dies (killed, out of memory, a segfault in an engine, a loop that raised) the restarted
actor knows which records were in flight, and a record that kills its actor is dead-lettered
instead of killing it again.

One small file per (group, topic, partition) under `<journal_dir>/<group>/`, rewritten in place
(no fsync: it must survive its process's death, not the machine's). It holds the offsets in
flight now, the deaths counted against records that were in flight alone, and the suspects
(records in flight with others at a death):

    {"inflight": [12], "deaths": {"9": 1}, "suspects": [4, 5, 6], "committed": 13}

A process that opens a partition's file (the first time one of its records is polled after the
partition was assigned to it) and finds offsets in flight knows that whoever held the partition
before died handling them: one offset alone is charged a death; several become suspects, each
handled alone from then on, so a second death names the culprit. Offsets below what the group
committed are forgotten. A clean stop leaves nothing in flight: a stop is not a record's fault.

The file also keeps the group's committed offset, so knowledge of what the group committed
survives a broker that loses its log (and its committed offsets with it): a process taking the
partition over reads it (`committed_offsets`) and stops with `LogLost` when the new log would
hand it records below it, even if it never held the partition before.

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


class Journal:
    """In-flight offsets, deaths and suspects per partition of one consumer group (see the
    module docstring). `directory` None keeps nothing (no death is ever counted)."""

    def __init__(self, directory: str | Path | None, group: str) -> None:
        self.directory = Path(directory) / group if directory else None
        self._fds: dict[Partition, int] = {}
        self._deaths: dict[Partition, dict[int, int]] = {}
        self._suspects: dict[Partition, set[int]] = {}
        self._inflight: dict[Partition, list[int]] = {}
        self._committed: dict[Partition, int] = {}
        self._closed = False

    def deaths(self, part: Partition, offset: int) -> int:
        """Deaths of this group's processes while `offset` was being handled alone."""
        self._open(part)
        return self._deaths[part].get(offset, 0)

    def suspect(self, part: Partition, offset: int) -> bool:
        """`offset` was in flight with others when a process of this group died."""
        self._open(part)
        return offset in self._suspects[part]

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
        """The group committed these next offsets: what was counted below them is forgotten."""
        for part, offset in offsets.items():
            self._open(part)
            deaths, suspects = self._deaths[part], self._suspects[part]
            known = self._committed.get(part, 0)
            if offset > known or any(o < offset for o in deaths) or any(o < offset for o in suspects):
                self._committed[part] = max(known, offset)
                self._deaths[part] = {o: n for o, n in deaths.items() if o >= offset}
                self._suspects[part] = {o for o in suspects if o >= offset}
                self._write(part)

    def committed_offsets(self, parts: Iterable[Partition]) -> dict[Partition, int]:
        """The committed offset each of `parts` has in its file (written by any process of the
        group), read without taking the partition over."""
        out = {}
        for part in parts:
            if part in self._committed:
                out[part] = self._committed[part]
                continue
            path = self.directory / f"{part[0]}.{part[1]}" if self.directory else None
            if path is None or not path.is_file():
                continue
            try:
                committed = json.loads(path.read_text() or "{}").get("committed")
            except (ValueError, OSError, AttributeError):
                continue  # unreadable: `_open` starts it over
            if isinstance(committed, int):
                out[part] = committed
        return out

    def forget(self, parts: Iterable[Partition]) -> None:
        """Partitions this process no longer holds (a rebalance): their next holder reads their
        files, and this process reads them again if they come back."""
        for part in parts:
            if self._inflight.pop(part, None) and part in self._deaths:
                self._write(part)  # alive: what it had in flight is no death of the next holder's
            fd = self._fds.pop(part, None)
            if fd is not None:
                os.close(fd)
            for state in (self._deaths, self._suspects, self._inflight, self._committed):
                state.pop(part, None)

    def close(self) -> None:
        """A clean stop: nothing is left in flight (whatever was being handled, the stop ended it)."""
        self.end()
        self._closed = True
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _open(self, part: Partition) -> None:
        if part in self._deaths:
            return
        self._deaths[part], self._suspects[part] = {}, set()
        if self.directory is None or self._closed:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{part[0]}.{part[1]}", os.O_RDWR | os.O_CREAT, 0o600)
        self._fds[part] = fd
        raw = os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", errors="replace").strip()
        try:
            state = json.loads(raw) if raw else {}
            deaths = {int(o): int(n) for o, n in state.get("deaths", {}).items()}
            suspects = {int(o) for o in state.get("suspects", [])}
            inflight = [int(o) for o in state.get("inflight", [])]
            committed = int(state.get("committed", 0))
        except (ValueError, TypeError, AttributeError):  # a file cut by a machine crash: start over
            log.warning("journal %s/%s.%d unreadable; starting it over", self.directory, *part)
            deaths, suspects, inflight, committed = {}, set(), [], 0
        if len(inflight) == 1:  # its holder died handling this record alone
            deaths[inflight[0]] = deaths.get(inflight[0], 0) + 1
        else:  # ... or one of these: each is handled alone from now on
            suspects |= set(inflight)
        if inflight:
            log.error("%s/%d: the previous holder of this partition died handling offsets %s", *part, inflight)
        self._deaths[part], self._suspects[part] = deaths, suspects
        self._committed[part] = max(self._committed.get(part, 0), committed)
        self._write(part)

    def _write(self, part: Partition) -> None:
        fd = self._fds.get(part)
        if fd is None or self._closed:
            return
        state = {
            "inflight": self._inflight.get(part, []),
            "deaths": {str(o): n for o, n in sorted(self._deaths[part].items())},
            "suspects": sorted(self._suspects[part]),
            "committed": self._committed.get(part, 0),
        }
        text = json.dumps(state).encode()
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
