from __future__ import annotations

import dataclasses

from actors.reward.actor import score
from actors.verifiers import Rule, exact_match, extract_answer, normalize, numeric_match, substring_match
from tests.test_schemas import ROLLOUT


def test_normalize_drops_case_punctuation_articles() -> None:
    assert normalize("  The  Teal, cat! ") == "teal cat"


def test_extract_answer_after_marker_and_first_line() -> None:
    assert extract_answer("reasoning... Answer: teal\nmore") == "teal"
    assert extract_answer("  teal ") == "teal"


def test_exact_substring_numeric() -> None:
    assert exact_match("Teal.", "teal") == 1.0
    assert exact_match("", "") == 0.0
    assert substring_match("dark teal", "teal") == 1.0 and substring_match("teal", "dark teal") == 1.0
    assert substring_match("red", "teal") == 0.0 and substring_match("", "teal") == 0.0
    assert numeric_match("about 1,995.0 years", "1995") == 1.0
    assert numeric_match("1996", "1995") == 0.0 and numeric_match("none", "1995") == 0.0


def test_score_by_rule() -> None:
    r = dataclasses.replace(ROLLOUT, response_text="teal teal", reference="teal")
    assert score(r, Rule.EXACT).reward == 0.0
    sub = score(r, Rule.SUB_EM)
    assert sub.reward == 1.0 and sub.verifier == "sub_em" and sub.exact_match == 0.0
    num = score(dataclasses.replace(r, response_text="42.0", reference="42", answer_kind="numeric"), Rule.EXACT)
    assert num.reward == 1.0 and num.verifier == "numeric"
