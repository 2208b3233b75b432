"""The rollout actor ÷ plain vLLM: generated tokens/s on the same prompts and sampling settings.

    .venv/bin/python bench/rollout_actor.py                # the demo's shapes, then the 48M model
    .venv/bin/python bench/rollout_actor.py --only demo

The actor is Longtide's `RolloutActor` on the embedded broker (memory storage), with everything
it does in the service: polling `tasks`, decoding Arrow, fetching contexts through the claim
check, building prompts, the engine call, extracting log-probs and decoding responses, building
and encoding the `rollouts` records, producing, committing, following `policy` and asking the
staleness gate (η set so high that it never closes: nothing else is measured). Plain vLLM is
`LLM.generate` of the same engine instance on the same prompt ids, in calls of the same size
(`rollout.prompts_per_call`), with the same `SamplingParams`, returning vLLM's own outputs.
The prefix cache is emptied before each timed side (the actor's warm-up tasks are others than
its timed ones, and it is stopped while the cache is emptied). Order: plain, actor, plain again; the
plain rate is the mean of its two runs, so drift in the machine's speed shows as their spread.

Workloads:
- demo: the default demo's full-context tasks (kv_retrieval and two_hop of 32 tokens, the
  world's vocabulary) on `ops/models/tiny-memory`, G = 8, 4 new tokens, 16 prompts a call;
- large: the 48M random Qwen2 of `bench/rollout.py` with 1,000-token contexts, G = 8, 64 new
  tokens, 8 prompts a call.

Prints one line per workload and the ratio last (≥ 0.9 is issue 24's target).
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client import REGISTRY
from rollout import build_random_qwen2  # bench/rollout.py, beside this script

from actors.rollout.actor import RolloutActor
from actors.rollout.config import RolloutConfig
from actors.settings import EngineKind, Transport, VLLMSettings
from actors.synthesis.actor import make_task
from actors.tasks import TaskType, compose_kv_retrieval, compose_two_hop, word_count
from actors.weights import WeightPublisher
from actors.world import make_world
from ops.config import BASE_MODEL
from schemas import PolicyVersion, Task
from streams.blobs import BlobStore, ClaimCheck
from streams.broker import EmbeddedBroker
from streams.kafka import Producer, StreamsConfig
from streams.logs import ensure_topics
from streams.topics import POLICY, ROLLOUTS, TASKS

DEMO_MODEL = BASE_MODEL.parent / "tiny-memory"


@dataclass(frozen=True)
class Workload:
    name: str
    tasks: int
    warmup: int
    max_new_tokens: int
    prompts_per_call: int


WORKLOADS = {
    "demo": Workload("demo", tasks=2048, warmup=32, max_new_tokens=4, prompts_per_call=16),
    "large": Workload("large", tasks=32, warmup=8, max_new_tokens=64, prompts_per_call=8),
}


def demo_tasks(count: int, claim: ClaimCheck) -> list[Task]:
    """kv_retrieval and two_hop, in turn, from worlds 50,000 + i, 32-token contexts (the demo's)."""
    rng = random.Random(0)
    out: list[Task] = []
    i = 0
    while len(out) < count:
        compose = (compose_kv_retrieval, compose_two_hop)[len(out) % 2]
        composed = compose(make_world(50_000 + i, 8).facts, rng, context_tokens=32)
        i += 1
        if composed is not None:
            out.append(
                make_task(composed, collection=f"w{i}", doc_ids=("d",), claim=claim, synth_version=1, context_tokens=32)
            )
    return out


@dataclass(frozen=True)
class _Composed:  # what make_task reads of a composed task
    task_type: TaskType
    context: str
    question: str
    answer: str
    hops: int = 1


def large_tasks(count: int, claim: ClaimCheck, vocab: int, tokens: int) -> list[Task]:
    """Contexts of `tokens` random words of the random model's vocabulary."""
    rng = random.Random(0)
    out = []
    for i in range(count):
        context = " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(tokens))
        composed = _Composed(TaskType.KV_RETRIEVAL, context, f"w{i} w{i + 1}", f"w{i + 2}")
        out.append(
            make_task(
                composed,
                collection=f"r{i}",
                doc_ids=("d",),
                claim=claim,
                synth_version=1,
                context_tokens=word_count(context),
            )
        )
    return out


def _tokens(actor: str) -> float:
    return REGISTRY.get_sample_value("longtide_rollout_tokens_total", {"actor": actor}) or 0.0


def _phases(actor: str) -> dict[str, float]:
    """The actor's `longtide_rollout_phase_seconds_total` by phase."""
    return {
        sample.labels["phase"]: sample.value
        for metric in REGISTRY.collect()
        if metric.name == "longtide_rollout_phase_seconds"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("actor") == actor
    }


def _groups_out(actor: RolloutActor) -> int:
    """Groups the actor produced and the broker acknowledged (one message each, from offset 0)."""
    return sum(offset for (topic, _), offset in dict(actor.processor.acked).items() if topic == ROLLOUTS.name)


def plain(actor: RolloutActor, prompts: list[list[int]], workload: Workload) -> float:
    """Generated tokens/s of `LLM.generate` alone on `prompts`, in the actor's call size."""
    from vllm import SamplingParams

    config = actor.config
    params = SamplingParams(
        n=config.group_size,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=workload.max_new_tokens,
        logprobs=0,
        stop_token_ids=[actor.engine.eos],
        detokenize=False,
    )
    llm = actor.engine.llm
    assert llm.reset_prefix_cache(), "the prefix cache was not emptied"
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(prompts), workload.prompts_per_call):
        requests = [{"prompt_token_ids": p} for p in prompts[i : i + workload.prompts_per_call]]
        outputs = llm.generate(requests, params, use_tqdm=False)
        tokens += sum(len(c.token_ids) for out in outputs for c in out.outputs)
    return tokens / (time.perf_counter() - start)


