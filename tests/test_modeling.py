"""The locally built policy saves and loads through the same path a real checkpoint takes."""

from __future__ import annotations

import torch

from actors.generation import TransformersEngine
from actors.modeling import build_tokenizer, load_policy
from actors.tasks import render_prompt

PROMPT = render_prompt("nozu friend dila . dila color gold .", "dila color")


def test_saved_tokenizer_encodes_like_the_built_one(tiny_model: str) -> None:
    model, tokenizer = load_policy(tiny_model)
    built = build_tokenizer()
    assert tokenizer(PROMPT)["input_ids"] == built(PROMPT)["input_ids"]
    assert tokenizer.unk_token_id not in tokenizer(PROMPT)["input_ids"]
    assert tokenizer(" gold", add_special_tokens=False)["input_ids"] == [built.convert_tokens_to_ids("gold")]
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<eos>", "<pad>")


def test_engine_batches_by_padded_tokens_and_answers_as_one_call(tiny_model: str) -> None:
    model, tokenizer = load_policy(tiny_model)
    prompts = [tokenizer(PROMPT)["input_ids"][: 4 + i] for i in range(6)]
    whole = TransformersEngine(model, tokenizer).generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=3)
    calls = []
    small = TransformersEngine(model, tokenizer, batch_tokens=20)
    real = small._generate
    small._generate = lambda batch, *rest: calls.append([len(p) for p in batch]) or real(batch, *rest)
    split = small.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=3)
    assert calls == [[4, 5, 6], [7, 8], [9]], "in order, rows × n × the longest prompt within 20 tokens"
    assert [[s.token_ids for s in g] for g in split] == [[s.token_ids for s in g] for g in whole]


def test_engine_samples_carry_matching_logprobs(tiny_model: str) -> None:
    model, tokenizer = load_policy(tiny_model)
    engine = TransformersEngine(model, tokenizer)
    ids = tokenizer(PROMPT)["input_ids"]
    torch.manual_seed(0)
    [samples] = engine.generate([ids], n=3, temperature=1.0, top_p=1.0, max_new_tokens=3)
    assert len(samples) == 3
    for s in samples:
        assert len(s.logprobs) == len(s.token_ids) and all(lp <= 0 for lp in s.logprobs)
        # recompute the first token's log-prob with a plain forward pass
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        expected = torch.log_softmax(logits, -1)[s.token_ids[0]].item()
        assert abs(expected - s.logprobs[0]) < 1e-4
    [[greedy]] = engine.generate([ids, ids[:5]], n=1, temperature=0.0, top_p=1.0, max_new_tokens=2)[:1]
    assert greedy.finish_reason in ("stop", "length")
