"""Reading topics in tests (no group, every partition, from the beginning)."""

from __future__ import annotations

import time

from schemas import decode
from streams.kafka import Consumer, Message, StreamsConfig


def read_messages(streams: StreamsConfig, topic: str, n: int, timeout_s: float = 60.0) -> list[Message]:
    reader = Consumer(streams, group_id=None, topics=[topic], client_id="test-reader", assign_all=True)
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            out.extend(reader.poll(200))
    finally:
        reader.close()
    assert len(out) >= n, f"expected {n} messages on {topic}, got {len(out)}"
    return out


def read_records(streams: StreamsConfig, topic: str, record_type: type, n: int, timeout_s: float = 60.0) -> list:
    return [r for m in read_messages(streams, topic, n, timeout_s) for r in decode(m.value, record_type, m.headers)]
