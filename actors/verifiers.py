"""Rule verifiers: normalised exact match, two-way substring match (sub_em), an answer that
restates the question (an instruct model's sentence), numeric match, option match (multiple
choice) and list recall (multi-needle).

Pure functions over strings. `extract_answer` takes the text after the last 'answer :' marker
when the response has one, else the whole response, and cuts it at the end of the line.
"""

from __future__ import annotations

import enum
import math
import re
import string
from dataclasses import dataclass

from schemas import AnswerKind

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
    RESTATE = "restate"
    """Exact match, or the reference as whole words in an answer that otherwise only restates
    the question (`restating_match`): an instruct model's sentence answer, not a list of guesses."""


_FRAMING_WORDS = (
    "a an the is are was were be been it its this that these those of in on at by for to from with as "
    "answer answers final i think so which who whom what when where there here he she they his her their "
    "s named called"
)
_FRAMING = frozenset(_FRAMING_WORDS.split())
"""Words an answer sentence may hold besides the question's and the reference's."""


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


def restating_match(prediction: str, reference: str, question: str) -> float:
    """1.0 when the normalised reference stands as whole words in the extracted answer and every
    other word of it is the question's or a framing word ("the", "is", "answer", ...):
    "The pumping station at Birchwood was designed by Joseph Strauss." answers "Who designed the
    pumping station at Birchwood?"; "teal lima blue" (every candidate) does not answer "bako
    color" with "teal", nor does "Joseph Strauss or Anna Lee". Exact matches count too."""
    said, ref = normalize(extract_answer(prediction)).split(), normalize(reference).split()
    if not said or not ref:
        return 0.0
    if said == ref:
        return 1.0
    allowed = set(normalize(question).split()) | _FRAMING
    for start in range(len(said) - len(ref) + 1):
        if said[start : start + len(ref)] == ref:
            rest = said[:start] + said[start + len(ref) :]
            return float(all(word in allowed for word in rest))
    return 0.0


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


@dataclass(frozen=True)
class Verdict:
    """How one reply scored: the reward, the verifier that gave it, and every verifier's view."""

    reward: float
    verifier: str
    exact: float
    substring: float
    numeric: float
    answer: str
    """The extracted final answer."""


def verify(
    response: str, reference: str, question: str, answer_kind: AnswerKind, rule: Rule, numeric_tolerance: float = 1e-4
) -> Verdict:
    """The task's `answer_kind` picks the verifier; text answers go by `rule`. Rewards and
    held-out evaluation both score through this."""
    answer = extract_answer(response)
    exact = exact_match(answer, reference)
    sub = substring_match(answer, reference)
    num = numeric_match(answer, reference, numeric_tolerance)
    if answer_kind == AnswerKind.NUMERIC:
        reward, verifier = num, "numeric"
    elif answer_kind == AnswerKind.OPTION:
        reward, verifier = option_match(answer, reference), "option"
    elif answer_kind == AnswerKind.LIST:
        reward, verifier = list_recall(answer, reference), "list_recall"
    elif rule is Rule.SUB_EM:
        reward, verifier = max(exact, sub), "sub_em"
    elif rule is Rule.RESTATE:
        reward, verifier = restating_match(answer, reference, question), "restate"
    else:
        reward, verifier = exact, "exact"
    return Verdict(reward, verifier, exact, sub, num, answer)
