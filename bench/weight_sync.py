"""Weight sync: the collective path (gloo here, NCCL on GPUs) against the Ray object store.

    .venv/bin/python bench/weight_sync.py                   # 0.5B parameters, bf16 on the wire
    .venv/bin/python bench/weight_sync.py --params 50e6 --rounds 5

The learner side (this process) publishes a Qwen2.5-0.5B-sized fp32 state (24 layers of equal
tensors) through `WeightPublisher`, in bf16 on the wire; the receiver is a Ray task in another
process that resolves the `weights_ref` with `fetch_weights`, exactly as a rollout actor does,
and sums one tensor so the bytes are really read. One sync = publish + fetch, measured from
the learner's side; the first round of each transport (store actor start, pairing) is
reported apart from the steady rounds after it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from actors.settings import SECRET_ENV, Transport
from actors.weights import WeightPublisher, fetch_weights


@ray.remote(num_cpus=0)
def receive(ref: str) -> tuple[float, float]:
    """(seconds to fetch, a checksum) in a Ray worker process."""
    start = time.perf_counter()
    state = fetch_weights(ref)
    seconds = time.perf_counter() - start
    return seconds, float(next(iter(state.values())).float().sum())


def fake_state(params: float, layers: int = 24) -> dict[str, torch.Tensor]:
    per = int(params) // layers
    side = int(per**0.5)
    return {f"model.layers.{i}.weight": torch.randn(side, per // side) for i in range(layers)}


def sync_times(transport: Transport, state: dict[str, torch.Tensor], rounds: int, directory: Path) -> list[float]:
    publisher = WeightPublisher(
        transport, directory=directory, keep=4, dtype=torch.bfloat16, actor="bench", device="cpu"
    )
    times = []
    try:
        for version in range(rounds):
            start = time.perf_counter()
            ref = publisher.publish(version, state)
            ray.get(receive.remote(ref))
            times.append(time.perf_counter() - start)
    finally:
        publisher.close()
    return times


def main() -> None:
    os.environ.setdefault(SECRET_ENV, secrets.token_hex(16))  # the collective path serves the run's secret only
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=494e6, help="parameters (Qwen2.5-0.5B: 494M)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    state = fake_state(args.params)
    n = sum(v.numel() for v in state.values())
    print(f"{n / 1e6:.0f}M parameters, {2 * n / 2**30:.2f} GiB in bf16 on the wire, {args.rounds} rounds each")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for transport in (Transport.RAY, Transport.COLLECTIVE):
            times = sync_times(transport, state, args.rounds, Path(tmp))
            steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
            results[transport] = steady
            print(
                f"  {transport:<10} first {times[0]:6.2f} s   steady {steady:6.2f} s   "
                f"({2 * n / 2**30 / steady:5.2f} GiB/s)"
            )
    print(f"collective ÷ ray speed (steady): {results[Transport.RAY] / results[Transport.COLLECTIVE]:.2f}×")
    ray.shutdown()


if __name__ == "__main__":
    main()
