"""The memory actor's store (SQLite): each collection's memories, every document read (with its
text, so a question asked later can read the collection from its start), the questions users
asked and how far each has read, and how far along `docs` the memories are.

One transaction per document: its memories, its row in `reads` and the new `docs` offset are
written together, so after a crash the store says exactly which documents its memories hold and
the actor resumes after them (the consumer group's committed offsets may lag behind it). A
question catching up advances one document per transaction the same way.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Memory:
    """One collection's memory for one question."""

    collection: str
    question: str
    text: str
    revision: int
    """Times written: one per document read."""
    policy_version: int
    """The policy that last wrote it (-1: the base model)."""
    docs_covered: int
    last_doc_id: str


@dataclass(frozen=True)
class StoredDocument:
    """A document read, as kept for questions asked later: its place in the collection and on `docs`."""

    collection: str
    seq: int
    """Its place in the collection's reading order (0, 1, ...)."""
    doc_id: str
    text: str
    """The text, or "" when it lives in the blob store under `text_ref`."""
    text_ref: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Pending:
    """A question asked of a collection whose memory has not read all of the collection yet."""

    collection: str
    question: str
    read: int
    """Documents of the collection its memory has read (the next one's `seq`)."""
    total: int


class MemoryStore:
    """Thread-safe (the query endpoint reads and registers questions while the actor writes)."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS memories (
                collection TEXT NOT NULL, question TEXT NOT NULL, text TEXT NOT NULL,
                revision INTEGER NOT NULL, policy_version INTEGER NOT NULL,
                docs_covered INTEGER NOT NULL, last_doc_id TEXT NOT NULL, updated_at REAL NOT NULL DEFAULT 0,
                PRIMARY KEY (collection, question));
            CREATE TABLE IF NOT EXISTS reads (
                collection TEXT NOT NULL, doc_id TEXT NOT NULL, partition INTEGER NOT NULL,
                offset INTEGER NOT NULL, policy_version INTEGER NOT NULL, read_at REAL NOT NULL,
                seq INTEGER NOT NULL DEFAULT 0, text TEXT NOT NULL DEFAULT '', text_ref TEXT NOT NULL DEFAULT '');
            CREATE TABLE IF NOT EXISTS applied (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS asked (
                collection TEXT NOT NULL, question TEXT NOT NULL, asked_at REAL NOT NULL, read INTEGER NOT NULL,
                PRIMARY KEY (collection, question));
            """
        )
        self._migrate()
        self.db.execute("CREATE INDEX IF NOT EXISTS reads_place ON reads (collection, seq)")

    def _migrate(self) -> None:
        """A store from before documents kept their texts (a run resumed across the upgrade): the
        columns are added; its old documents have no text, so a question asked later reads
        them as empty and passes over them."""
        for table, column, kind in (
            ("memories", "updated_at", "REAL NOT NULL DEFAULT 0"),
            ("reads", "seq", "INTEGER NOT NULL DEFAULT 0"),
            ("reads", "text", "TEXT NOT NULL DEFAULT ''"),
            ("reads", "text_ref", "TEXT NOT NULL DEFAULT ''"),
        ):
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                with self.db:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    if column == "seq":  # each old document's place in its collection, in reading order
                        self.db.execute(
                            "UPDATE reads SET seq = (SELECT COUNT(*) FROM reads r"
                            " WHERE r.collection = reads.collection AND r.rowid < reads.rowid)"
                        )

    def applied(self) -> dict[int, int]:
        """Per `docs` partition, the offset every document before which has been read."""
        with self.lock:
            return dict(self.db.execute("SELECT partition, next_offset FROM applied"))

    def memories(self, collection: str) -> dict[str, Memory]:
        """The collection's memories by question ({} for a collection never read)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT collection, question, text, revision, policy_version, docs_covered, last_doc_id"
                " FROM memories WHERE collection = ?",
                (collection,),
            ).fetchall()
        return {row[1]: Memory(*row) for row in rows}

    def collections(self) -> list[str]:
        with self.lock:
            return [c for (c,) in self.db.execute("SELECT DISTINCT collection FROM reads ORDER BY collection")]

    def documents(self, collection: str, limit: int = 1000) -> tuple[int, list[str]]:
        """How many documents of `collection` have been read, and the latest `limit` ids."""
        with self.lock:
            total = self.db.execute("SELECT COUNT(*) FROM reads WHERE collection = ?", (collection,)).fetchone()[0]
            rows = self.db.execute(
                "SELECT doc_id FROM reads WHERE collection = ? ORDER BY seq DESC LIMIT ?", (collection, limit)
            )
            return total, [d for (d,) in rows][::-1]

    def reads(self) -> list[tuple[str, str, int, int]]:
        """Every read as (collection, doc_id, partition, offset), in order (what tests count)."""
        with self.lock:
            return list(self.db.execute("SELECT collection, doc_id, partition, offset FROM reads ORDER BY rowid"))

    def record(
        self,
        memories: Sequence[Memory],
        *,
        doc_id: str,
        partition: int,
        offset: int,
        policy_version: int,
        text: str = "",
        text_ref: str = "",
    ) -> None:
        """One document read: its collection's new memories, the read (with the document's text
        or blob reference, for questions asked later), the offset, together."""
        now = time.time()
        with self.lock, self.db:
            self._write(memories, now)
            collection = memories[0].collection
            seq = self.db.execute("SELECT COUNT(*) FROM reads WHERE collection = ?", (collection,)).fetchone()[0]
            self.db.execute(
                "INSERT INTO reads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (collection, doc_id, partition, offset, policy_version, now, seq, text, text_ref),
            )
            self._passed(partition, offset)
            for question in {m.question for m in memories}:  # an asked question caught up reads along
                self.db.execute(
                    "UPDATE asked SET read = read + 1 WHERE collection = ? AND question = ? AND read = ?",
                    (collection, question, seq),
                )

    def passed(self, partition: int, offset: int) -> None:
        """A `docs` record dead-lettered: reading resumes after it."""
        with self.lock, self.db:
            self._passed(partition, offset)

    def _passed(self, partition: int, offset: int) -> None:
        self.db.execute(
            "INSERT INTO applied VALUES (?, ?) ON CONFLICT (partition) DO UPDATE"
            " SET next_offset = max(next_offset, excluded.next_offset)",
            (partition, offset + 1),
        )

    def _write(self, memories: Sequence[Memory], now: float) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO memories VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (m.collection, m.question, m.text, m.revision, m.policy_version, m.docs_covered, m.last_doc_id, now)
                for m in memories
            ],
        )

    def read_count(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM reads").fetchone()[0]

    # -- questions asked through the query API -----------------------------------------------
    def ask(self, collection: str, question: str, limit: int) -> bool:
        """Register `question` for `collection` (its memory will read the collection from the
        start); False when the collection already has `limit` asked questions."""
        with self.lock, self.db:
            if self.db.execute(
                "SELECT 1 FROM asked WHERE collection = ? AND question = ?", (collection, question)
            ).fetchone():
                return True
            count = self.db.execute("SELECT COUNT(*) FROM asked WHERE collection = ?", (collection,)).fetchone()[0]
            if count >= limit:
                return False
            self.db.execute("INSERT INTO asked VALUES (?, ?, ?, 0)", (collection, question, time.time()))
            return True

    def asked(self, collection: str) -> dict[str, int]:
        """The questions asked of `collection`, each with how many of its documents it has read."""
        with self.lock:
            return dict(self.db.execute("SELECT question, read FROM asked WHERE collection = ?", (collection,)))

    def pending(self, limit: int) -> list[Pending]:
        """Asked questions whose memory has not read every document of their collection yet,
        longest-waiting first (at most `limit`)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT a.collection, a.question, a.read, (SELECT COUNT(*) FROM reads r WHERE r.collection = a.collection)"
                " AS total FROM asked a WHERE a.read < total ORDER BY a.asked_at LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(*row) for row in rows]

    def document(self, collection: str, seq: int) -> StoredDocument:
        with self.lock:
            row = self.db.execute(
                "SELECT doc_id, text, text_ref, partition, offset FROM reads WHERE collection = ? AND seq = ?",
                (collection, seq),
            ).fetchone()
        return StoredDocument(collection, seq, *row)

    def advance(self, memory: Memory, read: int) -> None:
        """An asked question's memory after reading its collection's document `read` - 1."""
        with self.lock, self.db:
            self._write([memory], time.time())
            self.db.execute(
                "UPDATE asked SET read = ? WHERE collection = ? AND question = ?",
                (read, memory.collection, memory.question),
            )

    def advance_past(self, pending: Pending) -> None:
        """An asked question passes over a document it cannot read again (its memory unchanged)."""
        with self.lock, self.db:
            self.db.execute(
                "UPDATE asked SET read = ? WHERE collection = ? AND question = ?",
                (pending.read + 1, pending.collection, pending.question),
            )

    def progress(self) -> list[tuple[str, int, int, float]]:
        """Per collection: documents read, reads its asked questions still owe, and when its
        memories last changed (epoch seconds)."""
        with self.lock:
            read = dict(self.db.execute("SELECT collection, COUNT(*) FROM reads GROUP BY collection"))
            asked = {
                c: (n, done)
                for c, n, done in self.db.execute(
                    "SELECT collection, COUNT(*), SUM(read) FROM asked GROUP BY collection"
                )
            }
            updated = dict(self.db.execute("SELECT collection, MAX(updated_at) FROM memories GROUP BY collection"))
        return [
            (c, n, n * asked.get(c, (0, 0))[0] - asked.get(c, (0, 0))[1], updated.get(c, 0.0))
            for c, n in sorted(read.items())
        ]

    def close(self) -> None:
        self.db.close()
