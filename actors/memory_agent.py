"""The memory agent (MemAgent; QwenLong-L1.5 §2.3): read a context chunk by chunk, keep a
bounded memory that every turn overwrites, and answer from the memory alone.

Shared by the rollout actor (sampled trajectories for RL), the learner (SFT on gold memory
traces, held-out accuracy) and the memory actor (per-collection memory). Pure functions plus
one driver over an `Engine`.

A context is split into chunks of at most `chunk_tokens` policy tokens, on sentence
boundaries where it can be. Turn t shows the policy the previous memory m_{t−1}, chunk x_t and
the question, and its response is the new memory m_t (at most `memory_tokens` tokens):

    "{m_{t−1}} {x_t} question : {q} ?"   ->  " {m_t}" EOS

After the last chunk, one more turn shows only the memory and asks for the answer, exactly as a
full-context task asks it (`actors.tasks.render_prompt`):

    "{m_T} question : {q} ? answer :"    ->  " {answer}" EOS

The templates use only words the tiny model's word-level tokenizer knows; a real model's
templates are config fields (`update_template`, `answer_template`). A trajectory over T chunks
has T + 1 turns; each is its own training sequence with the trajectory's reward.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.prompts import Prompter
from schemas import SchemaError

if TYPE_CHECKING:  # the config is read without torch (the CLI, the launcher)
    from actors.generation import Engine, Sample

_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")


@dataclass(frozen=True)
class MemoryAgentConfig:
    """How the memory agent reads: chunk and memory sizes in policy tokens, and its prompts."""

    chunk_tokens: int = 32
    """Most context tokens shown per turn (MemAgent: 5,000)."""
    memory_tokens: int = 16
    """Most tokens of memory a turn may write (MemAgent: 1,024); longer memories are cut."""
    answer_tokens: int = 4
    """Most tokens of the final answer."""
    update_template: str = "{memory} {chunk} question : {question} ?"
    """The prompt of a reading turn; its response is the new memory."""
    answer_template: str = "{memory} question : {question} ? answer :"
    """The prompt of the final turn; its response is the answer."""

    def __post_init__(self) -> None:
        if self.chunk_tokens < 1:
            raise ValueError(f"memory_agent.chunk_tokens ({self.chunk_tokens}) must be >= 1")
        if self.memory_tokens < 1:
            raise ValueError(f"memory_agent.memory_tokens ({self.memory_tokens}) must be >= 1")
        if self.answer_tokens < 1:
            raise ValueError(f"memory_agent.answer_tokens ({self.answer_tokens}) must be >= 1")
        for name, template, fields in (
            ("update_template", self.update_template, ("{memory}", "{chunk}", "{question}")),
            ("answer_template", self.answer_template, ("{memory}", "{question}")),
        ):
            missing = [f for f in fields if f not in template]
            if missing:
                raise ValueError(f"memory_agent.{name} ({template!r}) must contain {', '.join(missing)}")

    def update_prompt(self, memory: str, chunk: str, question: str) -> str:
        return self.update_template.format(memory=memory, chunk=chunk, question=question).strip()

    def answer_prompt(self, memory: str, question: str) -> str:
        return self.answer_template.format(memory=memory, question=question).strip()


class ChunkingError(SchemaError):
    """A text that cannot be split into chunks (empty, or a word longer than a chunk): the
    document's fault, said in its terms when it is dead-lettered."""


