"""Bad input on `scored` is dead-lettered with its reason and original bytes; the learner
keeps training on the good groups around it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pyarrow as pa

from actors.learner.actor import HeldoutSpec, Learner
from actors.learner.config import LearnerConfig
from actors.modeling import load_policy
from actors.sampling import SamplingSpec
from actors.tasks import TaskType
from actors.weights import Transport
from schemas import DeadLetter, ScoredRollout
from streams.blobs import ClaimCheck
from streams.kafka import Producer, StreamsConfig
from tests.conftest import Running, wait_for
from tests.kafka_helpers import read_records


def _group(tokenizer, name: str, **change: object) -> list[ScoredRollout]:  # noqa: ANN001
    prompt = tuple(tokenizer("bako color teal . bako color ?")["input_ids"])
    response = tuple(tokenizer("teal")["input_ids"])
    return [
        dataclasses.replace(
            ScoredRollout(
                rollout_id=f"{name}/{i}",
                task_id=name,
                task_type="kv_retrieval",
                group_id=name,
                sample_index=i,
                group_size=2,
                policy_version=0,
                prompt_ids=prompt,
                prompt_ref="",
                response_ids=response,
                behaviour_logprobs=tuple(-1.0 for _ in response),
                response_text="teal",
                reference="teal",
                answer_kind="text",
                turns=1,
                finish_reason="length",
                reward=float(i),
            ),
            **change,
        )
        for i in range(2)
    ]


BAD = {
    "nan-reward": ({"reward": math.nan}, "ScoredRollout.reward: nan not in [0, 1]"),
    "inf-reward": ({"reward": math.inf}, "ScoredRollout.reward: inf not in [0, 1]"),
    "short-logprobs": ({"behaviour_logprobs": (-1.0,) * 9}, "behaviour_logprobs: length 9 != response length"),
    "nan-logprobs": ({"behaviour_logprobs": (math.nan,)}, "behaviour_logprobs: must be log-probabilities"),
    "unknown-type": ({"task_type": "haiku"}, "unknown task_type 'haiku'"),
    "future-version": ({"policy_version": 7}, "policy_version 7 is newer than the learner's 0"),
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
    learner = Learner(
        name="learner-in",
        config=LearnerConfig(
            sft_steps=0,
            rl_steps=6,
            groups_per_step=2,
            max_staleness=10,
            weights_keep=12,
            heldout_tasks=4,
            eval_every=100,
            weights_transport=Transport.FILE,
        ),
        streams=streams,
        model_path=tiny_model,
        claim=claim,
        run_dir=tmp_path,
        sampling=SamplingSpec(1.0, 1.0),
        heldout=HeldoutSpec((TaskType.KV_RETRIEVAL,), context_tokens=16, entities_per_world=4, max_new_tokens=2),
    )
    with Running(learner) as running:
        wait_for(lambda: learner.done or bool(running.errors), 120, "the learner to train on every good group")
        running.check()
    assert learner.rl_step == 6 and learner.groups_consumed == 12, "every good group trained, none of the bad"
    letters = {}
    for letter in read_records(streams, "dlq", DeadLetter, len(BAD)):
        original = pa.ipc.open_stream(letter.original_value).read_all()  # the original bytes, as sent
        letters[original.column("group_id")[0].as_py()] = letter
    assert set(letters) == set(BAD)
    for name, (_, reason) in BAD.items():
        assert reason in letters[name].error and letters[name].source_topic == "scored", (name, letters[name].error)
