"""The rollout actor's metrics (besides the stream metrics every actor has, and the policy follower's in `actors.weights`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SAMPLES = Counter("longtide_rollout_samples", "Responses generated.", ["actor", "task_type"])
TOKENS = Counter("longtide_rollout_tokens", "Response tokens generated.", ["actor"])
GATE_WAIT = Counter("longtide_rollout_gate_wait_seconds", "Time paused by the staleness gate.", ["actor"])
GENERATE = Histogram(
    "longtide_rollout_generate_seconds",
    "Time of one engine call (up to prompts_per_call groups).",
    ["actor"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