def through_actor(actor: RolloutActor, producer: Producer, warmup: list[Task], timed: list[Task]) -> float:
    """Generated tokens/s of the actor over `timed`: the warm-up tasks first (the consumer joins
    its group, the engine warms), the actor stopped, its prefix cache emptied, then the timed
    tasks sent and the clock started with the actor's loop, stopped when every group is out."""
    _drive(actor, producer, warmup, len(warmup))
    assert actor.engine.llm.reset_prefix_cache(), "the prefix cache was not emptied"
    tokens, phases, start = _tokens(actor.name), _phases(actor.name), time.perf_counter()
    _drive(actor, producer, timed, len(timed))
    wall = time.perf_counter() - start
    spent = {phase: s - phases.get(phase, 0.0) for phase, s in _phases(actor.name).items()}
    print(
        "       the actor's phases (share of its wall time; generate holds the engine call): "
        + ", ".join(f"{p} {100 * s / wall:.1f}%" for p, s in sorted(spent.items(), key=lambda kv: -kv[1]) if s > 0),
        flush=True,
    )
    return (_tokens(actor.name) - tokens) / wall


def _drive(actor: RolloutActor, producer: Producer, tasks: list[Task], groups: int) -> None:
    """Send `tasks`, run the actor's own loop until `groups` more groups are out, stop it."""
    for task in tasks:
        producer.send_records(TASKS.name, [task], key=task.task_id.encode())
    producer.flush()
    stop = threading.Event()
    thread = threading.Thread(target=actor.run, args=(stop,), daemon=True)
    target = _groups_out(actor) + groups
    thread.start()
    try:  # a cheap look every 10 ms: collecting the registry this often took the GIL from the actor
        _wait(lambda: _groups_out(actor) >= target, "every group", thread=thread)
    finally:
        stop.set()
        thread.join()


def _wait(done, what: str, timeout_s: float = 900, thread: threading.Thread | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not done():
        if thread is not None and not thread.is_alive():
            raise RuntimeError(f"the actor's loop ended before {what} (see the log above)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.01)


def measure(workload: Workload, tmp: Path) -> float:
    with EmbeddedBroker(log_path=tmp / f"{workload.name}-broker.log") as broker:
        streams = StreamsConfig(bootstrap_servers=broker.bootstrap_servers)
        ensure_topics(streams)
        claim = ClaimCheck(BlobStore(str(tmp / f"{workload.name}-blobs")), streams.inline_limit_bytes)
        if workload.name == "demo":
            model = str(DEMO_MODEL)
            tasks = demo_tasks(workload.warmup + workload.tasks, claim)
        else:
            model = str(build_random_qwen2(tmp / "large", layers=8, hidden=512, vocab=32_000))
            tasks = large_tasks(workload.warmup + workload.tasks, claim, vocab=32_000, tokens=1000)
        run_id = uuid.uuid4().hex
        actor = RolloutActor(
            name=f"bench-{workload.name}",
            config=RolloutConfig(
                engine=EngineKind.VLLM,
                max_new_tokens=workload.max_new_tokens,
                prompts_per_call=workload.prompts_per_call,
                vllm=VLLMSettings(cpu_kv_cache_gib=2),
            ),
            streams=streams,
            model_path=model,
            claim=claim,
            max_staleness=1_000_000,  # the gate is asked, and never closes
            groups_per_step=16,
            run_id=run_id,
        )
        producer = Producer(streams, client_id="bench")
        try:
            _announce(actor, producer, model, tmp, run_id)
            timed = tasks[workload.warmup :]
            prompts = [
                actor.prompter.ids(
                    actor.prompter.question(claim.get_text(t.context, t.context_ref), t.question, t.answer_kind)
                )
                for t in timed
            ]
            plain(actor, prompts[: workload.warmup], workload)  # warm-up
            before = plain(actor, prompts, workload)
            served = through_actor(actor, producer, tasks[: workload.warmup], timed)
            after = plain(actor, prompts, workload)
        finally:
            producer.close()
            actor.close()
    vllm = (before + after) / 2
    ratio = served / vllm
    print(
        f"{workload.name:<6} {len(timed)} tasks x G={actor.config.group_size}, {workload.max_new_tokens} new tokens: "
        f"plain vLLM {before:8.1f} / {after:8.1f} tok/s (mean {vllm:.1f})   actor {served:8.1f} tok/s   "
        f"actor / plain = {ratio:.2f}",
        flush=True,
    )
    return ratio


def _announce(actor: RolloutActor, producer: Producer, model: str, tmp: Path, run_id: str) -> None:
    """Version 0 of the run (the model's own weights), as the learner announces it."""
    from actors.modeling import load_policy

    policy, _ = load_policy(model)
    publisher = WeightPublisher(
        Transport.FILE, directory=tmp / "weights", keep=2, dtype=None, actor="bench", device="cpu"
    )
    ref = publisher.publish(0, policy.state_dict())
    record = PolicyVersion(version=0, step=0, weights_ref=ref, groups_consumed=0, metrics=(), run_id=run_id)
    producer.send_records(POLICY.name, [record]).get(timeout=30)
    _wait(lambda: actor.policy.sync(timeout_ms=200) or actor.policy.version == 0, "version 0", 120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--tasks", type=int, default=0, help="timed tasks per workload (0: the workload's own)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            workload = WORKLOADS[name]
            ratios[name] = measure(replace(workload, tasks=args.tasks or workload.tasks), Path(tmp))
    print("rollout actor / plain vLLM, generated tokens/s: " + ", ".join(f"{n} {r:.2f}" for n, r in ratios.items()))


if __name__ == "__main__":
    main()
