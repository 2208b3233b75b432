"""Difficulty from the policy's own attempts, and retrospective sampling of tasks that stayed hard.

Once a policy is training, every task comes back on `scored` as one group of G samples. The
synthesis actor reads those groups too:
- `pass_at_k` (the unbiased estimator of Chen et al. 2021, from c correct of n samples) and a
  bin by the group's pass rate: 'unsolved' (none correct), 'hard' (under half), 'medium',
  'solved' (all); counted per task type;
- a task none of whose samples was correct is re-published on `tasks`
  `retry_after_versions` policy versions later (QwenLong-L1.5's retrospective sampling), as a
  new task id (so deduplication downstream does not drop it), at most `max_retries` times
  counting from the original.

`Retrospect` keeps what it needs in the synthesis store's SQLite file: each published task's
record (bounded to the newest `keep_tasks`) and the schedule of retries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import sqlite3
from dataclasses import dataclass

from schemas import SchemaError, ScoredRollout, Task, decode, encode, now_ms

log = logging.getLogger(__name__)

BINS = ("unsolved", "hard", "medium", "solved")
CORRECT = 1.0 - 1e-9
"""A sample counts as correct at full reward (partial credit does not)."""


@dataclass(frozen=True)
class RetrospectConfig:
    """Pass@k binning and retrospective sampling, from the scored groups."""

    enabled: bool = True
    """Read `scored`: bin tasks by pass rate and re-publish the unsolved ones."""
    pass_k: tuple[int, ...] = (1, 4)
    """k of the pass@k gauges (each at most the group size)."""
    retry_after_versions: int = 50
    """Policy versions between an unsolved group and its task's re-publication."""
    max_retries: int = 1
    """Re-publications of one task at most (0: bin only)."""
    keep_tasks: int = 200_000
    """Published task records kept for re-publication (the oldest are forgotten)."""

    def __post_init__(self) -> None:
        if not self.pass_k or min(self.pass_k) < 1:
            raise ValueError(f"synthesis.retrospect.pass_k ({self.pass_k}) must be k values >= 1")
        if self.retry_after_versions < 1 or self.max_retries < 0 or self.keep_tasks < 1:
            raise ValueError(
                "synthesis.retrospect: retry_after_versions and keep_tasks must be >= 1 and max_retries >= 0, got "
                f"{self.retry_after_versions}, {self.keep_tasks}, {self.max_retries}"
            )


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct), c correct:
    1 − C(n−c, k) / C(n, k). k > n is clamped to n."""
    k = min(k, n)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def bin_of(n: int, c: int) -> str:
    if c == 0:
        return "unsolved"
    if c == n:
        return "solved"
    return "hard" if c / n < 0.5 else "medium"


def retry_id(task_id: str, attempt: int) -> str:
    return hashlib.sha256(f"{task_id}\0retry\0{attempt}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Outcome:
    task_type: str
    n: int
    correct: int
    bin: str
    version: int


class Retrospect:
    """Task records, their outcomes and the retry schedule, in the store's database."""

    def __init__(self, db: sqlite3.Connection, config: RetrospectConfig) -> None:
        self.db, self.config = db, config
        self.unreadable = 0
        """Stored tasks an older build wrote in another schema, dropped instead of re-published."""
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS published (
                task_id TEXT PRIMARY KEY, origin TEXT NOT NULL, attempt INTEGER NOT NULL, record BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS retries (
                origin TEXT NOT NULL, attempt INTEGER NOT NULL, due_version INTEGER NOT NULL,
                PRIMARY KEY (origin, attempt));
            CREATE INDEX IF NOT EXISTS retries_due ON retries (due_version);
            """
        )

    def remember(self, tasks: list[Task], origin: str = "", attempt: int = 0) -> None:
        """Keep the records of `tasks` (one transaction), forgetting beyond `keep_tasks`."""
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO published VALUES (?, ?, ?, ?)",
                [(t.task_id, origin or t.task_id, attempt, encode([t])) for t in tasks],
            )
            newest = self.db.execute("SELECT MAX(rowid) FROM published").fetchone()[0] or 0
            if self.db.execute("DELETE FROM published WHERE rowid <= ?", (newest - self.config.keep_tasks,)).rowcount:
                self.db.execute("DELETE FROM retries WHERE origin NOT IN (SELECT task_id FROM published)")

    def outcome(self, group: list[ScoredRollout]) -> Outcome:
        """Score the group; schedule its task again when no sample was correct. A sample is a
        trajectory: a memory-agent group's reading turns are not counted."""
        finals = [r for r in group if r.final]
        n, c = len(finals), sum(r.reward >= CORRECT for r in finals)
        version = max(r.policy_version for r in group)
        found = self.db.execute("SELECT origin, attempt FROM published WHERE task_id = ?", (group[0].task_id,))
        row = found.fetchone()
        if c == 0 and row is not None and row[1] < self.config.max_retries:
            with self.db:
                self.db.execute(
                    "INSERT OR IGNORE INTO retries VALUES (?, ?, ?)",
                    (row[0], row[1] + 1, version + self.config.retry_after_versions),
                )
        return Outcome(group[0].task_type, n, c, bin_of(n, c), version)

    def due(self, version: int) -> list[Task]:
        """The tasks due again at policy `version`, as new tasks (remembered as retries)."""
        rows = self.db.execute(
            "SELECT r.origin, r.attempt, p.record FROM retries r JOIN published p ON p.task_id = r.origin"
            " WHERE r.due_version <= ?",
            (version,),
        ).fetchall()
        out = []
        for origin, attempt, record in rows:
            with self.db:
                self.db.execute("DELETE FROM retries WHERE origin = ? AND attempt = ?", (origin, attempt))
            try:
                [task] = decode(record, Task)
            except SchemaError as exc:  # stored by an older build (another schema): not retried
                log.warning("retrospect: task %s stored in another schema, not re-published: %s", origin, exc)
                self.unreadable += 1
                continue
            again = dataclasses.replace(task, task_id=retry_id(origin, attempt), produced_at=now_ms())
            self.remember([again], origin=origin, attempt=attempt)
            out.append(again)
        return out
