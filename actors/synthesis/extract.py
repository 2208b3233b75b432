"""Facts from any document: (subject, relation, object) with the document and span they came from.

One interface, `extract(doc_id, text, tables)`, over four extractors:
- `world_facts`: the synthetic world's sentences ("bako color teal .");
- `key_value_facts`: "Key: Value" lines, the subject being the heading above them
  ("has Key");
- `table_facts`: a table row's first text cell as the subject, each other column as a
  relation ("Pier Seven", "has Opened", "2014");
- `prose_facts`: rule-based open extraction over spaCy's tokenizer and sentencizer (a blank
  English pipeline: nothing is downloaded). Mentions are runs of title-case tokens (entities),
  years with an optional month (dates) and numbers with up to two unit words (quantities);
  a relation is the run of 1–6 lowercase words between a subject entity and the next mention
  in the same sentence ("was designed by"), after a conjunction ("… and is run by") or a
  relative pronoun (", who reports to").

Extraction is conservative: a sentence that does not fit the pattern yields nothing rather
than a guess, and every fact keeps its character span.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from actors.synthesis.facts import extract_facts as world_sentences
from actors.synthesis.tables import Table, parse_number
from actors.world import RELATIONS

MONTHS = frozenset(
    ("january", "february", "march", "april", "may", "june")
    + ("july", "august", "september", "october", "november", "december")
)
_PRONOUNS = frozenset({"it", "he", "she", "they", "we", "i", "you", "there", "here"})
_KEY_VALUE = re.compile(r"^\s*(?:[-*]\s+)?([A-Z][\w ()/%$-]{0,40}?)\s*:\s+(\S.{0,80}?)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_LEADING = frozenset({"the", "its", "their", "his", "her", "a", "an", "this", "that", "in", "on", "at", "by"})
_CLAUSE = frozenset({"who", "which", "that", "and"})


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str
    doc_id: str
    start: int
    end: int
    """Character span of the evidence (sentence, line or table) in the document's text."""
    kind: str = "entity"
    """What the object is: 'entity', 'date', 'quantity' or 'value'."""
    extractor: str = ""


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
            kind = "quantity" if parse_number(value.split()[0]) is not None else "value"
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


@functools.cache
def _nlp():  # noqa: ANN202 - a spaCy Language
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


@dataclass(frozen=True)
class _Mention:
    text: str
    kind: str
    first: int
    """Token index of its first token (in the sentence)."""
    last: int
    """Token index after its last token."""


def _mentions(tokens: list) -> list[_Mention]:  # noqa: C901 - one pass over the tokens
    out: list[_Mention] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        year = tok.like_num and re.fullmatch(r"1[89]\d\d|20\d\d", tok.text)
        month = tok.text.lower() in MONTHS and i + 1 < len(tokens) and re.fullmatch(r"\d{4}", tokens[i + 1].text)
        if month or year:
            j = i + (2 if month else 1)
            out.append(_Mention(" ".join(t.text for t in tokens[i:j]), "date", i, j))
            i = j
        elif tok.like_num:
            j = i + 1
            while j < len(tokens) and j < i + 3 and tokens[j].is_lower and tokens[j].is_alpha and not tokens[j].is_stop:
                j += 1
            out.append(_Mention(" ".join(t.text for t in tokens[i:j]), "quantity", i, j))
            i = j
        elif (tok.is_title or (tok.is_upper and len(tok.text) > 1)) and tok.is_alpha:
            j = i + 1
            while j < len(tokens):
                nxt = tokens[j]
                if nxt.is_title and nxt.is_alpha or (nxt.is_upper and len(nxt.text) > 1 and nxt.is_alpha):
                    j += 1
                elif nxt.text in ("&", "of") and j + 1 < len(tokens) and tokens[j + 1].is_title:
                    j += 2
                else:
                    break
            words = [t.text for t in tokens[i:j]]
            while words and words[0].lower() in _LEADING:
                words, i = words[1:], i + 1
            if words and not (len(words) == 1 and words[0].lower() in _PRONOUNS):
                out.append(_Mention(" ".join(words), "entity", i, j))
            i = j
        else:
            i += 1
    return out


def _relation(between: list) -> str | None:
    """The relation phrase in the tokens between two mentions, or None."""
    words = [t.text.lower() for t in between]
    for cut in (i for i, w in enumerate(words) if w in _CLAUSE):
        words = words[cut + 1 :]  # "… and is run by" → "is run by"; ", who reports to" → "reports to"
        break
    words = [w for w in words if w != ","]
    while words and words[-1] in ("a", "an", "the"):
        words = words[:-1]
    if not 1 <= len(words) <= 6 or not all(w.isalpha() for w in words):
        return None
    if any(w in _CLAUSE for w in words):
        return None
    if all(w in _LEADING for w in words):
        return None
    return " ".join(words)


def _blocks(text: str, limit: int = 100_000) -> list[str]:
    """Paragraphs, those over `limit` characters cut after a sentence's full stop (spaCy takes
    at most 1M characters at once, and a 10 MB document must not stop the actor)."""
    out: list[str] = []
    for block in re.split(r"(\n[ \t]*\n)", text):
        while len(block) > limit:
            stop = block.rfind(". ", 0, limit)
            cut = stop + 2 if stop > 0 else limit
            out.append(block[:cut])
            block = block[cut:]
        out.append(block)
    return out


def _prose(block: str) -> bool:
    """A paragraph of text: not blank, a heading, a table, markup, or mostly unprintable bytes."""
    if not block.strip() or block.lstrip().startswith(("#", "|", "<")) or "|" in block:
        return False
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in block)
    return printable >= 0.95 * len(block)


def prose_facts(doc_id: str, text: str) -> list[Fact]:
    out: list[Fact] = []
    offset = 0
    for block in _blocks(text):
        if _prose(block):
            for sentence in _nlp()(block).sents:
                tokens = [t for t in sentence if not t.is_space]
                mentions = _mentions(tokens)
                for a, b in zip(mentions, mentions[1:], strict=False):
                    relation = _relation(tokens[a.last : b.first]) if a.kind == "entity" else None
                    if relation:
                        start, end = offset + sentence.start_char, offset + sentence.end_char
                        out.append(Fact(a.text, relation, b.text, doc_id, start, end, b.kind, "prose"))
        offset += len(block)
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
