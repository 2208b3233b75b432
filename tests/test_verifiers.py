from __future__ import annotations

import dataclasses

import pytest

from actors.reward.actor import score
from actors.verifiers import (
    Rule,
    exact_match,
    extract_answer,
    list_recall,
    normalize,
    numeric_match,
    option_match,
    substring_match,
)
from schemas import Rollout
from tests.samples import ROLLOUT


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


def test_option_match_takes_the_first_standalone_letter() -> None:
    assert option_match("B", "B") == option_match("(B) Saltmarsh", "B") == 1.0
    assert option_match("Answer A", "B") == 0.0, "'Answer' holds an A but not a standalone one; then A"
    assert option_match("Saltmarsh", "B") == 0.0 and option_match("", "A") == 0.0


def test_list_recall_gives_credit_per_item() -> None:
    ref = "4821937, 1826867, 5172676"
    assert list_recall("4821937, 1826867, 5172676", ref) == 1.0
    assert list_recall("5172676, 4821937", ref) == 2 / 3
    assert list_recall("5172676 and 4821937", ref) == 2 / 3, "3 words: no more than the reference's 3"
    assert list_recall("1 2 3 4821937 1826867 5172676", ref) == 0.5, "all 3 found, but 6 words for 3: x 3/6"
    assert list_recall("48219371", ref) == 0.0, "items match as whole words"
    assert list_recall("4821937,1826867/5172676", ref) == 1.0, "punctuation separates items"
    assert list_recall("", ref) == 0.0


def test_each_answer_kind_is_scored_by_its_verifier() -> None:
    base = dataclasses.replace(ROLLOUT, response_text="(A) Alder")
    option = score(dataclasses.replace(base, reference="A", answer_kind="option"), Rule.SUB_EM)
    assert (option.reward, option.verifier) == (1.0, "option")
    listed = score(
        dataclasses.replace(base, response_text="12, 34", reference="12, 56", answer_kind="list"), Rule.EXACT
    )
    assert (listed.reward, listed.verifier) == (0.5, "list_recall")
    loose = score(
        dataclasses.replace(base, response_text="100.4", reference="100", answer_kind="numeric"), Rule.EXACT, 0.01
    )
    assert loose.reward == 1.0, "|100.4 - 100| / 100.4 = 0.004 <= 0.01"


def test_a_memory_trajectory_takes_its_answers_reward_on_every_turn() -> None:
    from actors.reward.actor import score_group
    from tests.conftest import scored_rollout

    def turn(sample: int, t: int, text: str) -> Rollout:
        row = scored_rollout("g", sample, 2, (5,), (6,), turns=3, turn_index=t, response_text=text, reference="teal")
        return Rollout(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Rollout)})

    # sample 0 remembers and answers "teal" (1.0); sample 1 remembers the answer word but
    # answers "gold" (0.0): the reading turns' own texts are memories and are never scored
    group = [turn(0, 0, "bako color teal ."), turn(0, 1, "x"), turn(0, 2, "teal")]
    group += [turn(1, 0, "teal"), turn(1, 1, "teal"), turn(1, 2, "gold")]
    scored = score_group(group, Rule.EXACT)
    assert [s.reward for s in scored] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert [s.extracted_answer for s in scored] == ["teal"] * 3 + ["gold"] * 3
    assert [s.response_text for s in scored] == [r.response_text for r in group]
    with pytest.raises(ValueError, match=r"samples \[1\] have no final turn"):
        score_group(group[:5], Rule.EXACT)


def test_free_form_replies_of_an_instruct_model() -> None:
    """What SmolLM2-135M-Instruct answered through its chat template (ENGINES.md), and the ways a
    reply may try to collect a reward without knowing the answer."""
    from actors.verifiers import restating_match

    vault = "The secret code for the vault is 7421."
    assert numeric_match(extract_answer(vault), "7421") == 1.0
    assert numeric_match(extract_answer("Reasoning first.\nAnswer: 7421"), "7421") == 1.0
    question = "Who designed the pumping station at Birchwood?"
    sentence = "The pumping station at Birchwood was designed by Joseph Strauss."
    assert restating_match(sentence, "Joseph Strauss", question) == 1.0
    assert restating_match("Answer: Joseph Strauss", "Joseph Strauss", question) == 1.0
    assert restating_match("It was Joseph Strauss, I think.", "Joseph Strauss", question) == 1.0
    for guess in ("Joseph Strauss or Anna Lee", "Anna Lee, Joseph Strauss, Mark Twain", "Joseph Straussberg"):
        assert restating_match(guess, "Joseph Strauss", question) == 0.0, guess
    assert restating_match("teal lima blue oslo", "teal", "bako color") == 0.0, "every candidate listed"
    assert restating_match("bako color teal", "teal", "bako color") == 1.0, "the question restated"


def test_the_restate_rule_scores_a_rollout_against_its_own_question() -> None:
    import dataclasses

    from actors.reward.actor import score
    from schemas import Rollout

    rollout = Rollout(
        rollout_id="t/0",
        task_id="t",
        task_type="multi_hop",
        group_id="t",
        sample_index=0,
        group_size=2,
        policy_version=0,
        prompt_ids=(5,),
        prompt_ref="",
        response_ids=(8, 1),
        behaviour_logprobs=(-0.5, -0.125),
        response_text="The pumping station at Birchwood was designed by Joseph Strauss.",
        reference="Joseph Strauss",
        answer_kind="text",
        turns=1,
        finish_reason="stop",
        question="Who designed the pumping station at Birchwood?",
    )
    assert (score(rollout, Rule.RESTATE).reward, score(rollout, Rule.RESTATE).verifier) == (1.0, "restate")
    assert score(rollout, Rule.EXACT).reward == 0.0
    listing = dataclasses.replace(rollout, response_text="Joseph Strauss, Anna Lee")
    assert score(listing, Rule.RESTATE).reward == 0.0 and score(listing, Rule.SUB_EM).reward == 1.0
