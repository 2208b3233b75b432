"""Rule verifiers: normalised exact match, two-way substring match (sub_em), numeric match,
option match (multiple choice) and list recall (multi-needle).

Pure functions over strings. `extract_answer` takes the text after the last 'answer :' marker
when the response has one, else the whole response, and cuts it at the end of the line.
"""

from __future__ import annotations

import enum
import math
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_MARKER = re.compile(r"answer\s*:", re.IGNORECASE)
_OPTION = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")
_PUNCTUATION = re.compile(r"[^\w\s]")


class Rule(enum.StrEnum):
    EXACT = "exact"
    """Normalised exact match."""
    SUB_EM = "sub_em"
    """Exact match, or either normalised string contains the other (QwenLong-L1)."""


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and English articles, collapse whitespace (SQuAD style)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def extract_answer(response: str) -> str:
    parts = _MARKER.split(response)
    tail = parts[-1] if len(parts) > 1 else response
    return tail.strip().split("\n", 1)[0].strip()


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference) != "")


def substring_match(prediction: str, reference: str) -> float:
    p, r = normalize(prediction), normalize(reference)
    return float(bool(p) and bool(r) and (p in r or r in p))


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


def numeric_match(prediction: str, reference: str, rel_tol: float = 1e-4) -> float:
    """1.0 when the first number in each string agrees within `rel_tol` (relative)."""
    p, r = _first_number(prediction), _first_number(reference)
    if p is None or r is None:
        return 0.0
    return float(math.isclose(p, r, rel_tol=rel_tol, abs_tol=1e-9))


def option_match(prediction: str, reference: str) -> float:
    """1.0 when the first standalone option letter (A–D) of the prediction is the reference's:
    'B', '(B) Saltmarsh' and 'B.' all choose B."""
    match = _OPTION.search(prediction)
    return float(match is not None and match.group(1) == reference.strip().upper())


def list_recall(prediction: str, reference: str) -> float:
    """The fraction of the reference's items found in the prediction (each normalised, matched
    as whole words), scaled down when the prediction has more words than the reference: RULER's
    multi-key score, partial credit per item, without rewarding a list of everything in the
    context. Items are separated by commas ("4821937, 1826867"), or by spaces when the
    reference has no comma ("teal lima")."""
    items = [normalize(item) for item in reference.split("," if "," in reference else None) if normalize(item)]
    said = normalize(_PUNCTUATION.sub(" ", prediction))  # "12,34" is two items, not "1234"
    if not items or not said:
        return 0.0
    found = sum(f" {item} " in f" {said} " for item in items) / len(items)
    words = sum(len(item.split()) for item in items)
    return found * min(1.0, words / len(said.split()))
