"""Tables in documents: markdown pipe tables, HTML `<table>`s and CSV documents.

Pure parsing, standard library only. Every table keeps its provenance (document, position in
the text, the heading above it). A table that cannot be read as a rectangle (a row with more
or fewer cells than the header, a header without a name) is not guessed at: it is reported as
a problem with its line and left out.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser

_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
MAX_COLUMNS = 200
"""Wider tables are reported, not stored (SQLite allows 2,000 columns; we keep two per cell)."""
_SEPARATOR_CELL = re.compile(r"^:?-+:?$")


@dataclass(frozen=True)
class Table:
    """A rectangular table read from one document."""

    doc_id: str
    title: str
    """The nearest heading above the table (markdown), its caption (HTML), or ''."""
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    """Cell text as written, one tuple per row, as long as `columns`."""
    span: tuple[int, int]
    """Character offsets of the table in the document's text."""


def parse_number(cell: str) -> float | None:
    """'1,840' → 1840.0, '$1,520' → 1520.0, '61%' → 61.0, '-3.5' → -3.5; None for other text."""
    text = cell.strip().removeprefix("$").removesuffix("%").strip()
    if not _NUMBER.match(text):
        return None
    return float(text.replace(",", ""))


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [c.strip() for c in inner.split("|")]


def markdown_tables(doc_id: str, text: str) -> tuple[list[Table], list[str]]:
    """Pipe tables (a header row, a `---` separator row, body rows) and the problems found."""
    tables: list[Table] = []
    problems: list[str] = []
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    title = ""
    i = 0
    while i < len(lines):
        heading = _HEADING.match(lines[i].strip())
        if heading:
            title = heading.group(1)
        is_table = (
            "|" in lines[i]
            and i + 1 < len(lines)
            and "|" in lines[i + 1]
            and all(_SEPARATOR_CELL.match(c) for c in _cells(lines[i + 1]))
        )
        if not is_table:
            i += 1
            continue
        header = _cells(lines[i])
        end = i + 2
        while end < len(lines) and "|" in lines[end] and lines[end].strip():
            end += 1
        body = [_cells(line) for line in lines[i + 2 : end]]
        problem = _rectangle_problem(header, body, first_line=i + 1)
        if problem:
            problems.append(problem)
        else:
            tables.append(Table(doc_id, title, tuple(header), tuple(map(tuple, body)), (starts[i], starts[end])))
        i = end
    return tables, problems


def _rectangle_problem(header: list[str], body: list[list[str]], first_line: int, body_offset: int = 2) -> str | None:
    """Why header + body is not a table (`body_offset`: lines from the header to the first row)."""
    if not body:
        return f"table at line {first_line}: no rows"
    if len(header) > MAX_COLUMNS:
        return f"table at line {first_line}: {len(header)} columns, more than {MAX_COLUMNS}"
    if any(not name for name in header):
        return f"table at line {first_line}: a column without a name"
    if len(set(header)) != len(header):
        return f"table at line {first_line}: repeated column names"
    for n, row in enumerate(body, first_line + body_offset):
        if len(row) != len(header):
            return f"ragged table at line {first_line}: row {n} has {len(row)} cells, the header {len(header)}"
    return None


def csv_table(doc_id: str, text: str, title: str = "") -> tuple[list[Table], list[str]]:
    """A CSV document as one table (first row: the header)."""
    try:
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    except csv.Error as exc:
        return [], [f"CSV: {exc}"]
    if not rows:
        return [], ["CSV: no rows"]
    problem = _rectangle_problem(rows[0], rows[1:], first_line=1, body_offset=1)
    if problem:
        return [], [f"CSV {problem}"]
    return [Table(doc_id, title, tuple(rows[0]), tuple(map(tuple, rows[1:])), (0, len(text)))], []


class _HTMLTables(HTMLParser):
    """Collects <table> elements: caption, <th>/<td> rows (no nesting, no spans)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[list[str]], list[bool], tuple[int, int]]] = []
        self._table: list[list[str]] | None = None
        self._header_rows: list[bool] = []
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self._caption_text = ""
        self._start = 0
        self._row_is_header = False

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def feed_text(self, text: str) -> None:
        self._line_starts = [0]  # HTMLParser counts lines by "\n" only (not "\r" or form feeds)
        for line in text.split("\n"):
            self._line_starts.append(self._line_starts[-1] + len(line) + 1)
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:  # noqa: ARG002 - attributes unused
        if tag == "table":
            self._table, self._header_rows, self._caption_text, self._start = [], [], "", self._offset()
        elif self._table is None:
            return
        elif tag == "caption":
            self._caption = []
        elif tag == "tr":
            self._table.append([])
            self._header_rows.append(True)
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "td" and self._header_rows:
                self._header_rows[-1] = False

    def handle_endtag(self, tag: str) -> None:
        if self._table is None:
            return
        if tag in ("td", "th") and self._cell is not None:
            if not self._table:
                self._table.append([])
                self._header_rows.append(tag == "th")
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "caption" and self._caption is not None:
            self._caption_text = " ".join("".join(self._caption).split())
            self._caption = None
        elif tag == "table":
            end = self._offset() + len("</table>")
            self.found.append((self._caption_text, self._table, self._header_rows, (self._start, end)))
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._caption is not None:
            self._caption.append(data)


def html_tables(doc_id: str, text: str) -> tuple[list[Table], list[str]]:
    """<table> elements whose first row is the header."""
    if "<table" not in text.lower():
        return [], []
    parser = _HTMLTables()
    parser.feed_text(text)
    tables, problems = [], []
    for caption, rows, _, span in parser.found:
        rows = [r for r in rows if r]
        if not rows:
            problems.append("HTML table without rows")
            continue
        problem = _rectangle_problem(rows[0], rows[1:], first_line=1, body_offset=1)
        if problem:
            problems.append(f"HTML {problem}")
            continue
        tables.append(Table(doc_id, caption, tuple(rows[0]), tuple(map(tuple, rows[1:])), span))
    return tables, problems


def extract_tables(doc_id: str, text: str, fmt: str = "") -> tuple[list[Table], list[str]]:
    """Every table of a document, and the problems of those that could not be read.
    `fmt` is the document's format attribute ('csv' reads the whole text as one table)."""
    if fmt == "csv":
        return csv_table(doc_id, text)
    found, problems = markdown_tables(doc_id, text)
    more, more_problems = html_tables(doc_id, text)
    return found + more, problems + more_problems
