"""The task-balanced sampler, by hand."""

from __future__ import annotations

from actors.learner.sampler import DryPolicy, SamplerConfig, balanced_pick, shares

BALANCED = SamplerConfig(task_balanced=True)


def test_shares_split_evenly_and_give_the_remainder_to_the_longest_waiting() -> None:
    # 8 over 3 types: 2 each, the 2 left over to 'b' and 'a' (oldest waiting first); 'c' waits for none
    assert shares(["a", "b", "c"], 8, ["b", "a"]) == {"a": 3, "b": 3, "c": 2}


def test_equal_counts_per_type_oldest_first() -> None:
    # waiting (arrival order): a a a a b b c c ; size 6 over 3 types -> 2 each:
    # a: 0, 1 ; b: 4, 5 ; c: 6, 7 (the third and fourth 'a' wait)
    pick = balanced_pick(list("aaaabbcc"), [False] * 8, ["a", "b", "c"], 6, BALANCED)
    assert pick.indices == [0, 1, 4, 5, 6, 7] and pick.filled == 0


def test_a_dry_type_is_filled_or_waited_for() -> None:
    # waiting a a a a b ; size 4 over a, b -> 2 each, but only one 'b'
    waiting, hard = list("aaaab"), [False] * 5
    fill = balanced_pick(waiting, hard, ["a", "b"], 4, BALANCED)
    assert fill.indices == [0, 1, 2, 4] and fill.filled == 1  # the missing 'b' slot goes to the next 'a'
    wait = SamplerConfig(task_balanced=True, when_dry=DryPolicy.WAIT, buffer_groups=8)
    assert balanced_pick(waiting, hard, ["a", "b"], 4, wait) is None  # 5 wait, below the buffer's 8
    assert balanced_pick(waiting, hard, ["a", "b"], 4, wait, stalled=True).filled == 1  # nothing more comes
    assert balanced_pick(list("aaaaaaab"), [False] * 8, ["a", "b"], 4, wait).filled == 1  # buffer full


def test_too_few_groups_waits() -> None:
    assert balanced_pick(list("ab"), [False, False], ["a", "b"], 4, BALANCED) is None


def test_difficulty_bins_alternate_hard_and_easy() -> None:
    # one type, waiting: easy easy easy hard hard ; share 4 -> hard 3, easy 0, hard 4, easy 1
    hard = [False, False, False, True, True]
    binned = SamplerConfig(task_balanced=True, difficulty_bins=True)
    assert balanced_pick(list("aaaaa"), hard, ["a"], 4, binned).indices == [0, 1, 3, 4]
    # without bins: the four oldest (three easy, one hard)
    assert balanced_pick(list("aaaaa"), hard, ["a"], 4, BALANCED).indices == [0, 1, 2, 3]
