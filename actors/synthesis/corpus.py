"""The synthesis actor's store: documents and their tables per collection, in SQLite on disk.

Memory stays bounded however large a collection grows: documents (for context assembly) and
table rows live in one SQLite file. Tables of one collection with the same columns are merged
into one SQL table (`t_<hash>`: `doc_id`, the cells `c0..cN` as written and their numbers
`n0..nN`, NULL where a cell is not a number), which the numerical composer's SQL runs against
for the gold answer.

The store can always be rebuilt: it holds nothing that the `docs` topic does not, and it
records the `docs` offsets its documents reach (`applied`), so the synthesis actor re-reads
exactly the stretch a lost or stale store is missing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from actors.synthesis.extract import Fact
from actors.synthesis.numeric import CorpusTable
from actors.synthesis.tables import Table, parse_number
from actors.world import Fact as WorldFact

TOTAL_ROW = re.compile(r"^\s*(grand\s+)?(total|sum|all|overall)\s*:?\s*$", re.IGNORECASE)
"""A row that sums the others: not data (counted twice otherwise)."""


def _table_name(collection: str, title: str, columns: tuple[str, ...]) -> str:
    """Tables merge when collection, title and columns all match."""
    digest = hashlib.sha256(json.dumps([collection, title.casefold(), list(columns)]).encode()).hexdigest()[:16]
    return f"t_{digest}"


def random_order(rng: random.Random, n: int) -> Iterator[int]:
    """0..n−1 in a uniformly random order, drawn lazily: Fisher–Yates over a sparse swap table,
    O(1) per index, so a context that needs 40 of 100,000 documents shuffles 40."""
    swapped: dict[int, int] = {}
    for i in range(n):
        j = rng.randrange(i, n)
        yield swapped.get(j, j)
        swapped[j] = swapped.get(i, i)


def entity_key(name: str) -> str:
    """Entity names that merge: case and spacing do not matter."""
    return " ".join(name.casefold().split())


def title_signature(title: str) -> str:
    """Tables with this title, in any collection (a question names tables by title)."""
    return "title:" + " ".join(title.casefold().split())


def signature(columns: tuple[str, ...]) -> str:
    """Tables with these columns, in any collection (a distractor must not hold one)."""
    return hashlib.sha256(json.dumps(list(columns)).encode()).hexdigest()[:16]


class Corpus:
    """Documents and merged tables per collection (`path`: a file, or ':memory:' in tests)."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")  # one fsync per checkpoint, not per commit:
        self.db.execute("PRAGMA synchronous = NORMAL")  # a crash loses at most what docs re-reads
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS docs (
                doc_id TEXT PRIMARY KEY, collection TEXT NOT NULL, text TEXT NOT NULL, n_tokens INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS docs_collection ON docs (collection);
            CREATE TABLE IF NOT EXISTS doc_tables (doc_id TEXT NOT NULL, signature TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS doc_tables_signature ON doc_tables (signature);
            CREATE TABLE IF NOT EXISTS table_spans (
                doc_id TEXT NOT NULL, signature TEXT NOT NULL, start INTEGER NOT NULL, end_ INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS table_spans_doc ON table_spans (doc_id);
            CREATE TABLE IF NOT EXISTS facts (
                collection TEXT NOT NULL, subject TEXT NOT NULL, subject_key TEXT NOT NULL, relation TEXT NOT NULL,
                object TEXT NOT NULL, object_key TEXT NOT NULL, kind TEXT NOT NULL, doc_id TEXT NOT NULL,
                start INTEGER NOT NULL, end_ INTEGER NOT NULL, extractor TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS facts_subject ON facts (collection, subject_key, relation);
            CREATE INDEX IF NOT EXISTS facts_any_subject ON facts (subject_key, relation);
            CREATE INDEX IF NOT EXISTS facts_relation ON facts (relation, object_key);
            CREATE INDEX IF NOT EXISTS facts_doc ON facts (doc_id);
            CREATE INDEX IF NOT EXISTS facts_collection ON facts (collection);
            CREATE TABLE IF NOT EXISTS log_offsets (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                PRIMARY KEY (topic, partition));
            CREATE TABLE IF NOT EXISTS corpus_tables (
                name TEXT PRIMARY KEY, collection TEXT NOT NULL, title TEXT NOT NULL, columns TEXT NOT NULL);
            """
        )
        self._ids: list[str] | None = None
        """Every document id, sorted (for fillers; dropped when a document arrives)."""
        self._world_collections: list[tuple[str, int]] | None = None
        """Collections with synthetic-world facts, in arrival order (`world_collections`)."""

    def applied(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the offset up to which every document is in the store."""
        rows = self.db.execute("SELECT partition, next_offset FROM log_offsets WHERE topic = ?", (topic,))
        return dict(rows.fetchall())

    def mark_applied(self, offsets: dict[tuple[str, int], int]) -> None:
        """Record that the documents below these (topic, partition) offsets are stored."""
        with self.db:
            self.db.executemany(
                "INSERT INTO log_offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition)"
                " DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                [(t, p, o) for (t, p), o in offsets.items()],
            )

    def has_document(self, doc_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM docs WHERE doc_id = ?", (doc_id,)).fetchone() is not None

    def add_document(
        self, doc_id: str, collection: str, text: str, n_tokens: int, tables: list[Table], facts: list[Fact] = ()
    ) -> None:
        """Store a document, merge its tables into its collection's corpus tables and its facts
        into the collection's graph (once per document)."""
        if self.has_document(doc_id):
            return
        self._ids = None
        with self.db:
            self.db.execute("INSERT INTO docs VALUES (?, ?, ?, ?)", (doc_id, collection, text, n_tokens))
            for table in tables:
                self._merge(collection, table)
            self.db.executemany(
                "INSERT INTO facts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (collection, f.subject, entity_key(f.subject), f.relation, f.object, entity_key(f.object))
                    + (f.kind, f.doc_id, f.start, f.end, f.extractor)
                    for f in facts
                ],
            )
        known = self._world_collections
        if known is not None and any(f.extractor == "world" for f in facts) and collection not in dict(known):
            start = self.db.execute(
                "SELECT MIN(rowid) FROM facts WHERE collection = ? AND extractor = 'world'", (collection,)
            ).fetchone()[0]
            known.append((collection, start))

    def facts(self, collection: str, window: int | None = None, rng: random.Random | None = None) -> list[Fact]:
        """The collection's graph: every fact, in the order documents arrived; with `window`, a
        stretch of at most that many of them starting at a point drawn from `rng` (what a task
        is composed over stays bounded however large the collection grows)."""
        offset = 0
        if window is not None:
            (total,) = self.db.execute("SELECT COUNT(*) FROM facts WHERE collection = ?", (collection,)).fetchone()
            offset = (rng or random.Random(0)).randrange(total - window + 1) if total > window else 0
        rows = self.db.execute(
            "SELECT subject, relation, object, doc_id, start, end_, kind, extractor FROM facts WHERE collection = ?"
            " ORDER BY rowid LIMIT ? OFFSET ?",
            (collection, -1 if window is None else window, offset),
        )
        return [Fact(*row) for row in rows]

    def world_facts(self, collection: str) -> dict[WorldFact, str]:
        """The collection's synthetic-world facts → the first document stating each."""
        rows = self.db.execute(
            "SELECT subject, relation, object, doc_id FROM facts WHERE collection = ? AND extractor = 'world'"
            " ORDER BY rowid",
            (collection,),
        )
        out: dict[WorldFact, str] = {}
        for subject, relation, obj, doc_id in rows:
            out.setdefault(WorldFact(subject, relation, obj), doc_id)
        return out

    def world_collections(self, before_doc: str) -> list[str]:
        """Collections whose synthetic-world facts began before document `before_doc`'s facts, in
        arrival order: the same answer however often the document is handled again (the
        collection list is read from the store once, then kept current by `add_document`)."""
        if self._world_collections is None:
            rows = self.db.execute(
                "SELECT collection, MIN(rowid) FROM facts WHERE extractor = 'world' GROUP BY collection ORDER BY 2"
            )
            self._world_collections = list(rows)
        first = self.db.execute("SELECT MIN(rowid) FROM facts WHERE doc_id = ?", (before_doc,)).fetchone()[0]
        return [c for c, start in self._world_collections if first is not None and start < first]

    def collections(self) -> int:
        return self.db.execute("SELECT COUNT(DISTINCT collection) FROM docs").fetchone()[0]

    def objects(
        self, subject: str, relation: str, collection: str | None = None, doc_ids: Sequence[str] | None = None
    ) -> list[str]:
        """Distinct objects of (subject, relation) in `collection`, or in every collection (any
        document can be a distractor), or in the documents `doc_ids` (those of one context);
        entity names merged by key."""
        where, params = "subject_key = ? AND relation = ?", [entity_key(subject), relation]
        if collection is not None:
            where, params = where + " AND collection = ?", [*params, collection]
        rows = self.db.execute(f"SELECT object_key, object, doc_id FROM facts WHERE {where} ORDER BY rowid", params)
        within = None if doc_ids is None else set(doc_ids)  # (a long context: more ids than SQL parameters)
        found: dict[str, str] = {}
        for key, obj, doc_id in rows:
            if within is None or doc_id in within:
                found[key] = min(found.get(key, obj), obj)
        return [found[k] for k in sorted(found)]

    def holding(self, pairs: Iterable[tuple[str, str]]) -> set[str]:
        """The documents stating anything about one of these (subject, relation) pairs: a
        distractor among them could contradict a step of a question that asks about it."""
        found: set[str] = set()
        for subject, relation in pairs:
            rows = self.db.execute(
                "SELECT DISTINCT doc_id FROM facts WHERE subject_key = ? AND relation = ?",
                (entity_key(subject), relation),
            )
            found |= {d for (d,) in rows}
        return found

    def table_spans(self, texts: Mapping[str, str], columns: tuple[str, ...]) -> tuple[str, ...]:
        """The text of every table with `columns` in these documents (doc id → its text, as the
        caller already read it), in their order."""
        spans = []
        for doc_id, text in texts.items():
            rows = self.db.execute(
                "SELECT start, end_ FROM table_spans WHERE doc_id = ? AND signature = ? ORDER BY start",
                (doc_id, signature(columns)),
            )
            spans += [text[start:end] for start, end in rows if end > start]
        return tuple(dict.fromkeys(spans))

    def subjects(self, relation: str, obj: str) -> list[str]:
        """Distinct subjects with this (relation, object) in every collection (names merged by key)."""
        rows = self.db.execute(
            "SELECT subject_key, MIN(subject) FROM facts WHERE relation = ? AND object_key = ? GROUP BY subject_key",
            (relation, entity_key(obj)),
        )
        return [subject for _, subject in rows]

    def _merge(self, collection: str, table: Table) -> None:
        name = _table_name(collection, table.title, table.columns)
        self.db.executemany(
            "INSERT INTO doc_tables VALUES (?, ?)",
            [(table.doc_id, signature(table.columns)), (table.doc_id, title_signature(table.title))],
        )
        self.db.execute(
            "INSERT INTO table_spans VALUES (?, ?, ?, ?)", (table.doc_id, signature(table.columns), *table.span)
        )
        n = len(table.columns)
        cells = ", ".join(f"c{i} TEXT, n{i} REAL" for i in range(n))
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {name} (doc_id TEXT NOT NULL, {cells})")
        self.db.execute(
            "INSERT OR IGNORE INTO corpus_tables VALUES (?, ?, ?, ?)",
            (name, collection, table.title, json.dumps(list(table.columns))),
        )
        marks = ", ".join("?" for _ in range(1 + 2 * n))
        self.db.executemany(
            f"INSERT INTO {name} VALUES ({marks})",
            [
                (table.doc_id, *[v for cell in row for v in (cell, parse_number(cell))])
                for row in table.rows
                if not any(TOTAL_ROW.match(cell) for cell in row)
            ],
        )

    def tables(self, collection: str) -> list[CorpusTable]:
        """Every merged table of `collection`."""
        out = []
        for name, title, columns in self.db.execute(
            "SELECT name, title, columns FROM corpus_tables WHERE collection = ? ORDER BY name", (collection,)
        ):
            cols = tuple(json.loads(columns))
            picked = ", ".join(f"c{i}" for i in range(len(cols)))
            rows = self.db.execute(f"SELECT doc_id, {picked} FROM {name} ORDER BY rowid").fetchall()
            out.append(CorpusTable(name, title, cols, tuple(tuple(r[1:]) for r in rows), tuple(r[0] for r in rows)))
        return out

    def scalar(self, sql: str, params: list[object]) -> float | None:
        """The single value a query returns."""
        row = self.db.execute(sql, params).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def texts(self, doc_ids: list[str]) -> list[str]:
        found = dict(
            self.db.execute(
                f"SELECT doc_id, text FROM docs WHERE doc_id IN ({', '.join('?' for _ in doc_ids)})", doc_ids
            ).fetchall()
        )
        return [found[d] for d in doc_ids]

    def sized_texts(self, doc_ids: Iterable[str], batch: int = 256) -> Iterator[tuple[str, int]]:
        """(text, token count) of each document in order, fetched `batch` at a time."""
        ids = iter(doc_ids)
        while chunk := list(itertools.islice(ids, batch)):
            marks = ", ".join("?" for _ in chunk)
            found = {
                d: (t, n)
                for d, t, n in self.db.execute(
                    f"SELECT doc_id, text, n_tokens FROM docs WHERE doc_id IN ({marks})", chunk
                )
            }
            yield from (found[d] for d in chunk)

    def fillers(
        self,
        rng: random.Random,
        exclude: set[str],
        columns: tuple[str, ...] | None = None,
        title: str = "",
        clash: AbstractSet[str] = frozenset(),
    ) -> Iterator[str]:
        """Every other document (any collection) in a seeded random order, drawn lazily; none
        holding a table with `columns` or titled `title`, whose rows a reader could not tell
        from the evidence's, and none in `clash`."""
        skip = exclude | clash
        if columns is not None:
            keys = [signature(columns)] + ([title_signature(title)] if title.strip() else [])
            marks = ", ".join("?" for _ in keys)
            skip |= {d for (d,) in self.db.execute(f"SELECT doc_id FROM doc_tables WHERE signature IN ({marks})", keys)}
        if self._ids is None:
            self._ids = [d for (d,) in self.db.execute("SELECT doc_id FROM docs ORDER BY doc_id")]
        ids = self._ids
        return (ids[i] for i in random_order(rng, len(ids)) if ids[i] not in skip)

    def close(self) -> None:
        self.db.close()
