"""A batched stream processor whose process dies (os._exit) on one record, for the journal's
end-to-end test: `python -m tests.poison_worker BOOTSTRAP JOURNAL_DIR POISON_TASK_ID N BATCHED`.
It handles `tasks` into `docs` until N messages are consumed, then exits 0."""

from __future__ import annotations

import os
import sys

from schemas import Document, Task
from streams.kafka import Consumer, Producer, StreamsConfig
from streams.processor import Output, StreamProcessor, arrow_decoder


def main(bootstrap: str, journal_dir: str, poison: str, n: int, batched: bool) -> None:
    streams = StreamsConfig(bootstrap_servers=bootstrap, max_poll_interval_ms=6000, session_timeout_ms=6000)

    def handle(tasks: list[Task]) -> list[Output]:
        if any(t.task_id == poison for t in tasks):
            os._exit(9)  # as a segfault or an out-of-memory kill would: no cleanup, no exception
        return [
            Output(
                "docs", [Document(t.task_id.ljust(64, "0")[:64], "c", "x", "", 1, "", (), 0)], key=t.task_id.encode()
            )
            for t in tasks
        ]

    processor = StreamProcessor(
        actor="poisoned",
        kind="test",
        consumer=Consumer(
            streams, group_id=f"longtide-poisoned-{batched}", topics=["tasks"], client_id="p", assign_all=True
        ),
        producer=Producer(streams, client_id="p"),
        decoder=arrow_decoder(Task),
        handle=handle,
        dedup_window=100,
        batched=batched,
        journal_dir=journal_dir,
    )
    consumed = 0
    for _ in range(300):
        consumed += processor.step(timeout_ms=300)
        if consumed >= n:
            break
    processor.consumer.close()
    processor.producer.close()
    processor.close()
    sys.exit(0 if consumed >= n else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "batched")
