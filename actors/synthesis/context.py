"""Context assembly: evidence documents among distractor documents, to a length in tokens.

Pure. The evidence documents go in whole, at a controlled depth (the fraction of the context
before them); distractor documents fill the rest, the last one cut at a word boundary so the
context lands within `tolerance` (±2% by default) of the target, counted with the policy's
tokenizer. Each document is counted once, or not at all when its count comes with it (token
counts of joined documents are nearly additive); the whole context is counted once at the end, and the cut is searched against
the whole context only in the rare case that the sum missed the band.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

SEPARATOR = "\n\n"


def _parts(docs: list[str], evidence: list[str], depth: float) -> list[str]:
    cut = round(depth * len(docs))
    return [*docs[:cut], *evidence, *docs[cut:]]


def _place(docs: list[str], evidence: list[str], depth: float) -> str:
    return SEPARATOR.join(_parts(docs, evidence, depth))


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
    parts = assemble_parts(*args, **kwargs)
    return None if parts is None else SEPARATOR.join(parts)


def assemble_parts(
    evidence: list[str],
    fillers: Iterable[str | tuple[str, int]],
    target: int,
    count_tokens: Callable[[str], int],
    depth: float,
    tolerance: float = 0.02,
) -> list[str] | None:
    """The context's documents in order (joined by SEPARATOR), or None when the evidence alone is longer than the target (+ tolerance) or
    the fillers run out below it (− tolerance). A filler may come with its token count (the
    store keeps each document's, counted at ingestion by the same tokenizer)."""
    low, high = target * (1 - tolerance), target * (1 + tolerance)
    sep = count_tokens("a" + SEPARATOR + "a") - 2 * count_tokens("a")
    used = count_tokens(SEPARATOR.join(evidence))
    if used > high:
        return None
    chosen: list[str] = []
    goal = (low + high) / 2
    for item in fillers:
        if used >= low:
            break
        doc, known = item if isinstance(item, tuple) else (item, None)
        size = (count_tokens(doc) if known is None else known) + sep
        if used + size <= goal:
            chosen.append(doc)
            used += size
            continue
        words = doc.split(" ")
        keep = _longest_prefix(words, lambda prefix, used=used: used + count_tokens(prefix) + sep <= goal)
        if keep:
            chosen.append(" ".join(words[:keep]))
            used += count_tokens(chosen[-1]) + sep
    if not chosen and used < low:
        return None
    context = _place(chosen, evidence, depth)
    total = count_tokens(context)
    if low <= total <= high:
        return _parts(chosen, evidence, depth)
    if not chosen:
        return None
    # the sum missed the band: search the last filler's cut against the whole context
    last = chosen[-1].split(" ")
    keep = _longest_prefix(last, lambda prefix: count_tokens(_place([*chosen[:-1], prefix], evidence, depth)) <= high)
    docs = [*chosen[:-1], " ".join(last[:keep])]
    return _parts(docs, evidence, depth) if low <= count_tokens(_place(docs, evidence, depth)) <= high else None
