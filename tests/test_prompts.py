"""How questions become prompt tokens (unit tier): raw for the tiny model, the chat template for an
instruct model, and the SFT targets of each."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from actors.modeling import build_tokenizer
from actors.prompts import Prompter, PromptFormat
from actors.tasks import render_prompt

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The ChatML template SmolLM2-Instruct and Qwen use."""


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE with ChatML's special tokens and template, built here."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["The secret code for the vault is 7421.", "Question: Answer: the river town has a bridge."] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any text round-trips
    )
    tok.train_from_iterator(text, trainer=trainer)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>")
    out.chat_template = CHATML
    return out


def test_raw_is_the_question_text_and_auto_picks_it_without_a_template() -> None:
    tokenizer = build_tokenizer()
    prompter = Prompter(tokenizer)
    assert prompter.format is PromptFormat.RAW
    text = prompter.question("bako color teal .", "bako color", "text")
    assert text == render_prompt("bako color teal .", "bako color")
    assert prompter.ids(text) == tokenizer(text)["input_ids"]
    assert prompter.target("teal") == [
        *tokenizer(" teal", add_special_tokens=False)["input_ids"],
        tokenizer.eos_token_id,
    ]
    with pytest.raises(ValueError, match="has no chat template: use raw"):
        Prompter(tokenizer, PromptFormat.CHAT)


def test_chat_asks_through_the_template_for_an_answer_line_and_trains_it() -> None:
    tokenizer = chat_tokenizer()
    prompter = Prompter(tokenizer)
    assert prompter.format is PromptFormat.CHAT
    text = prompter.question("The secret code for the vault is 7421.", "What is the code?", "numeric")
    assert text.endswith("Question: What is the code?\nAnswer with the number alone. End with a line 'Answer: ...'.")
    ids = prompter.ids(text)
    rendered = tokenizer.decode(ids)
    assert rendered == f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    target = prompter.target("7421")
    assert target[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(target[:-1]) == "Answer: 7421"
    memory_ids, memory = prompter.example("memory so far", "the vault code is 7421", answer=False)
    assert tokenizer.decode(memory[:-1]) == "the vault code is 7421", "a memory is trained as written"
    assert memory_ids == prompter.ids("memory so far")
