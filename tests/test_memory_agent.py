"""The memory agent's pure parts (chunking, gold traces, prompts) and its driver over a real
engine (the tiny model through transformers)."""

from __future__ import annotations

import random

import pytest

from actors.memory_agent import (
    ChunkingError,
    Job,
    MemoryAgentConfig,
    gold_memories,
    gold_turns,
    read_chunked,
    split_chunks,
)
from actors.tasks import TaskType, compose_memory_kv, word_count
from actors.world import make_world


def test_chunks_are_cut_between_sentences_within_the_budget() -> None:
    text = "a b c . d e . f g h i . j ."
    # sentences of 4, 3, 5, 2 words; 8 words a chunk: [4+3], [5+2]
    assert split_chunks(text, 8, word_count) == ["a b c . d e .", "f g h i . j ."]
    assert split_chunks(text, 100, word_count) == [text]


def test_a_sentence_longer_than_a_chunk_is_cut_between_words() -> None:
    # 7 words with chunk 3: [a b c] [d e f] [.], then "x ." joins the last piece (1 + 2 <= 3)
    assert split_chunks("a b c d e f . x .", 3, word_count) == ["a b c", "d e f", ". x ."]


@pytest.mark.parametrize(("text", "why"), [("   ", "empty"), ("short averyveryverylongword", "longer than a chunk")])
def test_what_cannot_be_chunked_says_why(text: str, why: str) -> None:
    def count(s: str) -> int:  # a word's tokens: one per 4 characters
        return sum(-(-len(w) // 4) for w in s.split())

    with pytest.raises(ChunkingError, match=why):
        split_chunks(text, 4, count)


def test_gold_memories_keep_every_evidence_span_read_so_far() -> None:
    chunks = ["x y . bako color teal .", "kelo boss bako .", "q r ."]
    evidence = ["kelo boss bako .", "bako color teal ."]
    assert gold_memories(chunks, evidence) == [
        "bako color teal .",
        "bako color teal . kelo boss bako .",
        "bako color teal . kelo boss bako .",
    ]
    # a span must lie whole between words: "ako color teal ." is not "bako color teal ."
    assert gold_memories(["bako color teal ."], ["ako color teal ."]) == [""]


def test_gold_turns_read_then_answer_from_memory_alone() -> None:
    config = MemoryAgentConfig()
    turns = gold_turns(config, "bako color", ["x y .", "bako color teal ."], ["bako color teal ."], "teal")
    assert turns == [
        ("x y . question : bako color ?", ""),
        ("bako color teal . question : bako color ?", "bako color teal ."),
        ("bako color teal . question : bako color ? answer :", "teal"),
    ]


def test_a_template_without_its_fields_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match=r"memory_agent.update_template .* must contain \{chunk\}"):
        MemoryAgentConfig(update_template="{memory} question : {question} ?")
    with pytest.raises(ValueError, match="memory_agent.chunk_tokens"):
        MemoryAgentConfig(chunk_tokens=0)


def test_memory_kv_context_is_padded_with_other_worlds_and_stays_unambiguous() -> None:
    world, other = make_world(1, 8), make_world(2, 8)
    for seed in range(20):
        task = compose_memory_kv(world.facts, random.Random(seed), 256, word_count, other.facts)
        assert task.task_type is TaskType.MEMORY_KV and 240 <= word_count(task.context) <= 256
        subject, relation = task.question.split()
        stated = [s for s in task.context.split(" . ") if s.split()[:2] == [subject, relation]]
        assert len(stated) == 1 and task.answer == world.lookup(subject, relation)


def test_read_chunked_runs_every_trajectory_turn_by_turn(tiny_model) -> None:  # noqa: ANN001
    from actors.generation import TransformersEngine
    from actors.modeling import load_policy

    model, tokenizer = load_policy(tiny_model)
    engine = TransformersEngine(model, tokenizer)
    config = MemoryAgentConfig(chunk_tokens=8, memory_tokens=3, answer_tokens=2)
    jobs = [Job("bako color", ("a b .", "c d .", "e f .")), Job("kelo city", ("g h .",))]
    out = read_chunked(engine, jobs, config, n=3, temperature=1.0, top_p=1.0)
    assert [len(group) for group in out] == [3, 3]
    for job, group in zip(jobs, out, strict=True):
        for trajectory in group:
            assert len(trajectory) == len(job.chunks) + 1
            assert [t.answer for t in trajectory] == [False] * len(job.chunks) + [True]
            for turn in trajectory[:-1]:
                assert len(turn.sample.token_ids) <= 3
            # each reading turn's prompt shows the previous turn's memory, then its chunk
            for t, turn in enumerate(trajectory[:-1]):
                memory = trajectory[t - 1].sample.text.strip() if t else ""
                expected = config.update_prompt(memory, job.chunks[t], job.question)
                assert turn.prompt_ids == tokenizer(expected)["input_ids"]
            last = trajectory[-2].sample.text.strip()
            assert trajectory[-1].prompt_ids == tokenizer(config.answer_prompt(last, job.question))["input_ids"]
            assert len(trajectory[-1].sample.token_ids) <= 2
