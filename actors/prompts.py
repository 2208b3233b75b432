"""How a question becomes the policy's prompt tokens, and an answer its trained target, for every
actor that prompts the policy (rollout, the learner's SFT and held-out evaluation, the memory
agent and the memory actor): one place, so they all ask alike.

- `raw` (the tiny model's): the question text as is, `"{context} question : {q} ? answer :"`
  (`actors.tasks.render_prompt`), tokenized with the tokenizer's own special tokens; the
  target is `" {answer}"` then EOS.
- `chat` (an instruct model's): the text becomes the user's message through the tokenizer's
  chat template, with the assistant's turn opened (`add_generation_prompt`); a full-context
  question says what kind of answer is wanted and asks for a final `Answer: ...` line, which
  `actors.verifiers.extract_answer` reads. The target is `"Answer: {answer}"` then EOS (for
  SmolLM2, `<|im_end|>`, which ends the assistant's turn).
- `auto`: chat when the tokenizer has a chat template, else raw.
"""

from __future__ import annotations

import enum
from typing import Any

from actors.tasks import render_prompt
from schemas import AnswerKind


class PromptFormat(enum.StrEnum):
    AUTO = "auto"
    """chat when the tokenizer has a chat template, else raw."""
    RAW = "raw"
    """The question text as is (the tiny model's word-level format)."""
    CHAT = "chat"
    """The question as the user's message of the tokenizer's chat template."""


INSTRUCTIONS = {
    AnswerKind.TEXT: "Answer with the exact words from the text, as briefly as you can.",
    AnswerKind.NUMERIC: "Answer with the number alone.",
    AnswerKind.OPTION: "Answer with the letter of the right option.",
    AnswerKind.LIST: "Answer with every item asked for, separated by commas.",
}
"""What a chat prompt asks for, by the kind of answer the task verifies."""


class Prompter:
    """Prompts and targets in the policy's tokens (see the module docstring)."""

    def __init__(self, tokenizer: Any, format: PromptFormat = PromptFormat.AUTO) -> None:  # noqa: A002
        self.tokenizer = tokenizer
        if format is PromptFormat.AUTO:
            format = PromptFormat.CHAT if getattr(tokenizer, "chat_template", None) else PromptFormat.RAW  # noqa: A001
        if format is PromptFormat.CHAT and not getattr(tokenizer, "chat_template", None):
            raise ValueError("model.prompt_format=chat, but the policy's tokenizer has no chat template: use raw")
        self.format = format

    def question(self, context: str, question: str, answer_kind: str = AnswerKind.TEXT) -> str:
        """The text of a full-context question."""
        if self.format is PromptFormat.RAW:
            return render_prompt(context, question)
        instruction = INSTRUCTIONS.get(AnswerKind(answer_kind), INSTRUCTIONS[AnswerKind.TEXT])
        return f"{context}\n\nQuestion: {question}\n{instruction} End with a line 'Answer: ...'."

    def ids(self, text: str) -> list[int]:
        """The prompt tokens of `text` (a question, or a memory agent's turn)."""
        if self.format is PromptFormat.RAW:
            return list(self.tokenizer(text)["input_ids"])
        messages = [{"role": "user", "content": text}]
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))

    def target(self, answer: str) -> list[int]:
        """The trained response to a question whose gold answer is `answer`: its tokens, then EOS."""
        text = f" {answer}" if self.format is PromptFormat.RAW else f"Answer: {answer}"
        return [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]

    def memory(self, text: str) -> list[int]:
        """The trained response of a memory agent's reading turn (the new memory), then EOS."""
        return [
            *self.tokenizer((" " if self.format is PromptFormat.RAW else "") + text, add_special_tokens=False)[
                "input_ids"
            ],
            self.tokenizer.eos_token_id,
        ]

    def example(self, prompt: str, target: str, *, answer: bool = True) -> tuple[list[int], list[int]]:
        """A supervised example: the prompt's tokens, and the trained target's (an answer, or
        with `answer` False a memory agent's new memory), each ending in EOS."""
        return self.ids(prompt), self.target(target) if answer else self.memory(target)
