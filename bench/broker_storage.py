"""Embedded broker throughput by storage: memory against postgres, on the same records.

    .venv/bin/python bench/broker_storage.py
    .venv/bin/python bench/broker_storage.py --messages 500 --group 8 --tokens 1024

Each message is one GRPO group of `--group` ScoredRollout records with `--tokens` response
tokens each, Arrow-encoded once and sent as the same bytes to every storage (what `scored`
carries; the prompt sits in the blob store, as long prompts do). Produce: every message sent
through `streams.kafka.Producer` (acks=all) and flushed. Consume: one reader of every
partition from the beginning until all are back. Each storage gets a fresh `EmbeddedLog`
(the service's embedded broker; postgres: its private cluster in a temporary run directory).

Prints messages/s and MB/s per storage and phase, and the ratio postgres/memory measured in
the same run (< 1: postgres is slower). A storage the broker cannot serve is reported with
the reason instead of numbers.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from schemas import ScoredRollout, encode, headers_for
from streams.broker import StorageUnavailable
from streams.embedded import EmbeddedLog
from streams.kafka import Consumer, Producer, StreamsConfig
from streams.logs import ensure_topics
from streams.postgres import PostgresUnavailable
from streams.topics import SCORED


def scored_group(size: int, tokens: int, seed: int) -> list[ScoredRollout]:
    rng = random.Random(seed)
    return [
        ScoredRollout(
            rollout_id=f"g{seed}/{i}",
            task_id=f"g{seed}",
            task_type="kv_retrieval",
            group_id=f"g{seed}",
            sample_index=i,
            group_size=size,
            policy_version=3,
            prompt_ids=(),
            prompt_ref=f"blobs/g{seed}",
            response_ids=tuple(rng.randrange(150_000) for _ in range(tokens)),
            behaviour_logprobs=tuple(-rng.random() for _ in range(tokens)),
            response_text="x" * 400,
            reference="x",
            answer_kind="text",
            turns=1,
            finish_reason="stop",
            reward=rng.random(),
        )
        for i in range(size)
    ]


def produce(streams: StreamsConfig, payloads: list[tuple[bytes, list[tuple[str, bytes]]]]) -> float:
    producer = Producer(streams, client_id="bench-producer")
    try:
        start = time.perf_counter()
        futures = [
            producer.send(SCORED.name, value, key=str(i).encode(), headers=h) for i, (value, h) in enumerate(payloads)
        ]
        producer.flush(timeout_s=600)
        for future in futures:
            future.get(timeout=60)
        return time.perf_counter() - start
    finally:
        producer.close()


def consume(streams: StreamsConfig, n: int) -> float:
    reader = Consumer(
        streams, group_id=None, topics=[SCORED.name], client_id="bench-reader", assign_all=True, max_poll_records=500
    )
    try:
        start = time.perf_counter()
        got = 0
        while got < n:
            got += len(reader.poll(500))
        return time.perf_counter() - start
    finally:
        reader.close()


def measure(storage: str, payloads: list[tuple[bytes, list[tuple[str, bytes]]]]) -> tuple[float, float] | str:
    """(produce seconds, consume seconds), or why this storage cannot be measured here."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{storage}-") as run_dir:
        try:
            embedded = EmbeddedLog(storage, Path(run_dir)).start()
        except (StorageUnavailable, PostgresUnavailable) as exc:
            return str(exc)
        try:
            streams = StreamsConfig(bootstrap_servers=embedded.bootstrap_servers)
            ensure_topics(streams, [SCORED])
            return produce(streams, payloads), consume(streams, len(payloads))
        finally:
            embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--group", type=int, default=8, help="rollouts per message")
    parser.add_argument("--tokens", type=int, default=512, help="response tokens per rollout")
    parser.add_argument("--storage", nargs="+", default=["memory", "postgres"])
    args = parser.parse_args()

    groups = [scored_group(args.group, args.tokens, seed) for seed in range(8)]
    encoded = [(encode(g), headers_for(g[0])) for g in groups]
    payloads = [encoded[i % len(encoded)] for i in range(args.messages)]
    megabytes = sum(len(v) for v, _ in payloads) / 1e6
    print(f"{args.messages} messages x {len(payloads[0][0]):,} bytes ({megabytes:.1f} MB), {args.group} rollouts each")

    results: dict[str, tuple[float, float]] = {}
    for storage in args.storage:
        outcome = measure(storage, payloads)
        if isinstance(outcome, str):
            print(f"{storage:>9}  unavailable: {outcome}")
            continue
        results[storage] = outcome
        for phase, seconds in zip(("produce", "consume"), outcome, strict=True):
            print(
                f"{storage:>9}  {phase}  {args.messages / seconds:>9.0f} messages/s  {megabytes / seconds:>8.1f} MB/s"
                f"  ({seconds:.2f} s)"
            )
    if "memory" in results and "postgres" in results:
        for i, phase in enumerate(("produce", "consume")):
            print(f"postgres/memory {phase} throughput: {results['memory'][i] / results['postgres'][i]:.2f}")
    else:
        print("postgres/memory: n/a (both storages must run)")


if __name__ == "__main__":
    main()
