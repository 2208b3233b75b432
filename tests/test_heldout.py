"""Held-out store evaluation: the split, the tasks composed from held-out documents, the table
`longtide eval` prints, and where a model comes from (unit tier: nothing is started)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from actors.learner.config import LearnerConfig
from actors.learner.evaluation import Heldout, score_heldout
from actors.synthesis.compose import held_out
from actors.synthesis.config import SynthesisConfig
from actors.synthesis.extract import key_value_facts
from actors.synthesis.paradigms import year_of
from actors.tasks import ComposedTask, TaskType
from actors.verifiers import Rule
from ops.config import load_config
from ops.evaluate import Table, resolve_model
from ops.heldout import read_documents, store_heldout, store_types
from schemas import AnswerKind

FACTBOOK = Path(__file__).parents[1] / "ops" / "corpus-factbook"
STORE = [TaskType(t) for t in ("table_numeric", "multi_hop", "comparative", "temporal", "needle", "dialogue")]


def words(text: str) -> int:
    return len(text.split())


def test_the_split_goes_by_content_and_holds_out_about_the_fraction() -> None:
    texts = [f"document number {i}" for i in range(4000)]
    out = [t for t in texts if held_out(t, 0.25)]
    assert 0.22 < len(out) / len(texts) < 0.28
    assert all(held_out(t, 0.25) for t in out), "the same text, the same answer"
    assert set(out) <= {t for t in texts if held_out(t, 0.5)}, "a larger fraction holds out a superset"
    assert not any(held_out(t, 0.0) for t in texts)


def test_store_tasks_come_only_from_held_out_documents() -> None:
    documents = read_documents(str(FACTBOOK))
    synthesis = SynthesisConfig(heldout_fraction=0.25)
    tasks = store_heldout(
        documents, synthesis=synthesis, task_types=STORE, lengths=(512,), per_cell=4, count_tokens=words, seed=1
    )
    assert tasks and {h.label for h in tasks} <= {f"{t.value}@512" for t in STORE}
    held = [d["text"] for d in documents if held_out(d["text"], 0.25)]
    assert 0.1 < len(held) / len(documents) < 0.4
    names = {text.split("\n")[0].removeprefix("# ") for text in held}
    assert all(any(name in h.task.context for name in names) for h in tasks)
    again = store_heldout(
        documents, synthesis=synthesis, task_types=STORE, lengths=(512,), per_cell=4, count_tokens=words, seed=1
    )
    assert [(h.label, h.task.question, h.task.answer) for h in again] == [
        (h.label, h.task.question, h.task.answer) for h in tasks
    ], "every evaluation of a run asks the same questions"


def test_every_document_context_is_held_out_text() -> None:
    """The context of a fact task is made of held-out documents only: none of its lines comes
    from a document training sees."""
    documents = read_documents(str(FACTBOOK))
    trained_lines = {
        line
        for d in documents
        if not held_out(d["text"], 0.25)
        for line in d["text"].splitlines()
        if len(line) > 60  # whole sentences and paragraphs, not "Capital: X" lines two countries may share
    }
    tasks = store_heldout(
        documents,
        synthesis=SynthesisConfig(heldout_fraction=0.25),
        task_types=[TaskType.MULTI_HOP, TaskType.TEMPORAL, TaskType.TABLE_NUMERIC],
        lengths=(512,),
        per_cell=3,
        count_tokens=words,
    )
    assert tasks
    for h in tasks:
        assert not any(line in trained_lines for line in h.task.context.splitlines()), h.label


def test_store_types_leave_world_and_memory_types_out() -> None:
    assert store_types([TaskType.KV_RETRIEVAL, TaskType.NEEDLE, TaskType.MEMORY_KV]) == (TaskType.NEEDLE,)


def test_a_date_value_is_a_date_not_a_quantity() -> None:
    facts = key_value_facts("d", "# India\n\nIndependence: 15 August 1947\nArea: 3,287,263 sq km\nCapital: New Delhi\n")
    assert [(f.relation, f.kind) for f in facts] == [
        ("has Independence", "date"),
        ("has Area", "quantity"),
        ("has Capital", "value"),
    ]
    assert year_of("15 August 1947") == 1947 and year_of("August 15, 1947") == 1947 and year_of("March 2023") == 2023
    assert year_of("15 sq km") is None


class Echo:
    """An engine that replies what it is told to, per prompt."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.tokenizer = None

    def generate(self, prompts, n, temperature, top_p, max_new_tokens):  # noqa: ANN001, ANN201
        from actors.generation import Sample

        return [[Sample([], [], self.replies[p], "stop")] for p in prompts]


