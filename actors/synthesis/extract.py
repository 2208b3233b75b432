"""Facts from any document: (subject, relation, object) with the document and span they came from.

One interface, `extract(doc_id, text, tables)`, over four extractors:
- `world_facts`: the synthetic world's sentences ("bako color teal .");
- `key_value_facts`: "Key: Value" lines, the subject being the heading above them
  ("has Key");
- `table_facts`: a table row's first text cell as the subject, each other column as a
  relation ("Pier Seven", "has Opened", "2014");
- `prose_facts`: rule-based open extraction over spaCy's tokenizer and sentencizer (a blank
  English pipeline: nothing is downloaded, and no English model with a tagger or parser is
  installable here), keeping only high-precision patterns.

Prose extraction and its measured precision: `actors/synthesis/prose.py`.
"""

from __future__ import annotations

import re

from actors.synthesis.facts import Fact, world_sentences
from actors.synthesis.prose import MONTHS, prose_facts
from actors.synthesis.tables import Table, parse_number
from actors.world import RELATIONS

__all__ = ["Fact", "extract", "key_value_facts", "prose_facts", "table_facts", "world_facts"]

_KEY_VALUE = re.compile(r"^\s*(?:[-*]\s+)?([A-Z][\w ()/%$-]{0,40}?)\s*:\s+(\S.{0,80}?)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_DATE = re.compile(  # "6 June 1523", "June 1523", "June 6, 1523": a date, not the quantity 6
    rf"^(?:\d{{1,2}} )?(?:{'|'.join(MONTHS)})(?: \d{{1,2}},)? \d{{3,4}}\b", re.IGNORECASE
)


def world_facts(doc_id: str, text: str) -> list[Fact]:
    out, position = [], 0
    for fact in world_sentences(text):
        start = text.find(fact.sentence(), position)
        end = start + len(fact.sentence()) if start >= 0 else 0
        position = max(position, end)
        kind = "entity" if fact.relation in RELATIONS else "value"  # boss, friend: another entity
        out.append(Fact(fact.subject, fact.relation, fact.object, doc_id, max(start, 0), end, kind, "world"))
    return out


def key_value_facts(doc_id: str, text: str) -> list[Fact]:
    out: list[Fact] = []
    subject, offset = "", 0
    for line in text.splitlines(keepends=True):
        heading = _HEADING.match(line.strip())
        if heading:
            subject = heading.group(1)
        elif subject and "|" not in line and (match := _KEY_VALUE.match(line.rstrip("\n"))):
            key, value = match.group(1).strip(), match.group(2).strip()
            kind = (
                "date" if _DATE.match(value) else "quantity" if parse_number(value.split()[0]) is not None else "value"
            )
            out.append(Fact(subject, f"has {key}", value, doc_id, offset, offset + len(line), kind, "key_value"))
        offset += len(line)
    return out


def table_facts(tables: list[Table]) -> list[Fact]:
    out: list[Fact] = []
    for table in tables:
        key = next((c for c in range(len(table.columns)) if all(parse_number(r[c]) is None for r in table.rows)), None)
        if key is None or len({r[key] for r in table.rows}) != len(table.rows):
            continue  # no column names the rows uniquely: no subjects
        for row in table.rows:
            for c, cell in enumerate(row):
                if c != key and cell:
                    kind = "quantity" if parse_number(cell) is not None else "value"
                    relation = f"has {table.columns[c]}"
                    out.append(Fact(row[key], relation, cell, table.doc_id, *table.span, kind, "table"))
    return out


def extract(doc_id: str, text: str, tables: list[Table]) -> list[Fact]:
    """Every extractor's facts, once each (same subject, relation and object)."""
    facts = world_facts(doc_id, text) + key_value_facts(doc_id, text) + table_facts(tables) + prose_facts(doc_id, text)
    seen: set[tuple[str, str, str]] = set()
    out = []
    for fact in facts:
        key = (fact.subject, fact.relation, fact.object)
        if key not in seen:
            seen.add(key)
            out.append(fact)
    return out
