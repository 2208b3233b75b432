"""The reward actor's metrics (besides the stream metrics every actor has)."""

from __future__ import annotations

from prometheus_client import Histogram

REWARD = Histogram(
    "longtide_reward_score",
    "Reward per trajectory (a full-context rollout, or a memory-agent trajectory of many turns).",
    ["actor", "task_type"],
    buckets=(0.0, 0.25, 0.5, 0.75, 1.0),
)