def split_chunks(text: str, chunk_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """`text` in chunks of at most `chunk_tokens` tokens each, cut between sentences where it can
    be and between words inside a sentence longer than a chunk. Raises `ChunkingError` for an
    empty text or a single word longer than a chunk.

    Linear in the text: each piece is counted once and pieces are packed by the sum of their
    counts; each chunk is then counted whole once, and one whose joined count exceeds the
    budget (a tokenizer that merges across the joins) hands its last pieces to the next."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    if not sentences:
        raise ChunkingError("Document.text: nothing to read: the text is empty")
    pieces: list[tuple[str, int]] = []
    for sentence in sentences:
        size = count_tokens(sentence)
        if size <= chunk_tokens:
            pieces.append((sentence, size))
            continue
        for word in sentence.split():
            words = count_tokens(word)
            if words > chunk_tokens:
                raise ChunkingError(f"Document.text: a word of {words} tokens is longer than a chunk ({chunk_tokens})")
            pieces.append((word, words))
    chunks: list[str] = []
    start = 0
    while start < len(pieces):
        end, held = start, 0
        while end < len(pieces) and (end == start or held + pieces[end][1] <= chunk_tokens):
            held += pieces[end][1]
            end += 1
        while end - start > 1 and count_tokens(" ".join(p for p, _ in pieces[start:end])) > chunk_tokens:
            end -= 1
        chunks.append(" ".join(p for p, _ in pieces[start:end]))
        start = end
    return chunks


def gold_memories(chunks: Sequence[str], evidence: Sequence[str]) -> list[str]:
    """The memory a perfect reader writes after each chunk: every evidence span read so far, in
    the order read (the warm-up's targets). A span counts where it lies whole, between words,
    inside one chunk; sentence-boundary chunking keeps a fact sentence whole."""
    kept: list[str] = []
    memories = []
    for chunk in chunks:
        padded = f" {chunk} "
        found = sorted((padded.find(f" {span} "), span) for span in evidence if f" {span} " in padded)
        kept += [span for _, span in found if span not in kept]
        memories.append(" ".join(kept))
    return memories


@dataclass(frozen=True)
class Turn:
    """One step of a trajectory: what the policy saw and what it wrote."""

    prompt_ids: list[int]
    sample: Sample
    answer: bool
    """True for the final turn (its response is the answer)."""


@dataclass(frozen=True)
class Job:
    """One question over one chunked context."""

    question: str
    chunks: tuple[str, ...]
    memory: str = ""
    """The memory before the first chunk (a collection's memory carries over between documents)."""


def read_chunked(
    engine: Engine,
    jobs: Sequence[Job],
    config: MemoryAgentConfig,
    *,
    n: int,
    temperature: float,
    top_p: float,
    answer: bool = True,
    prompter: Prompter | None = None,
) -> list[list[list[Turn]]]:
    """For each job, `n` trajectories of len(chunks) reading turns and, with `answer`, a final
    answering turn; all jobs and samples advance together: one engine call per turn for the
    reading turns and one for the answers. `prompter`: how a turn's text becomes prompt tokens
    (default: the engine's tokenizer, chat or raw as it has a template)."""
    prompter = prompter or Prompter(engine.tokenizer)
    memories = [[job.memory for _ in range(n)] for job in jobs]
    out: list[list[list[Turn]]] = [[[] for _ in range(n)] for _ in jobs]
    for t in range(max((len(job.chunks) for job in jobs), default=0) + 1):
        reading = [(i, j) for i, job in enumerate(jobs) if t < len(job.chunks) for j in range(n)]
        answering = [(i, j) for i, job in enumerate(jobs) if answer and t == len(job.chunks) for j in range(n)]
        for slots, final in ((reading, False), (answering, True)):
            if not slots:
                continue
            texts = [
                config.answer_prompt(memories[i][j], jobs[i].question)
                if final
                else config.update_prompt(memories[i][j], jobs[i].chunks[t], jobs[i].question)
                for i, j in slots
            ]
            prompts = [prompter.ids(text) for text in texts]
            samples = engine.generate(
                prompts,
                n=1,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=config.answer_tokens if final else config.memory_tokens,
            )
            for (i, j), prompt, [sample] in zip(slots, prompts, samples, strict=True):
                out[i][j].append(Turn(prompt, sample, final))
                if not final:
                    memories[i][j] = sample.text.strip()
    return out


def gold_turns(
    config: MemoryAgentConfig, question: str, chunks: Sequence[str], evidence: Sequence[str], answer: str
) -> list[tuple[str, str]]:
    """A perfect reader's trajectory as (prompt, target) pairs: each reading turn writes the
    gold memory so far (`gold_memories`), and the last turn answers from it."""
    memories = gold_memories(chunks, evidence)
    previous = ["", *memories[:-1]]
    turns = [(config.update_prompt(m, c, question), g) for m, c, g in zip(previous, chunks, memories, strict=True)]
    return [*turns, (config.answer_prompt(memories[-1], question), answer)]