class Plain:
    """A prompter whose prompt is the question; it records the answer kinds it was told."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def ids(self, text: str) -> str:
        return text

    def question(self, context: str, question: str, answer_kind: str = AnswerKind.TEXT) -> str:
        self.kinds.append(answer_kind)
        return question


def _task(task_type: TaskType, question: str, answer: str) -> ComposedTask:
    return ComposedTask(task_type, "context", question, answer, (), 0)


def test_store_tasks_are_scored_by_their_answer_kind_and_the_rule() -> None:
    tasks = [
        Heldout("needle@1024", _task(TaskType.NEEDLE, "What is the code for X", "7421")),
        Heldout("table_numeric@1024", _task(TaskType.TABLE_NUMERIC, "how many", "3"), AnswerKind.NUMERIC),
        Heldout("comparative@1024", _task(TaskType.COMPARATIVE, "which", "B"), AnswerKind.OPTION),
    ]
    engine = Echo(
        {
            "What is the code for X": "The code for X is 7421.",
            "how many": "There are 3.0 rows.\nAnswer: 3.0",
            "which": "Answer: (A)",
        }
    )
    prompter = Plain()
    scores = score_heldout(engine, prompter, tasks, 8, rule=Rule.RESTATE)
    assert prompter.kinds == [AnswerKind.TEXT, AnswerKind.NUMERIC, AnswerKind.OPTION], "asked as rollouts ask"
    assert scores == {
        "all": [1.0, 1.0, 0.0],
        "comparative@1024": [0.0],
        "needle@1024": [1.0],
        "table_numeric@1024": [1.0],
    }
    table = Table((TaskType.NEEDLE, TaskType.COMPARATIVE, TaskType.DIALOGUE), (1024, 4096), scores)
    rendered = table.render().splitlines()
    assert rendered[2].split() == ["needle", "100.0%", "(n=1)", "—"]
    assert rendered[3].split() == ["comparative", "0.0%", "(n=1)", "—"]
    assert rendered[4].split() == ["dialogue", "—", "—"], "a cell no task could be made for says so"
    assert rendered[-1].split() == ["all", "66.7%", "(n=3)"]
    assert json.loads(json.dumps(table.as_json()))["needle@1024"] == {"accuracy": 1.0, "n": 1}


def test_a_model_is_found_in_a_directory_a_checkpoint_or_a_run(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert resolve_model(str(model)) == model
    checkpoint = tmp_path / "step-00000004"
    (checkpoint / "model").mkdir(parents=True)
    (checkpoint / "model" / "config.json").write_text("{}")
    assert resolve_model(str(checkpoint)) == checkpoint / "model"
    with pytest.raises(ValueError, match="not a model"):
        resolve_model(str(tmp_path / "nothing"))


def test_heldout_fields_fail_at_start_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heldout_store_lengths"):
        LearnerConfig(heldout_store_lengths=())
    with pytest.raises(ValueError, match="heldout_store_tasks"):
        LearnerConfig(heldout_store_tasks=-1)
    with pytest.raises(ValueError, match="heldout_fraction, e.g. 0.2"):
        load_config(None, ["--learner.heldout_documents=sample"])
    with pytest.raises(ValueError, match="must fit"):
        load_config(None, ["--learner.heldout_documents=sample", "--synthesis.heldout_fraction=0.2"])
    fits = "--learner.heldout_store_lengths=[256]"
    config = load_config(None, ["--learner.heldout_documents=sample", "--synthesis.heldout_fraction=0.2", fits])
    assert config.heldout_source() == "sample"
    assert load_config(None, ["--feed.corpus=sample"]).heldout_source() == "", "nothing held out: nothing to use"


def test_the_shipped_factbook_corpus_makes_every_store_type() -> None:
    documents = read_documents(str(FACTBOOK))
    assert len(documents) == 120
    every = [TaskType(t) for t in ("keychain", "multi_fact", "multi_needle", *[t.value for t in STORE])]
    tasks = store_heldout(
        documents,
        synthesis=SynthesisConfig(),
        task_types=every,
        lengths=(1024,),
        per_cell=2,
        count_tokens=words,
        everything=True,
    )
    assert set(Counter(h.task.task_type for h in tasks)) == set(every)
