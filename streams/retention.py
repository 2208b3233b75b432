"""Retention on the embedded durable log, which Tansu does not enforce.

Tansu's `s3://` engine keeps each record batch as one object,
`clusters/<cluster>/topics/<topic>/partitions/<p:010>/records/<base offset:020>.batch`. It takes
`retention.ms` at topic creation and never applies it, it drops the connection on DeleteRecords,
and it lists every batch object of a partition on every fetch: left alone, the log's disk and
the cost of each fetch grow for as long as the service runs.

The janitor deletes a batch object when all of these hold:
- its topic has `streams.retention_ms` set (not -1) and is one whose readers are known
  (`readers`: topic -> the consumer groups that read it, each committing only what it no
  longer needs; the launcher's are `ops.slots.retention_readers`);
- the object is older than that;
- every record in it is below the offset each of those groups has committed on that partition
  (the next batch starts at or below the lowest); a group that has committed nothing there yet
  (a learner before its first checkpoint) keeps everything;
- it is not the partition's last batch.

So it deletes less than Kafka would: never a record that a group reading the topic has not
committed past. A group-less reader (`longtide replay`, a tool reading from the beginning) finds
the topic starting at the first batch kept: Kafka clients skip the gap as they do on a
compacted topic. The high watermark is Tansu's own object, untouched. The store's disk shrinks
when SeaweedFS vacuums its volumes (`VACUUM_NOTE` in streams/objectstore.py: within 17 minutes).

    janitor = LogJanitor(streams, store, "tansu", {"tasks": ("longtide-rollout",)})  # store: the EmbeddedS3
    janitor.sweep()                        # {topic: batches deleted}
    threading.Thread(target=janitor.run, args=(stop_event,)).start()   # the launcher's: every minute
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

import pyarrow.fs as pafs
from prometheus_client import Counter

from streams.kafka import Partition, StreamsConfig
from streams.logs import OffsetReader, consumer_groups
from streams.objectstore import EmbeddedS3

log = logging.getLogger(__name__)

CLUSTER = "tansu_cluster"
"""Tansu's default cluster id, the first part of every object's key."""
SWEEP_EVERY_S = 60.0
"""How often the launcher sweeps (a minute: the shortest retention allowed)."""

DELETED_BATCHES = Counter(
    "longtide_broker_retention_deleted_batches",
    "Record batches the embedded durable log deleted for retention (consumed by every group and older than it).",
    ["topic"],
)
DELETED_BYTES = Counter(
    "longtide_broker_retention_deleted_bytes", "Bytes of the record batches deleted for retention.", ["topic"]
)


def deletable(batches: Sequence[tuple[int, float]], floor: int, cutoff: float) -> list[int]:
    """Base offsets of the batches to delete, from (base offset, modification time) pairs: those
    whose records all lie below `floor` (the next batch starts at or below it) and that were
    written before `cutoff`. The last batch always stays."""
    ordered = sorted(batches)
    out = []
    for (base, mtime), (next_base, _) in zip(ordered, ordered[1:], strict=False):
        if next_base > floor:
            break
        if mtime < cutoff:
            out.append(base)
    return out


def floors(
    committed: Mapping[str, Mapping[Partition, int]], readers: Sequence[str], partitions: Sequence[int], topic: str
) -> dict[int, int]:
    """Per partition of `topic`, the lowest offset `readers` (consumer groups) have committed
    there (`committed`: group -> its committed offsets); 0 where one of them has committed
    nothing. No readers: empty (nothing may go)."""
    if not readers:
        return {}
    return {p: min(committed.get(group, {}).get((topic, p), 0) for group in readers) for p in partitions}


class LogJanitor:
    def __init__(
        self,
        streams: StreamsConfig,
        store: EmbeddedS3,
        bucket: str,
        readers: Mapping[str, Sequence[str]],
        *,
        cluster: str = CLUSTER,
    ) -> None:
        wanted = {t: ms for t, ms in streams.retention_ms.items() if ms != -1}
        for topic in sorted(set(wanted) - set(readers)):
            log.warning(
                "streams.retention_ms[%r] is not applied on the embedded log: its readers re-read it from "
                "before their committed offsets (retention applies to %s)",
                topic,
                ", ".join(sorted(readers)),
            )
        self.retention_ms = {t: ms for t, ms in wanted.items() if t in readers}
        self.readers = {t: tuple(groups) for t, groups in readers.items()}
        self.streams = streams
        self.store = store
        self.fs = store.filesystem()
        self.root = f"{bucket}/clusters/{cluster}/topics"
        self._reader: OffsetReader | None = None

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """Delete what retention allows; batches deleted per topic."""
        if not self.retention_ms:
            return {}
        now = time.time() if now is None else now
        if self._reader is None:
            self._reader = OffsetReader(self.streams, client_id="longtide-retention")
        try:
            known = set(consumer_groups(self.streams))
            groups = {g for topic in self.retention_ms for g in self.readers[topic]} & known
            committed = {g: self._reader.committed(g) for g in groups}
        except Exception:
            self.close()  # a fresh connection next time: a broken one would fail every sweep
            raise
        deleted = {}
        for topic, ms in sorted(self.retention_ms.items()):
            deleted[topic] = self._sweep_topic(topic, committed, now - ms / 1000)
        return deleted

    def _sweep_topic(self, topic: str, committed: Mapping[str, Mapping[Partition, int]], cutoff: float) -> int:
        selector = pafs.FileSelector(f"{self.root}/{topic}/partitions", allow_not_found=True, recursive=True)
        by_partition: dict[int, dict[int, pafs.FileInfo]] = {}
        for info in self.fs.get_file_info(selector):
            parts = info.path.split("/")
            if info.type != pafs.FileType.File or parts[-2] != "records" or not parts[-1].endswith(".batch"):
                continue
            by_partition.setdefault(int(parts[-3]), {})[int(parts[-1].removesuffix(".batch"))] = info
        lowest = floors(committed, self.readers[topic], sorted(by_partition), topic)
        count = 0
        for partition, batches in sorted(by_partition.items()):
            pairs = [(base, info.mtime.timestamp()) for base, info in batches.items()]
            doomed = deletable(pairs, lowest.get(partition, 0), cutoff)
            for base in doomed:
                self.store.delete(batches[base].path)  # already gone (a sweep cut short): fine
                DELETED_BYTES.labels(topic).inc(batches[base].size or 0)
            count += len(doomed)
        if count:
            DELETED_BATCHES.labels(topic).inc(count)
            log.info("retention: deleted %d batches of %s", count, topic)
        return count

    def run(self, stop: threading.Event, every_s: float = SWEEP_EVERY_S) -> None:
        """Sweep every `every_s` until `stop` is set (a thread's target); a failed sweep (the store
        or the broker restarting) is logged and tried again at the next."""
        try:
            while not stop.wait(every_s):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - retention must outlive a restart of the log
                    log.exception("retention sweep failed; trying again in %.0f s", every_s)
        finally:
            self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
