"""Dialogue-memory recall (LongMemEval's knowledge updates) over real documents.

The context is a long conversation. Most user turns share a document ("User: I am reading
this:" and the document's text, the assistant answering "Noted."); a few state something
about the user ("User: My locker code is 4821."), and later turns may change it ("User: Update:
my locker code is now 7730."). The question asks for the current value: the last one stated.
Other things about the user are stated and updated around it as decoys, so the answer is
neither the first value nor the only one of its kind.

Statement turns keep their order and are spread over the conversation at depths drawn from
the task's seeded stream. The independent solver replays the finished conversation turn by
turn with a regular expression and must reach the gold answer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from actors.synthesis.context import SEPARATOR, assemble_parts, counter, on_target, place
from actors.synthesis.corpus import Corpus
from actors.synthesis.table_tasks import MadeTask, Skipped
from actors.tasks import ComposedTask, TaskType
from schemas import AnswerKind

TOPICS: dict[str, Callable[[random.Random], str]] = {
    "locker code": lambda r: str(r.randrange(1000, 10000)),
    "flight number": lambda r: f"{r.choice('ABEKLQU')}{r.choice('AXYZ')}{r.randrange(100, 1000)}",
    "dentist": lambda r: f"Dr. {r.choice(('Alvarez', 'Brennan', 'Chowdhury', 'Dubois', 'Eriksen', 'Fujita'))}",
    "favourite tea": lambda r: r.choice(("oolong", "sencha", "rooibos", "darjeeling", "genmaicha", "assam")),
    "parking bay": lambda r: f"bay {r.randrange(1, 300)}",
    "gym day": lambda r: r.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")),
    "bike lock code": lambda r: str(r.randrange(100, 1000)),
    "project codename": lambda r: r.choice(("Heron", "Basalt", "Juniper", "Saffron", "Quartz", "Marlin")),
}
"""What a user tells the assistant about themselves, and how its values are drawn."""

SHARED = ("User: I am reading this:", "Assistant: Noted.")
"""The lines around a shared document."""
_STATEMENT = re.compile(r"^User: (?:Update: )?[Mm]y (.+?) is (?:now )?(.+)\.$", re.MULTILINE)


def statement(topic: str, value: str, update: bool) -> str:
    said = f"Update: my {topic} is now {value}." if update else f"My {topic} is {value}."
    return f"User: {said}\nAssistant: Got it."


def replay(context: str) -> dict[str, str]:
    """The solver: each topic's value after the last turn that states it."""
    state: dict[str, str] = {}
    for topic, value in _STATEMENT.findall(context):
        state[topic] = value
    return state


def _history(rng: random.Random, topic: str, updates: int) -> list[tuple[str, str]]:
    """`updates` + 1 distinct values of `topic`, in the order the user states them."""
    values: list[str] = []
    while len(values) < updates + 1:
        value = TOPICS[topic](rng)
        if value not in values:
            values.append(value)
    return [(topic, v) for v in values]


def dialogue_task(
    corpus: Corpus,
    rng: random.Random,
    context_tokens: int,
    count_tokens: Callable[[str], int],
    depth: float,
    updates: int = 1,
) -> MadeTask | Skipped:
    """The asked topic is first stated at `depth` × the conversation (its updates after it);
    two decoy topics are stated (and updated) elsewhere."""
    asked, *decoys = rng.sample(sorted(TOPICS), 3)
    first = depth * 0.5  # room after it for the updates
    history = _history(rng, asked, updates)
    said = [(t, v, first + (1 - first) * i / (updates + 1)) for i, (t, v) in enumerate(history)]
    for topic in decoys:
        said += [(t, v, rng.random()) for t, v in _history(rng, topic, rng.randint(0, 2))]
    said.sort(key=lambda s: s[2])  # stable: one topic's values keep their order
    seen: set[str] = set()
    turns = []
    for topic, value, _ in said:
        turns.append(statement(topic, value, update=topic in seen))
        seen.add(topic)
    count = counter(count_tokens)
    sized = [(turn, count(turn)) for turn in turns]
    fixed = sum(n for _, n in sized) + len(turns) * count(SEPARATOR)
    fillers = corpus.fillers(rng, set())
    ends = [(line, count(line)) for line in SHARED]
    shared = (
        (
            "\n".join((ends[0][0], text, ends[1][0])),
            count.joined([ends[0][0], text, ends[1][0]], [ends[0][1], n, ends[1][1]], "\n"),
        )
        for text, n in corpus.sized_texts(fillers)
    )
    made = assemble_parts([], shared, context_tokens - fixed, count, depth)
    if made is None:
        return Skipped.NO_CONTEXT
    if f"my {asked}" in made.text().lower():
        return Skipped.UNVERIFIED  # a shared document speaks of it too: which one counts?
    finished = on_target(count, place(made.sized(), sized, [s[2] for s in said]), context_tokens)
    if finished is None:
        return Skipped.NO_CONTEXT
    context, tokens = finished
    answer = [v for t, v, _ in said if t == asked][-1]
    if replay(context).get(asked) != answer:
        return Skipped.UNVERIFIED
    question = f"What is the user's {asked} now, after any updates in the conversation"
    composed = ComposedTask(TaskType.DIALOGUE, context, question, answer, (), hops=updates + 1)
    spans = tuple(statement(t, v, update=i > 0) for i, (t, v) in enumerate(history))  # the asked topic's turns
    return MadeTask(composed, (), None, "", float(updates + 1), AnswerKind.TEXT, tokens, spans)
