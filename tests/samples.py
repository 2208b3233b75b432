"""Records shared by tests: one of every record type (`SAMPLES`), valid and round-trippable,
among them `ROLLOUT`, a two-token kv-retrieval rollout."""

from __future__ import annotations

import dataclasses

from schemas import (
    DeadLetter,
    Document,
    PolicyVersion,
    RawDocument,
    Rollout,
    ScoredRollout,
    Task,
)

ROLLOUT = Rollout(
    rollout_id="t/0",
    task_id="t",
    task_type="kv_retrieval",
    group_id="t",
    sample_index=0,
    group_size=2,
    policy_version=3,
    prompt_ids=(5, 6, 7),
    prompt_ref="",
    response_ids=(8, 1),
    behaviour_logprobs=(-0.5, -0.125),  # exact in float32
    response_text="teal",
    reference="teal",
    answer_kind="text",
    turns=1,
    finish_reason="stop",
)
SAMPLES = [
    RawDocument(collection="c", text="hello", attrs=(("lang", "en"),)),
    Document(
        doc_id="a" * 64, collection="c", text="hello", text_ref="", n_tokens=1, source="s", attrs=(), ingested_at=1
    ),
    Task(
        task_id="t",
        task_type="kv_retrieval",
        collection="c",
        doc_ids=("d",),
        context="x y z .",
        context_ref="",
        context_tokens=4,
        question="x y",
        answer="z",
        answer_kind="text",
        hops=1,
        difficulty=1.0,
        synth_version=1,
        evidence=("x y z .",),
    ),
    ROLLOUT,
    dataclasses.replace(ROLLOUT, rollout_id="t/0/2", turns=3, turn_index=2),
    ScoredRollout(**{f.name: getattr(ROLLOUT, f.name) for f in dataclasses.fields(Rollout)}, reward=1.0),
    PolicyVersion(version=2, step=2, weights_ref="file:///w", groups_consumed=32, metrics=(("loss", 0.5),)),
    DeadLetter(
        dead_letter_id="longtide-ingest/docs.raw/0/1",
        source_topic="docs.raw",
        source_partition=0,
        source_offset=1,
        actor="ingest-0",
        consumer_group="longtide-ingest",
        error="bad",
        original_key=b"",
        original_value=b"\xff",
        original_headers=(("h", b"v"),),
    ),
]
