"""Corpus numerical QA: templated questions over a collection's merged tables, as SQL.

Pure functions. A `CorpusTable` is every table of one collection with the same columns, merged
(each row keeps its document). `compose_numeric` picks a question `Spec` from a seeded random
stream: aggregation (sum or mean of a column, over every row or the rows matching a filter),
extremes, counting above a threshold, and calculation between two rows (a difference; over a
year-like column, the temporal "how many years after"). `to_sql` translates a spec for the
SQL engine, which gives the gold answer (`actors.synthesis.corpus`); `solve` is the
independent solver, plain Python over the parsed cells, which must agree before a task is
published.
"""

from __future__ import annotations

import enum
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from actors.synthesis.tables import parse_number


class Op(enum.StrEnum):
    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    COUNT_ABOVE = "count_above"
    DIFF = "diff"


@dataclass(frozen=True)
class CorpusTable:
    """One collection's tables with these columns, merged; `rows[i]` came from `doc_ids[i]`."""

    name: str
    """The SQL table's name."""
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    doc_ids: tuple[str, ...]

    def numeric_columns(self) -> list[int]:
        return [c for c in range(len(self.columns)) if all(parse_number(r[c]) is not None for r in self.rows)]

    def text_columns(self) -> list[int]:
        return [c for c in range(len(self.columns)) if all(parse_number(r[c]) is None for r in self.rows)]


@dataclass(frozen=True)
class Spec:
    """One question over a corpus table, in a form both SQL and the solver read."""

    op: Op
    value: int
    """Column the answer is computed from."""
    key: int = -1
    """Text column of the filter (SUM, MEAN with a filter) or of the two rows (DIFF)."""
    keys: tuple[str, ...] = ()
    """Filter values (rows whose `key` cell is one of them), or the two rows of DIFF (a − b)."""
    threshold: float = 0.0


def format_number(x: float) -> str:
    """12.0 → '12', 1234.5678 → '1234.57' (two decimals at most, no trailing zeros)."""
    text = f"{round(x, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _years(table: CorpusTable, column: int) -> bool:
    values = [parse_number(r[column]) for r in table.rows]
    return all(v is not None and v.is_integer() and 1800 <= v <= 2100 for v in values) and bool(
        re.search(r"year|opened|founded|built|since|date", table.columns[column], re.IGNORECASE)
    )


def to_sql(spec: Spec, table: str) -> tuple[str, list[object]]:
    """The spec as one SQL query over `table` (cells in c<i>, numbers in n<i>) and its parameters."""
    v = f"n{spec.value}"
    where, params = "", []
    if spec.keys and spec.op in (Op.SUM, Op.MEAN):
        where = f" WHERE c{spec.key} IN ({', '.join('?' for _ in spec.keys)})"
        params = list(spec.keys)
    if spec.op is Op.SUM:
        return f"SELECT SUM({v}) FROM {table}{where}", params
    if spec.op is Op.MEAN:
        return f"SELECT AVG({v}) FROM {table}{where}", params
    if spec.op is Op.MAX:
        return f"SELECT MAX({v}) FROM {table}", []
    if spec.op is Op.MIN:
        return f"SELECT MIN({v}) FROM {table}", []
    if spec.op is Op.COUNT_ABOVE:
        return f"SELECT COUNT(*) FROM {table} WHERE {v} > ?", [spec.threshold]
    row = f"(SELECT {v} FROM {table} WHERE c{spec.key} = ?)"
    return f"SELECT {row} - {row}", list(spec.keys)


def solve(spec: Spec, table: CorpusTable) -> float:
    """The answer computed without SQL, from the cells as written."""
    numbers = [parse_number(r[spec.value]) for r in table.rows]
    if spec.op is Op.DIFF:
        by_key = {r[spec.key]: n for r, n in zip(table.rows, numbers, strict=True)}
        return by_key[spec.keys[0]] - by_key[spec.keys[1]]
    if spec.op is Op.COUNT_ABOVE:
        return float(sum(1 for n in numbers if n > spec.threshold))
    if spec.keys:
        numbers = [n for r, n in zip(table.rows, numbers, strict=True) if r[spec.key] in spec.keys]
    if spec.op is Op.SUM:
        return math.fsum(numbers)
    if spec.op is Op.MEAN:
        return math.fsum(numbers) / len(numbers)
    return max(numbers) if spec.op is Op.MAX else min(numbers)


