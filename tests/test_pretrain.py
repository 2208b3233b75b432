"""The base model's pre-training: recall examples by hand, the script's output, the committed base."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from actors.modeling import build_tokenizer, load_policy
from actors.settings import TinyModelConfig
from actors.tasks import TaskType
from actors.world import Fact, make_world
from ops.config import BASE_MODEL
from ops.pretrain import (
    IGNORE,
    PretrainConfig,
    Pretrainer,
    build_base,
    collate,
    recall_example,
    task_example,
)

FACTS = (
    Fact("nozu", "color", "teal"),
    Fact("dila", "color", "gold"),
    Fact("nozu", "city", "oslo"),
    Fact("dila", "boss", "nozu"),
)


def words(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


def test_recall_example_shows_one_relation_and_trains_only_the_answers() -> None:
    tokenizer = build_tokenizer()

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    # Draw until the relation is color (the only one with two facts here).
    rng = random.Random(0)
    while True:
        example = recall_example(FACTS, rng, 2, encode)
        if "color" in words(tokenizer, example.ids)[:3]:
            break
    text = words(tokenizer, example.ids)
    assert text[:8] in (
        ["nozu", "color", "teal", ".", "dila", "color", "gold", "."],
        ["dila", "color", "gold", ".", "nozu", "color", "teal", "."],
    )
    trained = [t for t, label in zip(text, example.labels, strict=True) if label != IGNORE]
    # two questions, each answered: the trained tokens are exactly the two objects
    assert sorted(trained) == ["gold", "teal"]
    for i, label in enumerate(example.labels):
        if label != IGNORE:
            # ... question : SUBJECT color ? answer : OBJECT
            assert text[i - 7 : i] == ["question", ":", text[i - 5], "color", "?", "answer", ":"]
            assert {"nozu": "teal", "dila": "gold"}[text[i - 5]] == text[i]


def test_task_example_trains_answer_and_end_of_sequence() -> None:
    tokenizer = build_tokenizer()
    example = task_example(
        make_world(5, 8).facts,
        random.Random(1),
        TaskType.KV_RETRIEVAL,
        16,
        tokenizer,
    )
    trained = [i for i, label in zip(example.ids, example.labels, strict=True) if label != IGNORE]
    assert len(trained) == 2 and trained[-1] == tokenizer.eos_token_id
    assert words(tokenizer, example.ids)[-4:-2] == ["answer", ":"]


def test_collate_pads_right_and_ignores_padding() -> None:
    tokenizer = build_tokenizer()
    encode = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    short = recall_example(FACTS[:2], random.Random(2), 2, encode)
    ids, labels, mask = collate([short, short], pad=0)
    assert ids.shape == labels.shape == mask.shape == (2, len(short.ids))
    ids, labels, mask = collate([short, recall_example(FACTS[:2], random.Random(3), 1, encode)], pad=0)
    width = len(short.ids)
    assert ids.shape[1] == width
    assert mask[1].sum() < width and (labels[1][mask[1] == 0] == IGNORE).all() and (ids[1][mask[1] == 0] == 0).all()


def test_recall_max_facts_is_checked() -> None:
    with pytest.raises(ValueError, match="recall_max_facts"):
        PretrainConfig(recall_max_facts=9, entities_per_world=8)


def test_build_base_writes_a_loadable_model_and_its_curve(tmp_path: Path) -> None:
    config = PretrainConfig(steps=3, batch=4, eval_every=2)
    path = build_base(tmp_path / "base", TinyModelConfig(num_layers=1, hidden_size=32, intermediate_size=64), config)
    card = json.loads((path / "pretrain.json").read_text())
    assert [p["step"] for p in card["curve"]] == [0, 2, 3]
    assert card["curve"][0]["loss"] is None and card["curve"][-1]["loss"] > 0
    assert card["recipe"]["steps"] == 3
    model, tokenizer = load_policy(path)
    assert model.config.num_hidden_layers == 1 and tokenizer.eos_token == "<eos>"


def test_committed_base_is_past_the_retrieval_plateau() -> None:
    """The shortcut plateau answers 1/n of same-relation recall; the committed base binds."""
    model, tokenizer = load_policy(BASE_MODEL)
    pretrainer = Pretrainer(model, tokenizer, PretrainConfig())
    assert pretrainer.recall_accuracy(4, examples=128) > 0.9
    assert pretrainer.recall_accuracy(8, examples=128) > 0.8
