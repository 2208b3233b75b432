"""Precision of `prose_facts` on prose nobody wrote for it: 57 CIA World Factbook "Background"
paragraphs (public domain), each with hand-labelled facts (tests/data/prose/README.md).

An extracted fact is right when a labelled fact of its paragraph has the same subject and
object (any alias, case-insensitive, a leading "the" and a person's title such as "President"
dropped) and a consistent relation:
- the relations' prepositions and negations ("in", "from", "by", "not") are the same set, so
  "was occupied by" is not "occupied" (the direction flips) and "became" is not "did not become";
- every other extracted word is in the labelled relation, words compared crudely stemmed
  (-s, -es, -ed, -ing stripped), after dropping articles, pronouns, auxiliaries ("was", "has")
  and manner adverbs ("then", "-ly"), which do not change what is stated;
- at least one such word is left, unless the labelled relation has none either: a bare
  preposition ("in") says nothing about how the two are related.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from actors.synthesis.extract import prose_facts

PARAGRAPHS = Path(__file__).parent / "data" / "prose" / "paragraphs.jsonl"

# Words that carry the direction or truth of a relation: must agree exactly.
_FRAME = frozenset(
    ("about", "after", "against", "among", "as", "at", "before", "between", "by", "during", "for", "from")
    + ("in", "into", "of", "on", "over", "since", "through", "to", "toward", "under", "until", "upon")
    + ("with", "within", "without", "not", "never", "no")
)
# Words that do not change what a relation states.
_IGNORED = frozenset(
    ("a", "an", "the", "its", "their", "his", "her", "it", "them", "him", "this", "that", "these", "those")
    + ("both", "either", "be", "is", "was", "were", "are", "been", "being", "has", "have", "had", "do")
    + ("does", "did", "then", "also", "soon", "later", "further", "again", "still", "nonetheless")
)


# A person's title before the name: "President Hage GEINGOB" is "Hage GEINGOB".
_TITLES = ("former", "president", "prime minister", "king", "queen", "general", "dictator", "emperor", "pope")


def _name(text: str) -> str:
    text = " ".join(text.replace("\u2019", "'").lower().split())
    text = text.removeprefix("the ")
    while (title := next((t for t in _TITLES if text.startswith(t + " ")), None)) is not None:
        text = text[len(title) + 1 :]
    return text


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _words(relation: str) -> tuple[frozenset[str], frozenset[str]]:
    """(frame words, content words) of a relation."""
    words = [w for w in re.findall(r"[a-z]+(?:[-'][a-z]+)*", relation.lower()) if w not in _IGNORED]
    words = [w for w in words if not (w.endswith("ly") and len(w) > 4 and w != "only")]
    frame = frozenset(w for w in words if w in _FRAME)
    return frame, frozenset(_stem(w) for w in words if w not in _FRAME)


def _names(labelled: str | list[str]) -> set[str]:
    return {_name(alias) for alias in ([labelled] if isinstance(labelled, str) else labelled)}


def relation_consistent(extracted: str, labelled: str) -> bool:
    frame, content = _words(extracted)
    label_frame, label_content = _words(labelled)
    return frame == label_frame and content <= label_content and bool(content or not label_content)


def judge(subject: str, relation: str, obj: str, labels: list[list]) -> bool:
    """Whether (subject, relation, obj) is stated by a labelled fact (rule in the module docstring)."""
    return any(
        _name(subject) in _names(s) and _name(obj) in _names(o) and relation_consistent(relation, r)
        for s, r, o in labels
    )


def test_judge_needs_the_stated_pair_and_a_consistent_relation() -> None:
    labels = [["Belgium", "was occupied by", "Germany"], [["Hage GEINGOB", "President Hage GEINGOB"], "replaced", "X"]]
    assert judge("Belgium", "was occupied by", "Germany", labels)
    assert judge("the Belgium", "was then occupied by", "GERMANY", labels), "case, 'the' and adverbs do not matter"
    assert judge("President Hage GEINGOB", "replaced", "X", labels), "any alias"
    assert judge("former President Hage GEINGOB", "replaced", "X", labels), "a title is not part of the name"
    assert not judge("Germany", "was occupied by", "Belgium", labels), "pair reversed: not stated"
    assert not judge("Belgium", "was occupied by", "Netherlands", labels), "pair not stated"
    assert not judge("Belgium", "occupied", "Germany", labels), "'by' dropped: the direction flips"
    assert not judge("Belgium", "was annexed by", "Germany", labels), "another verb"
    assert not judge("Belgium", "by", "Germany", labels), "a bare preposition states nothing"


def test_relation_words_are_crudely_stemmed_and_negation_counts() -> None:
    assert relation_consistent("regained its independence in", "regained independence in")
    assert relation_consistent("joins", "joined")
    assert not relation_consistent("became", "became member of"), "'of' missing"
    assert not relation_consistent("became member of", "did not become member of")
    assert relation_consistent("is", "is") and not relation_consistent("is", "is member of")


def test_the_issues_wrong_facts_become_right_ones() -> None:
    """Issue 21's examples: the old extractor gave "Joseph Strauss | opened in | 1937", "Warsaw |
    moved to | Paris" and "Paris | where she joined | Google"."""
    text = (
        "The Golden Gate Bridge was designed by Joseph Strauss and opened in 1937. "
        "Marie Curie was born in Warsaw and moved to Paris, where she joined Google. "
        "In 1991, Croatia declared its independence from Yugoslavia, and the USSR collapsed."
    )
    assert [(f.subject, f.relation, f.object) for f in prose_facts("d", text)] == [
        ("Golden Gate Bridge", "was designed by", "Joseph Strauss"),
        ("Golden Gate Bridge", "opened in", "1937"),  # after "and", the clause's subject again
        ("Marie Curie", "was born in", "Warsaw"),
        ("Marie Curie", "moved to", "Paris"),  # ", where she joined": another clause, no fact
        ("Croatia", "declared its independence from", "Yugoslavia"),  # "In 1991": no subject
    ]


def _paragraphs() -> list[dict]:
    return [json.loads(line) for line in PARAGRAPHS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_prose_facts_are_at_least_90_percent_right_on_factbook_paragraphs() -> None:
    paragraphs = _paragraphs()
    right, wrong, sources = 0, [], set()
    for paragraph in paragraphs:
        for fact in prose_facts(paragraph["id"], paragraph["text"]):
            sources.add(paragraph["id"])
            if judge(fact.subject, fact.relation, fact.object, paragraph["facts"]):
                right += 1
            else:
                wrong.append(f"{paragraph['id']}: {fact.subject} | {fact.relation} | {fact.object}")
    extracted = right + len(wrong)
    precision = right / max(extracted, 1)
    print(f"prose precision {right}/{extracted} = {precision:.1%} from {len(sources)} of {len(paragraphs)} paragraphs")
    print("\n".join(wrong))
    assert len(paragraphs) >= 20 and len(sources) >= 20, "facts from at least 20 paragraphs"
    assert extracted >= 100, f"only {extracted} facts extracted: precision on too few says little"
    assert precision >= 0.90, "wrong facts:\n" + "\n".join(wrong)