def evidence_rows(spec: Spec, table: CorpusTable) -> list[int]:
    """The rows a reader must find to answer."""
    if spec.keys:
        return [i for i, r in enumerate(table.rows) if r[spec.key] in spec.keys]
    return list(range(len(table.rows)))


def question_text(spec: Spec, table: CorpusTable) -> str:
    """The question, without its question mark (the prompt format adds ' ? answer :')."""
    name = table.columns[spec.value]
    where = f"the {table.title} tables" if table.title else f"the tables of {', '.join(table.columns)}"
    if spec.op is Op.DIFF:
        a, b = spec.keys
        key = table.columns[spec.key]
        if _years(table, spec.value):
            return f"In {where}, how many years after {key} {b} was {key} {a} ({name})"
        return f"In {where}, by how much does {name} of {key} {a} exceed that of {key} {b}"
    if spec.op is Op.COUNT_ABOVE:
        return f"In {where}, how many rows have {name} above {format_number(spec.threshold)}"
    scope = ""
    if spec.keys:
        key = table.columns[spec.key]
        scope = f" over the rows whose {key} is " + " or ".join(spec.keys)
    verb = {Op.SUM: "total", Op.MEAN: "average", Op.MAX: "highest", Op.MIN: "lowest"}[spec.op]
    return f"In {where}, what is the {verb} {name}{scope}"


def compose_numeric(table: CorpusTable, rng: random.Random) -> Spec | None:
    """A random question over `table`; None when it has no numeric column or too few rows."""
    numeric, text = table.numeric_columns(), table.text_columns()
    if not numeric or len(table.rows) < 2:
        return None
    value = rng.choice(numeric)
    text = [c for c in text if all(_usable_key(r[c]) for r in table.rows)]
    unique_keys = [c for c in text if len({r[c] for r in table.rows}) == len(table.rows)]
    ops = [Op.SUM, Op.MEAN, Op.MAX, Op.MIN, Op.COUNT_ABOVE] + ([Op.DIFF] if unique_keys else [])
    op = rng.choice(ops)
    if op is Op.DIFF:
        key = rng.choice(unique_keys)
        a, b = sorted(rng.sample(table.rows, 2), key=lambda r: parse_number(r[value]), reverse=True)
        return Spec(op, value, key, (a[key], b[key]))  # the larger first: "how much more", "years after"
    if op is Op.COUNT_ABOVE:
        values = sorted(parse_number(r[value]) for r in table.rows)
        return Spec(op, value, threshold=round(values[rng.randrange(len(values) - 1)], 2))  # as the question says
    if op in (Op.SUM, Op.MEAN) and text and rng.random() < 0.5:
        key = rng.choice(text)
        distinct = sorted({r[key] for r in table.rows})
        if len(distinct) > 1:
            chosen = rng.sample(distinct, rng.randint(1, min(2, len(distinct) - 1)))
            return Spec(op, value, key, tuple(sorted(chosen)))
    return Spec(op, value)


def _usable_key(cell: str) -> bool:
    """A cell a question can name: not empty, and not one that reads as two ("A or B")."""
    return bool(cell.strip()) and " or " not in cell


def leaks(answer: str, question: str) -> bool:
    """True when the answer can be read off the question (a number in it equals the answer)."""
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", question)
    return any(format_number(float(n.replace(",", ""))) == answer for n in numbers)


def difficulty(spec: Spec, table: CorpusTable) -> float:
    """Rows to find, weighted by the arithmetic: 1 per row, ×1.5 for mean and difference."""
    rows = len(evidence_rows(spec, table))
    return rows * (1.5 if spec.op in (Op.MEAN, Op.DIFF) else 1.0)


def rows_of(table: CorpusTable, indices: Sequence[int]) -> tuple[str, ...]:
    """The documents of `indices`, in order, once each."""
    return tuple(dict.fromkeys(table.doc_ids[i] for i in indices))
