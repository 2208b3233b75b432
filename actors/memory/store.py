"""The memory actor's store (SQLite): each collection's memories, every document read, and how
far along `docs` the memories are.

One transaction per document: its memories, its row in `reads` and the new `docs` offset are
written together, so after a crash the store says exactly which documents its memories hold and
the actor resumes after them (the consumer group's committed offsets may lag behind it).
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
    """One collection's memory for one standing question."""

    collection: str
    question: str
    text: str
    revision: int
    """Times written: one per document read."""
    policy_version: int
    """The policy that last wrote it (-1: the base model)."""
    docs_covered: int
    last_doc_id: str


class MemoryStore:
    """Thread-safe (the query endpoint reads while the actor writes)."""

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
                docs_covered INTEGER NOT NULL, last_doc_id TEXT NOT NULL,
                PRIMARY KEY (collection, question));
            CREATE TABLE IF NOT EXISTS reads (
                collection TEXT NOT NULL, doc_id TEXT NOT NULL, partition INTEGER NOT NULL,
                offset INTEGER NOT NULL, policy_version INTEGER NOT NULL, read_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS reads_collection ON reads (collection);
            CREATE TABLE IF NOT EXISTS applied (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
            """
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
            return [c for (c,) in self.db.execute("SELECT DISTINCT collection FROM memories ORDER BY collection")]

    def documents(self, collection: str, limit: int = 1000) -> tuple[int, list[str]]:
        """How many documents of `collection` have been read, and the latest `limit` ids."""
        with self.lock:
            total = self.db.execute("SELECT COUNT(*) FROM reads WHERE collection = ?", (collection,)).fetchone()[0]
            rows = self.db.execute(
                "SELECT doc_id FROM reads WHERE collection = ? ORDER BY rowid DESC LIMIT ?", (collection, limit)
            )
            return total, [d for (d,) in rows][::-1]

    def reads(self) -> list[tuple[str, str, int, int]]:
        """Every read as (collection, doc_id, partition, offset), in order (what tests count)."""
        with self.lock:
            return list(self.db.execute("SELECT collection, doc_id, partition, offset FROM reads ORDER BY rowid"))

    def record(
        self, memories: Sequence[Memory], *, doc_id: str, partition: int, offset: int, policy_version: int
    ) -> None:
        """One document read: its collection's new memories, the read, the offset, together."""
        with self.lock, self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO memories VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (m.collection, m.question, m.text, m.revision, m.policy_version, m.docs_covered, m.last_doc_id)
                    for m in memories
                ],
            )
            collection = memories[0].collection
            self.db.execute(
                "INSERT INTO reads VALUES (?, ?, ?, ?, ?, ?)",
                (collection, doc_id, partition, offset, policy_version, time.time()),
            )
            self.db.execute("INSERT OR REPLACE INTO applied VALUES (?, ?)", (partition, offset + 1))

    def read_count(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM reads").fetchone()[0]

    def close(self) -> None:
        self.db.close()
