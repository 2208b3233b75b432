"""The learner's Prometheus metrics (`longtide_learner_*`; README, "Metrics")."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

VERSION = Gauge("longtide_learner_policy_version", "Latest published policy version.", ["actor"])
STEPS = Counter("longtide_learner_steps", "Optimizer steps (SFT and RL).", ["actor", "phase"])
SAMPLES = Counter(
    "longtide_learner_samples_trained",
    "Trajectories trained on (a full-context rollout, or a memory-agent trajectory of many turns).",
    ["actor", "task_type"],
)
STALE = Counter("longtide_learner_stale_dropped", "Trajectories dropped as staler than max_staleness.", ["actor"])
OTHER_RUN = Counter("longtide_learner_other_run_skipped", "Trajectories of another run, skipped.", ["actor"])
STALENESS = Histogram(
    "longtide_learner_staleness_versions",
    "Per trained group (not per sample): versions between the group's oldest behaviour policy and the learner's.",
    ["actor"],
    buckets=(0, 1, 2, 4, 8, 16),
)
LOSS = Gauge("longtide_learner_loss", "Last training loss.", ["actor", "phase"])
REWARD = Gauge("longtide_learner_reward_mean", "Mean reward of the last batch.", ["actor", "task_type"])
HELDOUT = Gauge("longtide_learner_heldout_accuracy", "Held-out greedy accuracy.", ["actor", "task_type"])
STEP_SECONDS = Histogram(
    "longtide_learner_step_seconds",
    "Wall time of one optimizer step (forward, backward, update; all ranks).",
    ["actor", "phase"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TOKENS = Counter("longtide_learner_tokens_trained", "Target tokens trained on.", ["actor", "phase"])
GRAD_NORM = Gauge("longtide_learner_grad_norm", "Gradient norm before clipping, last step.", ["actor", "phase"])
ENTROPY = Gauge(
    "longtide_learner_entropy",
    "Batch entropy of the last RL step: the mean over sequences of their mean token entropy (sampling distribution).",
    ["actor"],
)
CHECKPOINT_SECONDS = Histogram(
    "longtide_learner_checkpoint_seconds",
    "Time to write one checkpoint (model, optimizer, state) and make it durable.",
    ["actor"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CLIP_FRACTION = Gauge("longtide_learner_clip_fraction", "Fraction of tokens whose PPO ratio was clipped.", ["actor"])
AEPO_STATE = Gauge(
    "longtide_learner_aepo_masking", "AEPO batch mode: 1 while negative-advantage samples are masked.", ["actor"]
)
AEPO_SWITCHES = Counter(
    "longtide_learner_aepo_switches", "AEPO batch-mode switches, by the state switched to.", ["actor", "to"]
)
DUPLICATE_GROUPS = Counter(
    "longtide_learner_duplicate_groups",
    "Groups met again in a new message on `scored` (a rollout or reward actor re-sent them after a crash): "
    "counted as consumed, so the staleness gate's slots are freed, and not trained again.",
    ["actor"],
)
UNINFORMATIVE = Counter(
    "longtide_learner_uninformative_dropped",
    "Trajectories of groups dropped before batching because every reward was equal (dynamic sampling).",
    ["actor", "task_type"],
)
SAMPLER_FILLED = Counter(
    "longtide_learner_sampler_filled",
    "Batch slots of a dry task type given to another (task-balanced sampler).",
    ["actor"],
)
AEPO_MASKED = Counter(
    "longtide_learner_aepo_masked", "Negative-advantage trajectories left out by AEPO's batch mode.", ["actor"]
)
TOKENS_PER_SECOND = Gauge(
    "longtide_learner_tokens_per_second", "Target tokens per second of the last step.", ["actor", "phase"]
)
KL = Gauge("longtide_learner_kl", "Mean k3 KL to the reference policy, last RL step (0 when kl_coef = 0).", ["actor"])
INGEST_TO_TRAIN = Histogram(
    "longtide_learner_ingest_to_train_seconds",
    "Seconds from a document's ingestion to the RL step that trained the first group of a task made on its arrival.",
    ["actor"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 21600),
)
MAX_STALENESS = Gauge(
    "longtide_learner_max_staleness",
    "The configured staleness bound η (learner.max_staleness), in versions.",
    ["actor"],
)


def start_series(actor: str, *, max_staleness: int, task_types: list[str], phases: list[str]) -> None:
    """Every series the learner exports exists from the start: counters at 0, the staleness
    bound set, and what is not measured before the first RL step at NaN, not 0."""
    for metric in (SAMPLER_FILLED, STALE, OTHER_RUN, AEPO_MASKED):
        metric.labels(actor)
    MAX_STALENESS.labels(actor).set(max_staleness)
    for gauge in (ENTROPY, CLIP_FRACTION, KL):
        gauge.labels(actor).set(float("nan"))
    for phase in phases:
        STEPS.labels(actor, phase)
        TOKENS.labels(actor, phase)
    for task_type in task_types:
        SAMPLES.labels(actor, task_type)
        UNINFORMATIVE.labels(actor, task_type)
    AEPO_STATE.labels(actor).set(0.0)
    for to in ("on", "off"):
        AEPO_SWITCHES.labels(actor, to)
