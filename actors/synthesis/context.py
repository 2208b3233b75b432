"""Context assembly: evidence documents among distractor documents, to a length in tokens.

Pure. The evidence documents go in whole, at a controlled depth (the fraction of the context
before them); distractor documents fill the rest, the last one cut at a word boundary so the
context lands within `tolerance` (±2% by default) of the target, counted with the policy's
tokenizer.

Counting a 32K-token context takes about 40 ms on one core, more than everything else a task
needs. `JoinCounter` counts documents joined by SEPARATOR exactly without that: each document's
own count (the store keeps it, counted once at ingestion) plus, per boundary, what joining
adds, measured on a small snippet: the end of the left document and the start of the right
one, each cut where a space follows a non-space and precedes a letter, or between a letter and a
digit (the nearer to the boundary). A byte-level BPE merges only within a pre-token, and both
start a pre-token in the GPT-2, Llama-3 and Qwen pre-tokenizers, so the snippet sees every merge
the boundary allows (the word-level one splits on whitespace only, so a letter-digit cut is no
pre-token start there, but its whitespace separator adds nothing to any snippet: the count holds); digit-letter cuts keep the snippets of keys and codes
("…9c2d", "5b2c…") short, so they recur and their counts are cached.
That is a property of the tokenizer, not a guarantee, so it is audited: the first contexts and
every `audit_every`-th after them are also counted whole, and one mismatch switches the counter
to whole counts for good (`mismatches`, logged).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

SEPARATOR = "\n\n"

log = logging.getLogger(__name__)


def _cut(text: str, i: int) -> bool:
    """A space at `i` after a non-space and before a letter: where a new pre-token starts."""
    return i > 0 and not text[i - 1].isspace() and text[i + 1 : i + 2].isalpha()


def _class_change(a: str, b: str) -> bool:
    """A letter next to a decimal digit, either way round: a pre-token starts at the second
    (`isalpha` is Unicode's L categories, `isdecimal` its Nd, within \\p{N})."""
    return (a.isalpha() and b.isdecimal()) or (a.isdecimal() and b.isalpha())


SNIPPET_WINDOW = 512
"""Characters of a part's end (or start) that its snippet is looked for in (then in all of it):
the caches below key on these, never on whole documents."""


SNIPPET_CACHE = 1 << 12
"""Windows whose cut each cache below remembers (about 1.2 KB each: a window and its snippet),
10 MB for the two when full. At 65,536 they could hold about 160 MB, filled a new document at a
time (the soak's synthesis worker grew 49 MB in 24 minutes)."""


def _tail(text: str) -> str:
    """The text from its last safe cut (or all of it), cached on its last `SNIPPET_WINDOW`
    characters: a document's end recurs across contexts, a key line's within one."""
    window = text[-SNIPPET_WINDOW:]
    found = _tail_of(window)
    return found if len(found) < len(window) or len(text) <= SNIPPET_WINDOW else _tail_of.__wrapped__(text)


def _head(text: str) -> str:
    """The text up to its first safe cut (or all of it), cached on its first `SNIPPET_WINDOW`
    characters."""
    window = text[:SNIPPET_WINDOW]
    found = _head_of(window)
    return found if len(found) < len(window) or len(text) <= SNIPPET_WINDOW else _head_of.__wrapped__(text)


@functools.lru_cache(maxsize=SNIPPET_CACHE)
def _tail_of(text: str, tries: int = 64) -> str:
    """The text from its last safe cut (or all of it)."""
    start, i = 0, len(text)
    for _ in range(tries):
        i = text.rfind(" ", 0, i)
        if i <= 0:
            break
        if _cut(text, i):
            start = i
            break
    for j in range(len(text) - 1, max(start, len(text) - tries), -1):  # a letter-digit cut nearer the end
        if _class_change(text[j - 1], text[j]):
            return text[j:]
    return text[start:]


@functools.lru_cache(maxsize=SNIPPET_CACHE)
def _head_of(text: str, tries: int = 64) -> str:
    """The text up to its first safe cut (or all of it)."""
    end, i = len(text), 0
    for _ in range(tries):
        i = text.find(" ", i + 1)
        if i < 0:
            break
        if _cut(text, i):
            end = i
            break
    for j in range(1, min(end, tries)):  # a letter-digit cut nearer the start
        if _class_change(text[j - 1], text[j]):
            return text[:j]
    return text[:end]


class JoinCounter:
    """Counts tokens of single texts (`__call__`) and of parts joined by SEPARATOR (`joined`)."""

    def __init__(
        self, count: Callable[[str], int], *, audit_first: int = 8, audit_every: int = 64, whole: bool = False
    ) -> None:
        """`whole`: count every join whole from the start (the baseline the sums are measured against)."""
        self.count = count
        self.audit_first, self.audit_every = audit_first, audit_every
        self.joins = 0
        self.mismatches = 0
        self.whole = whole
        """True once a join's sum missed its whole count: every join is counted whole."""
        self._boundary: dict[tuple[str, str, str], int] = {}
        self._single: dict[str, int] = {}
        self.cache_limit = 100_000
        """Boundary snippets (and `cached` texts) remembered, then forgotten all at once."""

    def __call__(self, text: str) -> int:
        return self.count(text)

    def many(self, texts: list[str]) -> list[int]:
        """Counts of `texts`, in one batched call when the counter has one (`many`)."""
        batched = getattr(self.count, "many", None)
        return batched(texts) if batched is not None else [self.count(t) for t in texts]

    def cached(self, texts: Sequence[str]) -> list[int]:
        """Counts of `texts` remembered across calls (texts that recur: a chain key's pieces, a
        question); the new ones counted in one batch."""
        if len(self._single) > self.cache_limit:
            self._single.clear()
        new = [t for t in dict.fromkeys(texts) if t not in self._single]
        if new:
            self._single.update(zip(new, self.many(new), strict=True))
        return [self._single[t] for t in texts]

    def boundaries(self, parts: Sequence[str], sep: str = SEPARATOR) -> int:
        """Tokens that joining `parts` by `sep` adds to their own counts: per boundary, measured
        on its snippet (cached; the new ones counted in one batch)."""
        keys = [(_tail(a), _head(b), sep) for a, b in zip(parts, parts[1:], strict=False)]
        if len(self._boundary) > self.cache_limit:
            self._boundary.clear()  # before looking up, so every key is either cached or new
        new = [k for k in dict.fromkeys(keys) if k not in self._boundary]
        if new:
            counts = self.many([text for t, h, s in new for text in (t + s + h, t, h)])
            for i, key in enumerate(new):
                self._boundary[key] = counts[3 * i] - counts[3 * i + 1] - counts[3 * i + 2]
        return sum(self._boundary[k] for k in keys)

    def joined(self, parts: Sequence[str], sizes: Sequence[int | None], sep: str = SEPARATOR) -> int:
        """Tokens of sep.join(parts); `sizes[i]` is the count of `parts[i]` alone, or None."""
        self.joins += 1
        audit = self.whole or self.joins <= self.audit_first or self.joins % self.audit_every == 0
        text = sep.join(parts) if audit else ""
        if self.whole or not all(p.strip() for p in parts):  # a blank part lets whitespace
            return self.count(text or sep.join(parts))  # tokens span two separators
        unknown = [p for p, n in zip(parts, sizes, strict=True) if n is None]
        total = sum(n for n in sizes if n is not None) + sum(self.many(unknown)) + self.boundaries(parts, sep)
        if audit and (exact := self.count(text)) != total:
            self.mismatches += 1
            self.whole = True
            log.warning("joined count %d != whole count %d: counting whole contexts from now on", total, exact)
            return exact
        return total


def counter(count: Callable[[str], int] | JoinCounter) -> JoinCounter:
    """`count` as a JoinCounter (a plain counter is audited like any other)."""
    return count if isinstance(count, JoinCounter) else JoinCounter(count)


@dataclass(frozen=True)
class Assembled:
    parts: list[str]
    """The context's documents in order (joined by SEPARATOR)."""
    sizes: list[int]
    """Each part's token count alone."""
    tokens: int
    """The whole context's token count."""

    def text(self) -> str:
        return SEPARATOR.join(self.parts)

    def sized(self) -> list[tuple[str, int]]:
        """(part, its token count) in order: what lines are inserted between (`place`, `scatter`)."""
        return list(zip(self.parts, self.sizes, strict=True))


def on_target(
    count: JoinCounter, sized: Sequence[tuple[str, int]], target: int, tolerance: float = 0.02
) -> tuple[str, int] | None:
    """The context of `sized` parts joined by SEPARATOR and its token count, or None when the
    count misses `target` ± `tolerance` (lines inserted after assembly can tip it over)."""
    parts = [p for p, _ in sized]
    tokens = count.joined(parts, [n for _, n in sized])
    return None if abs(tokens - target) > tolerance * target else (SEPARATOR.join(parts), tokens)


def place(parts: list, inserted: Sequence, depths: Sequence[float]) -> list:
    """`inserted` items put between the items of `parts`, each at its depth (the fraction of
    `parts` before it); items at one index keep their order."""
    out = list(parts)
    order = sorted(range(len(inserted)), key=lambda i: (-depths[i], -i))  # from the back, so
    for i in order:  # earlier indices stay valid
        out.insert(round(depths[i] * len(parts)), inserted[i])
    return out


def _longest_prefix(words: list[str], fits: Callable[[str], bool]) -> int:
    """The most words of `words` whose prefix still `fits` (0 if none)."""
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(" ".join(words[:mid])):
            lo = mid
        else:
            hi = mid - 1
    return lo


def assemble(*args, **kwargs) -> str | None:  # noqa: ANN002, ANN003 - assemble_parts' arguments
    """The context as one text (see `assemble_parts`)."""
    made = assemble_parts(*args, **kwargs)
    return None if made is None else made.text()


def assemble_parts(
    evidence: Iterable[str | tuple[str, int]],
    fillers: Iterable[str | tuple[str, int]],
    target: int,
    count_tokens: Callable[[str], int] | JoinCounter,
    depth: float,
    tolerance: float = 0.02,
) -> Assembled | None:
    """The context, or None when the evidence alone is longer than the target (+ tolerance) or
    the fillers run out below it (− tolerance). A document may come with its token count (the
    store keeps each one's, counted at ingestion by the same tokenizer)."""
    count = counter(count_tokens)
    low, high = target * (1 - tolerance), target * (1 + tolerance)
    sep = count("a" + SEPARATOR + "a") - 2 * count("a")
    docs, sizes = _sized(evidence, count)
    used = sum(sizes) + sep * max(0, len(docs) - 1)
    if used > high:
        return None
    chosen: list[tuple[str, int]] = []
    goal = (low + high) / 2
    for item in fillers:
        if used >= low:
            break
        doc, known = item if isinstance(item, tuple) else (item, None)
        size = count(doc) if known is None else known
        if used + size + sep <= goal:
            chosen.append((doc, size))
            used += size + sep
            continue
        words = doc.split(" ")
        keep = _longest_prefix(words, lambda prefix, used=used: used + count(prefix) + sep <= goal)
        cut = " ".join(words[:keep])
        if cut.strip():
            chosen.append((cut, count(cut)))
            used += chosen[-1][1] + sep
    if not chosen and used < low:
        return None
    evidence_sized = list(zip(docs, sizes, strict=True))

    def made(fill: list[tuple[str, int]]) -> Assembled:
        pairs = _evidence_together(fill, evidence_sized, depth)
        parts, part_sizes = [p for p, _ in pairs], [n for _, n in pairs]
        return Assembled(parts, part_sizes, count.joined(parts, part_sizes))

    context = made(chosen)
    if low <= context.tokens <= high or not chosen:
        return context if low <= context.tokens <= high else None
    # the sum missed the band: search the last filler's cut against the whole context
    last = chosen[-1][0].split(" ")

    def fits(prefix: str) -> bool:
        return made([*chosen[:-1], (prefix, count(prefix))]).tokens <= high

    cut = " ".join(last[: _longest_prefix(last, fits)])
    context = made([*chosen[:-1], (cut, count(cut))] if cut.strip() else chosen[:-1])
    return context if low <= context.tokens <= high else None


def _evidence_together(fill: list, evidence: list, depth: float) -> list:
    """The evidence documents, in order and together, after `depth` × the fillers."""
    cut = round(depth * len(fill))
    return [*fill[:cut], *evidence, *fill[cut:]]


def _sized(docs: Iterable[str | tuple[str, int]], count: JoinCounter) -> tuple[list[str], list[int]]:
    docs = list(docs)
    texts = [d if isinstance(d, str) else d[0] for d in docs]
    return texts, [count(d) if isinstance(d, str) else d[1] for d in docs]
