"""Supervision's pure parts (the restart budget, what counts as a death) and the ledger's chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.learner import ledger
from ops.supervisor import Death, RestartBudget, SupervisionConfig, death_of


def test_restart_budget_ends_a_crash_loop_within_the_window() -> None:
    budget = RestartBudget(max_restarts=3, window_s=10)
    # deaths at t = 0, 1: under 3 in the window
    assert budget.allow("a", 0) and budget.allow("a", 1)
    # another actor has its own count
    assert budget.allow("b", 1.5)
    # the third death of "a" within 10 s reaches the bound
    assert not budget.allow("a", 2)


def test_restart_budget_forgets_deaths_older_than_the_window() -> None:
    budget = RestartBudget(max_restarts=2, window_s=10)
    assert budget.allow("a", 0)
    # t = 10: the death at 0 is 10 s old, outside (0, 10]: one death in the window
    assert budget.allow("a", 10)
    # t = 15: deaths at 10 and 15 are both inside: the bound
    assert not budget.allow("a", 15)


def test_death_of() -> None:
    assert death_of({"alive": True, "error": None}, None) is None
    assert death_of({"alive": False, "done": True, "error": None}, None) is None  # finished, not dead
    assert death_of({"alive": False, "error": "Traceback: boom"}, None) == (Death.DIED, "Traceback: boom")
    assert "stopped without an error" in death_of({"alive": False, "error": None}, None)[1]
    assert death_of(None, RuntimeError("worker died")) == (Death.DIED, "RuntimeError: worker died")


def test_a_loop_stuck_in_one_round_longer_than_stall_s_is_stalled() -> None:
    stuck = {"alive": True, "error": None, "loop_age_s": 700.0}
    death, reason = death_of(stuck, None, stall_s=600)
    assert death is Death.STALLED and reason.startswith("no progress: its loop has been in one round for 700 s")
    assert death_of({**stuck, "loop_age_s": 599.0}, None, stall_s=600) is None
    assert death_of(stuck, None, stall_s=0) is None, "0: never"


def test_an_actor_whose_polls_take_nothing_while_records_wait_is_stalled() -> None:
    from streams.processor import starved

    # three empty polls of 0.2 s with 5 records waiting: 0.6 s; a record taken starts again
    after = 0.0
    for _ in range(3):
        after = starved(after, took=False, waiting=5, polled_s=0.2)
    assert after == pytest.approx(0.6)
    assert starved(after, took=True, waiting=5, polled_s=0.2) == 0.0
    assert starved(after, took=False, waiting=0, polled_s=0.2) == 0.0, "nothing waiting (or all of it paused)"
    stuck = {"alive": True, "error": None, "loop_age_s": 0.1, "input_starved_s": 601.0, "input_waiting": 5000}
    death, reason = death_of(stuck, None, stall_s=600)
    assert death is Death.STALLED
    assert reason.startswith(
        "no input: 5000 records wait on partitions it fetches, and its polls have taken none for 601 s"
    )
    assert death_of({**stuck, "input_starved_s": 599.0}, None, stall_s=600) is None
    assert death_of(stuck, None, stall_s=0) is None, "0: never"


def test_the_loop_stop_event_records_when_the_loop_last_checked_in() -> None:
    from actors.hosting import LoopStop

    stop = LoopStop()
    stop.checked -= 50  # as if the loop had been stuck for 50 s
    assert stop.age() >= 50
    assert not stop.is_set() and stop.age() < 1, "a check is progress"
    stop.checked -= 50
    stop.wait(0.01)
    assert stop.age() < 1


def test_supervision_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"supervision.max_restarts \(0\).*supervision.enabled=false"):
        SupervisionConfig(max_restarts=0)
    with pytest.raises(ValueError, match=r"supervision.poll_s"):
        SupervisionConfig(poll_s=0)


def test_ledger_keeps_only_the_chain_of_the_newest_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / ledger.LEDGER
    ledger.append(path, at=(0, 0), since=None, trained=[], stale=[])
    ledger.append(path, at=(2, 4), since=(0, 0), trained=["a", "b"], stale=["s"])
    # a stretch whose checkpoint was lost (crash before commit): the learner resumed from (2, 4)
    ledger.append(path, at=(4, 8), since=(2, 4), trained=["c", "d"], stale=[])
    # ... and trained the same groups again, in another order, reaching (4, 9)
    ledger.append(path, at=(4, 9), since=(2, 4), trained=["d", "c"], stale=["e"])
    with open(path, "a") as f:
        f.write('{"at": [6, 1')  # torn by a crash mid-write
    chain = ledger.surviving(path, (4, 9))
    assert [tuple(line["at"]) for line in chain] == [(0, 0), (2, 4), (4, 9)]
    assert [i for line in chain for i in line["trained"]] == ["a", "b", "d", "c"]
    # had the lost stretch's checkpoint survived, it would be the chain
    assert [tuple(line["at"]) for line in ledger.surviving(path, (4, 8))] == [(0, 0), (2, 4), (4, 8)]
    assert ledger.surviving(path, None) == []
