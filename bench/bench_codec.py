"""Arrow IPC vs JSON for one GRPO group of 8K-token rollouts: size and encode+decode time.

    .venv/bin/python bench/bench_codec.py

Prints the ratio JSON / Arrow measured side by side in the same run (> 1 means Arrow wins).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time

from schemas import Rollout, decode, encode, headers_for


def group(size: int = 8, tokens: int = 8192) -> list[Rollout]:
    rng = random.Random(0)
    prompt = tuple(rng.randrange(150_000) for _ in range(512))
    return [
        Rollout(
            rollout_id=f"t/{i}",
            task_id="t",
            task_type="kv_retrieval",
            group_id="t",
            sample_index=i,
            group_size=size,
            policy_version=3,
            prompt_ids=prompt,
            prompt_ref="",
            response_ids=tuple(rng.randrange(150_000) for _ in range(tokens)),
            behaviour_logprobs=tuple(-rng.random() for _ in range(tokens)),
            response_text="x" * 100,
            reference="x",
            answer_kind="text",
            turns=1,
            finish_reason="stop",
        )
        for i in range(size)
    ]


def timed(fn, repeat: int = 5) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    records = group()
    payload = encode(records)
    as_json = json.dumps([dataclasses.asdict(r) for r in records]).encode()
    arrow_s = timed(lambda: decode(encode(records), Rollout, headers_for(records[0])))
    json_s = timed(lambda: [Rollout(**d) for d in json.loads(json.dumps([dataclasses.asdict(r) for r in records]))])
    print(f"bytes  arrow={len(payload):>10,}  json={len(as_json):>10,}  json/arrow={len(as_json) / len(payload):.2f}")
    print(f"encode+decode seconds  arrow={arrow_s:.4f}  json={json_s:.4f}  json/arrow={json_s / arrow_s:.2f}")


if __name__ == "__main__":
    main()
