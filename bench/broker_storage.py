"""Embedded broker throughput by storage, and the streams layer against a raw client.

    .venv/bin/python bench/broker_storage.py
    .venv/bin/python bench/broker_storage.py --messages 500 --group 8 --tokens 1024

Each message is one GRPO group of `--group` ScoredRollout records with `--tokens` response
tokens each, Arrow-encoded once and sent as the same bytes everywhere (what `scored` carries;
the prompt sits in the blob store, as long prompts do). For each storage (`memory`, and
`durable`: the default, Tansu's s3:// engine on the private SeaweedFS store) a fresh
`EmbeddedLog` is started, and on that one broker:

- streams: every message sent through `streams.kafka.Producer` (kafka-python, acks=all) and
  flushed; then one `streams.kafka.Consumer` of every partition reads them all back;
- raw: the same messages, keys and headers through confluent-kafka's (librdkafka) producer
  (acks=all) and an assigned consumer, on a topic of the same partition count.

Prints messages/s and MB/s per storage, client and phase; then, measured in the same run, the
ratios durable/memory (streams) and streams/raw per storage (the target is >= 0.5: the streams
layer's own overhead). The last line is the durable default's streams/raw ratio.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer as RawProducer
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import ScoredRollout, encode, headers_for
from streams.broker import StorageUnavailable
from streams.embedded import EmbeddedLog
from streams.kafka import Consumer, Producer, StreamsConfig
from streams.logs import ensure_topics
from streams.objectstore import StoreUnavailable
from streams.topics import SCORED

RAW_TOPIC = "bench.raw"
Payloads = list[tuple[bytes, list[tuple[str, bytes]]]]


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


def produce(streams: StreamsConfig, payloads: Payloads) -> float:
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


def produce_raw(bootstrap: str, payloads: Payloads) -> float:
    producer = RawProducer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed: list[str] = []
    start = time.perf_counter()
    for i, (value, headers) in enumerate(payloads):
        while True:
            try:
                producer.produce(
                    RAW_TOPIC,
                    value,
                    key=str(i).encode(),
                    headers=headers,
                    on_delivery=lambda e, _m: e and failed.append(str(e)),
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)
    if producer.flush(600):
        raise RuntimeError("raw producer: messages left undelivered after 600 s")
    if failed:
        raise RuntimeError(f"raw producer: {len(failed)} deliveries failed, first: {failed[0]}")
    return time.perf_counter() - start


def consume_raw(bootstrap: str, n: int, partitions: int) -> float:
    reader = RawConsumer({"bootstrap.servers": bootstrap, "group.id": "bench-raw", "enable.auto.commit": False})
    try:
        reader.assign([TopicPartition(RAW_TOPIC, p, 0) for p in range(partitions)])
        start = time.perf_counter()
        got = 0
        while got < n:
            got += sum(1 for m in reader.consume(500, 0.5) if m.error() is None)
        return time.perf_counter() - start
    finally:
        reader.close()


def measure(storage: str, payloads: Payloads) -> dict[str, tuple[float, float]] | str:
    """{client: (produce seconds, consume seconds)}, or why this storage cannot run here."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{storage}-") as run_dir:
        try:
            embedded = EmbeddedLog(storage, Path(run_dir)).start()
        except (StorageUnavailable, StoreUnavailable) as exc:
            return str(exc)
        try:
            bootstrap = embedded.bootstrap_servers
            streams = StreamsConfig(bootstrap_servers=bootstrap)
            ensure_topics(streams, [SCORED])
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.create_topics([NewTopic(RAW_TOPIC, SCORED.partitions, 1)])[RAW_TOPIC].result(30)
            return {
                "streams": (produce(streams, payloads), consume(streams, len(payloads))),
                "raw": (produce_raw(bootstrap, payloads), consume_raw(bootstrap, len(payloads), SCORED.partitions)),
            }
        finally:
            embedded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--group", type=int, default=8, help="rollouts per message")
    parser.add_argument("--tokens", type=int, default=512, help="response tokens per rollout")
    parser.add_argument("--storage", nargs="+", default=["memory", "durable"])
    args = parser.parse_args()

    groups = [scored_group(args.group, args.tokens, seed) for seed in range(8)]
    encoded = [(encode(g), headers_for(g[0])) for g in groups]
    payloads = [encoded[i % len(encoded)] for i in range(args.messages)]
    megabytes = sum(len(v) for v, _ in payloads) / 1e6
    print(f"{args.messages} messages x {len(payloads[0][0]):,} bytes ({megabytes:.1f} MB), {args.group} rollouts each")

    results: dict[str, dict[str, tuple[float, float]]] = {}
    for storage in args.storage:
        outcome = measure(storage, payloads)
        if isinstance(outcome, str):
            print(f"{storage:>8}  unavailable: {outcome}")
            continue
        results[storage] = outcome
        for client, seconds_by_phase in outcome.items():
            for phase, seconds in zip(("produce", "consume"), seconds_by_phase, strict=True):
                print(
                    f"{storage:>8}  {client:>7}  {phase}  {args.messages / seconds:>9.0f} messages/s  "
                    f"{megabytes / seconds:>8.1f} MB/s  ({seconds:.2f} s)"
                )
    phases = ("produce", "consume")
    if "memory" in results and "durable" in results:
        for i, phase in enumerate(phases):
            ratio = results["memory"]["streams"][i] / results["durable"]["streams"][i]
            print(f"durable/memory {phase} throughput (streams layer): {ratio:.2f}")
    for storage, outcome in results.items():
        for i, phase in enumerate(phases):
            print(f"streams/raw {phase} throughput on {storage}: {outcome['raw'][i] / outcome['streams'][i]:.2f}")
    if "durable" in results:
        both = sum(results["durable"]["raw"]) / sum(results["durable"]["streams"])
        print(f"streams/raw throughput on the durable default, produce and consume together: {both:.2f}")


if __name__ == "__main__":
    main()
