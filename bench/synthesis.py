"""Synthesis throughput: tasks/s per composer at 4K, 32K and 128K-token contexts, one core.

    .venv/bin/python bench/synthesis.py                 # 3 s per cell
    .venv/bin/python bench/synthesis.py --seconds 10 --targets 4096 32768

The store holds the shipped corpus (`ops/corpus`, collection 'water': tables and prose) and
enough synthetic-world documents to pad 128K-token contexts. Tokens are counted with a
byte-level BPE tokenizer trained here, locally, on that text (the `tokenizers` library Qwen's
tokenizer runs on; the vocabulary it reaches is printed: this text cannot support Qwen's 151K
merges, and BPE's cost per token depends on the text, not on the vocabulary's size). Each cell
composes tasks end to end (question, solver, context assembly, key chain, needles, dialogue)
until `--seconds` pass (after `--warmup` untimed seconds: the boundary and key-piece caches a
running service has warm), twice side by side: with the context's token count summed from the
documents' stored counts and one small count per boundary (`JoinCounter`, the service's way,
audited as in the service), and with every context counted whole (the baseline). It prints
tasks/s of both, their ratio, and the ratio to the issue's target of 50 tasks/s.
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core: the tokenizer's thread pool too
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from actors.synthesis.context import JoinCounter  # noqa: E402
from actors.synthesis.corpus import Corpus  # noqa: E402
from actors.synthesis.dialogue import dialogue_task  # noqa: E402
from actors.synthesis.extract import extract  # noqa: E402
from actors.synthesis.graph import multihop_task  # noqa: E402
from actors.synthesis.needles import needle_task  # noqa: E402
from actors.synthesis.paradigms import PARADIGMS, paradigm_task  # noqa: E402
from actors.synthesis.table_tasks import MadeTask, table_task  # noqa: E402
from actors.synthesis.tables import extract_tables  # noqa: E402
from ops.feed import SAMPLE_CORPUS, documents_from_path, world_documents  # noqa: E402

TARGET_TASKS_PER_S = 50.0


def build(worlds: int) -> tuple[Corpus, Tokenizer]:
    corpus = Corpus(":memory:")
    docs = [(f"world{i}", d) for i, d in enumerate(world_documents(worlds=worlds, entities_per_world=8, seed=0))]
    docs += [(f"doc{i}", d) for i, d in enumerate(documents_from_path(SAMPLE_CORPUS, "water"))]
    tokenizer = bpe([d["text"] for _, d in docs], vocab=151_643)
    for doc_id, doc in docs:
        tables, _ = extract_tables(doc_id, doc["text"], doc.get("attrs", {}).get("format", ""))
        facts = extract(doc_id, doc["text"], tables) if doc["collection"] == "water" else []
        n_tokens = len(tokenizer.encode(doc["text"]).ids)  # counted once, at ingestion, as the service does
        corpus.add_document(doc_id, doc["collection"], doc["text"], n_tokens, tables, facts)
    return corpus, tokenizer


def bpe(texts: list[str], vocab: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="untimed seconds first, per cell (boundary and key-piece caches)"
    )
    parser.add_argument("--targets", type=int, nargs="+", default=[4096, 32768, 131072])
    parser.add_argument("--worlds", type=int, default=1200, help="synthetic worlds of padding (8 documents each)")
    args = parser.parse_args()
    corpus, tokenizer = build(args.worlds)

    class Count:
        """The bench tokenizer's counts, single and batched (as the service's TokenCounter)."""

        def __call__(self, text: str) -> int:
            return len(tokenizer.encode(text, add_special_tokens=False).ids)

        def many(self, texts: list[str]) -> list[int]:
            return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

    count = Count()

    docs, tokens = corpus.db.execute("SELECT COUNT(*), SUM(n_tokens) FROM docs").fetchone()
    print(f"store: {docs} documents, {tokens} tokens; BPE vocabulary reached {tokenizer.get_vocab_size()}")

    def composers(count: JoinCounter) -> dict:
        out = {
            "table_numeric": lambda rng, n: table_task(corpus, "water", rng, n, count, rng.random()),
            "keychain": lambda rng, n: table_task(corpus, "water", rng, n, count, rng.random(), keychain=True),
            "multi_hop": lambda rng, n: multihop_task(
                corpus, "water", rng, rng.choice((2, 3, 4)), n, count, rng.random(), rng.random() < 0.5
            ),
        }
        for task_type in PARADIGMS:
            out[task_type.value] = lambda rng, n, t=task_type: paradigm_task(
                corpus, "water", t, rng, n, count, rng.random()
            )
        out["needle"] = lambda rng, n: needle_task(corpus, rng, n, count, rng.random(), 1)
        out["multi_needle"] = lambda rng, n: needle_task(corpus, rng, n, count, rng.random(), rng.randint(2, 4))
        out["dialogue"] = lambda rng, n: dialogue_task(corpus, rng, n, count, rng.random(), rng.randint(0, 2))
        return out

    def rate(compose: object, target: int) -> tuple[float, int, int]:
        rng = random.Random(0)
        start = time.perf_counter()
        while time.perf_counter() - start < args.warmup:  # untimed: the caches a running service has warm
            compose(rng, target)
        made = skipped = 0
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            if isinstance(compose(rng, target), MadeTask):
                made += 1
            else:
                skipped += 1
        return made / (time.perf_counter() - start), made, skipped

    joined = JoinCounter(count)
    whole = JoinCounter(count, whole=True)  # every context counted whole: the baseline
    fast, slow = composers(joined), composers(whole)
    print(
        f"{'composer':14} {'tokens':>7} {'tasks':>6} {'skipped':>7} {'tasks/s':>8} {'whole/s':>8} {'ratio':>6} {'vs 50/s':>7}"
    )
    for name in fast:
        for target in args.targets:
            per_s, made, skipped = rate(fast[name], target)
            base, _, _ = rate(slow[name], target)
            ratio, goal = per_s / max(base, 1e-9), per_s / TARGET_TASKS_PER_S
            print(f"{name:14} {target:>7} {made:>6} {skipped:>7} {per_s:>8.1f} {base:>8.1f} {ratio:>6.2f} {goal:>7.2f}")
    print(f"joined counts audited: {joined.joins} joins, {joined.mismatches} mismatches")


if __name__ == "__main__":
    main()
