"""pass@k (hand-derived), difficulty bins, and retrospective re-publication of unsolved tasks."""

from __future__ import annotations

import sqlite3

import pytest

from actors.synthesis.retrospect import Retrospect, RetrospectConfig, bin_of, pass_at_k, retry_id
from schemas import Task
from tests.conftest import scored_rollout


def test_pass_at_k_by_hand() -> None:
    assert pass_at_k(8, 0, 4) == 0.0 and pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(8, 2, 1) == pytest.approx(2 / 8)
    # 1 - C(6,4)/C(8,4) = 1 - 15/70 = 55/70
    assert pass_at_k(8, 2, 4) == pytest.approx(55 / 70)
    assert pass_at_k(8, 5, 4) == 1.0, "only 3 wrong: any 4 hold a correct one"
    assert pass_at_k(4, 1, 16) == 1.0, "k clamps to n"


def test_bins_by_pass_rate() -> None:
    assert [bin_of(8, c) for c in (0, 1, 3, 4, 7, 8)] == ["unsolved", "hard", "hard", "medium", "medium", "solved"]


def _task(task_id: str) -> Task:
    return Task(
        task_id, "kv_retrieval", "w", ("d",), "bako color teal .", "", 4, "bako color", "teal", "text", 1, 1.0, 2
    )


def _group(task_id: str, version: int, rewards: list[float]) -> list:
    return [
        scored_rollout(task_id, i, len(rewards), [1], [2], reward=r, policy_version=version)
        for i, r in enumerate(rewards)
    ]


def test_an_unsolved_task_comes_back_once_after_the_delay() -> None:
    retro = Retrospect(sqlite3.connect(":memory:"), RetrospectConfig(retry_after_versions=10, max_retries=1))
    retro.remember([_task("a"), _task("b")])
    assert retro.outcome(_group("a", 3, [0.0, 0.5, 0.0, 0.0])).bin == "unsolved", "partial credit is not correct"
    assert retro.outcome(_group("b", 3, [1.0, 0.0, 0.0, 0.0])).bin == "hard"
    assert retro.due(12) == [], "due at version 3 + 10"
    [again] = retro.due(13)
    assert again.task_id == retry_id("a", 1) != "a" and (again.question, again.answer) == ("bako color", "teal")
    assert retro.due(100) == [], "published once"
    retro.outcome(_group(again.task_id, 20, [0.0] * 4))
    assert retro.due(1000) == [], "max_retries=1 counts from the original"


def test_a_task_stored_by_an_older_build_is_dropped_not_fatal() -> None:
    """The store outlives builds: a task an older schema wrote is dropped when due (counted),
    and the others still come back."""
    import pyarrow as pa

    db = sqlite3.connect(":memory:")
    retro = Retrospect(db, RetrospectConfig(retry_after_versions=1, max_retries=1))
    retro.remember([_task("a"), _task("b")])
    old = pa.schema([f for f in Task.SCHEMA if f.name != "evidence"])  # schema version 2's Task
    row = {f.name: getattr(_task("a"), f.name) for f in old}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, old) as writer:
        writer.write_batch(pa.RecordBatch.from_pylist([row], schema=old))
    db.execute("UPDATE published SET record = ? WHERE task_id = 'a'", (sink.getvalue().to_pybytes(),))
    retro.outcome(_group("a", 0, [0.0, 0.0]))
    retro.outcome(_group("b", 0, [0.0, 0.0]))
    assert [t.question for t in retro.due(5)] == ["bako color"] and retro.unreadable == 1
    assert retro.due(5) == [], "the unreadable one is not retried again"


def test_records_beyond_keep_tasks_are_forgotten() -> None:
    retro = Retrospect(sqlite3.connect(":memory:"), RetrospectConfig(keep_tasks=2))
    retro.remember([_task("a"), _task("b")])
    retro.remember([_task("c")])
    retro.outcome(_group("a", 0, [0.0]))  # forgotten: nothing to re-publish
    retro.outcome(_group("c", 0, [0.0]))
    assert [t.task_id for t in retro.due(10_000)] == [retry_id("c", 1)]


def test_a_scheduled_retry_goes_with_its_forgotten_record() -> None:
    retro = Retrospect(sqlite3.connect(":memory:"), RetrospectConfig(keep_tasks=3))
    retro.remember([_task("a"), _task("b"), _task("c")])
    retro.outcome(_group("a", 0, [0.0]))  # a's retry is scheduled
    retro.remember([_task("d"), _task("e")])  # keeps c, d, e: a's record goes, and its retry
    assert retro.db.execute("SELECT COUNT(*) FROM retries").fetchone()[0] == 0
    assert retro.due(10_000) == []


def test_bad_settings_fail_naming_the_field() -> None:
    with pytest.raises(ValueError, match="pass_k"):
        RetrospectConfig(pass_k=(0,))
    with pytest.raises(ValueError, match="max_retries"):
        RetrospectConfig(max_retries=-1)
