"""Bad input on `scored` is dead-lettered with its reason and original bytes; the learner
keeps training on the good groups around it."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from actors.modeling import load_policy
from schemas import DeadLetter, ScoredRollout
from streams.blobs import ClaimCheck
from streams.kafka import Producer, StreamsConfig
from tests.conftest import Running, make_learner, scored_rollout, wait_for
from tests.kafka_helpers import read_records


def _group(tokenizer, name: str, **change: object) -> list[ScoredRollout]:  # noqa: ANN001
    prompt = tuple(tokenizer("bako color teal . bako color ?")["input_ids"])
    response = tuple(tokenizer("teal")["input_ids"])
    fields = {"response_text": "teal", "reference": "teal"}
    if change.get("prompt_ref"):  # the prompt is in the blob store (as a long one is), or should be
        prompt = ()
    return [scored_rollout(name, i, 2, prompt, response, **(fields | {"reward": float(i)} | change)) for i in range(2)]


BAD = {
    "nan-reward": ({"reward": math.nan}, "ScoredRollout.reward: nan not in [0, 1]"),
    "inf-reward": ({"reward": math.inf}, "ScoredRollout.reward: inf not in [0, 1]"),
    "short-logprobs": ({"behaviour_logprobs": (-1.0,) * 9}, "behaviour_logprobs: length 9 != response length"),
    "nan-logprobs": ({"behaviour_logprobs": (math.nan,)}, "behaviour_logprobs: must be log-probabilities"),
    "unknown-type": ({"task_type": "haiku"}, "unknown task_type 'haiku'"),
    "future-version": ({"policy_version": 7}, "policy_version 7 is newer than the learner's 0"),
    "missing-turns": ({"turns": 2}, "trajectories incomplete or of different lengths"),
    "bad-turn-index": ({"turn_index": 3}, "turn_index: 3 not in [0, turns=1)"),
    "prompt-blob-gone": ({"prompt_ref": "0" * 64}, f"KeyError: 'blob {'0' * 64} not found"),
}


def test_bad_scored_groups_are_dead_lettered_with_a_reason_and_training_goes_on(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    _, tokenizer = load_policy(tiny_model)
    producer = Producer(streams, client_id="test-scored")
    for i, (name, (change, _)) in enumerate(BAD.items()):
        for good in (f"good-{2 * i}", f"good-{2 * i + 1}"):
            producer.send_records("scored", _group(tokenizer, good), key=b"one")
        producer.send_records("scored", _group(tokenizer, name, **change), key=b"one")
    producer.flush()
    producer.close()
    learner = make_learner(
        streams,
        claim,
        tiny_model,
        tmp_path,
        name="learner-in",
        rl_steps=len(BAD),
        groups_per_step=2,
        max_staleness=10,
        weights_keep=12,
    )
    with Running(learner) as running:
        wait_for(lambda: learner.done or bool(running.errors), 120, "the learner to train on every good group")
        running.check()
    # every good group trained; of the bad ones, those that decode as this run's groups (they fail
    # the learner's own checks) count as consumed too: the rollout gate let them out
    of_this_run = {"unknown-type", "future-version", "missing-turns", "prompt-blob-gone"}
    assert learner.rl_step == len(BAD), "every good group trained, no bad one"
    assert learner.intake.groups_consumed == 2 * len(BAD) + len(of_this_run)
    letters = {}
    for letter in read_records(streams, "dlq", DeadLetter, len(BAD)):
        original = pa.ipc.open_stream(letter.original_value).read_all()  # the original bytes, as sent
        letters[original.column("group_id")[0].as_py()] = letter
    assert set(letters) == set(BAD)
    for name, (_, reason) in BAD.items():
        assert reason in letters[name].error and letters[name].source_topic == "scored", (name, letters[name].error)


def test_sft_dead_letters_memory_tasks_it_cannot_build_gold_turns_for(
    streams: StreamsConfig, claim: ClaimCheck, tiny_model: str, tmp_path: Path
) -> None:
    """A memory task without evidence (no gold memory to teach) or with a context of blanks
    (nothing to chunk) is dead-lettered with its reason; SFT trains on the rest."""
    import dataclasses
    import threading

    from schemas import Task
    from tests.conftest import send_tasks

    send_tasks(streams, claim, 8)
    good = Task(
        task_id="m-good",
        task_type="memory_kv",
        collection="c",
        doc_ids=("d",),
        context="rada color teal . ruga city lima .",
        context_ref="",
        context_tokens=8,
        question="rada color",
        answer="teal",
        answer_kind="text",
        hops=1,
        difficulty=1.0,
        synth_version=1,
        evidence=("rada color teal .",),
    )
    bad = {
        "m-no-evidence": dataclasses.replace(good, task_id="m-no-evidence", evidence=()),
        "m-blank": dataclasses.replace(good, task_id="m-blank", context=" \n ", evidence=()),
    }
    producer = Producer(streams, client_id="test-sft")
    for task in (good, *bad.values()):
        producer.send_records("tasks", [task], key=task.task_id.encode())
    producer.flush()
    producer.close()
    learner = make_learner(streams, claim, tiny_model, tmp_path, name="learner-sft", sft_steps=3, sft_batch=4)
    try:
        learner.sft(threading.Event())
        letters = read_records(streams, "dlq", DeadLetter, 2)
    finally:
        learner.close()
    reasons = {pa.ipc.open_stream(x.original_value).read_all().column("task_id")[0].as_py(): x.error for x in letters}
    assert set(reasons) == set(bad)
    assert reasons["m-no-evidence"].startswith("sft: ") and "no evidence spans" in reasons["m-no-evidence"]
    assert "nothing to read" in reasons["m-blank"]
